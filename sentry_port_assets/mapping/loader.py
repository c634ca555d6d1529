"""Reads a mapping (Ocean's YAML, or Port's integration config) into a `CompiledMapping`.

- `read_mapping_file(path=None) -> MappingSnapshot`: the file's text and the sha256 of its bytes, read once
  (None: the bundled default mapping).
- `parse_snapshot(snapshot) -> CompiledMapping`: validates the content against the models (unknown kinds and missing
  required keys are errors; unknown keys and selector options a kind does not use are ignored, as Ocean ignores them,
  and listed in `warnings`, each naming the key) and compiles every jq expression of every resource (one combined
  program per resource). Any problem raises `MappingConfigError` before anything is fetched from Sentry, naming the
  source, the resource index, its kind, the field path, the expression and jq's own message.
- `load_mapping(path=None)`: both at once; `parse_mapping(data, source)`: already-parsed data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from sentry_port_assets.mapping.config import (
    OCEAN_EVERYWHERE,
    SELECTOR_OPTIONS,
    EntityConfig,
    EntityMappings,
    MappingConfig,
    PortConfig,
    ResourceConfig,
)
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.engine import MappingConfigError

DEFAULT_MAPPING_FILE = Path(__file__).resolve().parent.parent / "defaults" / "mapping.yaml"

__all__ = ["DEFAULT_MAPPING_FILE", "MappingConfigError", "MappingSnapshot", "canonical_json", "load_mapping",
           "mapping_file", "parse_mapping", "parse_snapshot", "read_mapping_file"]


@dataclass(frozen=True)
class MappingSnapshot:
    """A mapping's content as read once. `text` is the file's YAML, or the canonical JSON of Port's integration
    `config` (`format` says which); `sha256` is of the file's bytes, or of that JSON."""

    source: str
    sha256: str
    text: str
    format: Literal["yaml", "json"] = "yaml"
    # Port's `updatedAt` of the integration, in that mode.
    updated_at: str | None = None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mapping_file(path: str | Path | None = None) -> Path:
    """PORT_MAPPING_FILE's path, or the bundled default mapping."""
    return Path(path) if path else DEFAULT_MAPPING_FILE


def read_mapping_file(path: str | Path | None = None) -> MappingSnapshot:
    source = mapping_file(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise MappingConfigError(f"cannot read mapping file {source} (PORT_MAPPING_FILE): {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MappingConfigError(f"{source}: the mapping file is not UTF-8 text: {exc}") from None
    return MappingSnapshot(source=str(source), sha256=sha256_of(raw), text=text)


def parse_snapshot(snapshot: MappingSnapshot) -> CompiledMapping:
    if snapshot.format == "json":
        try:
            data = json.loads(snapshot.text)
        except ValueError as exc:
            raise MappingConfigError(f"{snapshot.source}: not valid JSON: {exc}") from None
    else:
        data = read_yaml(snapshot.text, snapshot.source)
    return parse_mapping(data, snapshot.source, snapshot.sha256)


def _location(loc: tuple[Any, ...], data: Any) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    if len(loc) >= 2 and loc[0] == "resources" and isinstance(loc[1], int):
        try:
            kind = data["resources"][loc[1]].get("kind")
            text += f" (kind {kind!r})"
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
    return text


def _describe(exc: ValidationError, data: Any) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic puts the Literal/enum name in the location for unions; keep the user's path only
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt? it is not part of Ocean's mapping format)"
        elif err["type"] == "literal_error":
            msg = f"unknown {msg[0].lower()}{msg[1:]}"
        lines.append(f"  {_location(loc, data)}: {msg}")
    return "\n".join(lines)


def _unknown(model: type[BaseModel], data: Any, where: str, skip: frozenset[str] = frozenset()) -> list[str]:
    """Keys of `data` that `model` does not know (by field name or alias), as paths."""
    if not isinstance(data, dict):
        return []
    known = {f.alias or name for name, f in model.model_fields.items()} | set(model.model_fields) | skip
    return [f"{where}.{key}" if where else str(key) for key in data if key not in known]


def mapping_warnings(data: dict[str, Any]) -> list[str]:
    """Every key the mapping has that this project (and so the run) ignores, each named with its path."""
    found = [f"{path}: unknown key, ignored" for path in _unknown(MappingConfig, data, "")]
    for i, resource in enumerate(data.get("resources") or []):
        if not isinstance(resource, dict):
            continue
        at = f"resources[{i}]"
        found += [f"{path}: unknown key, ignored" for path in _unknown(ResourceConfig, resource, at)]
        selector, kind = resource.get("selector"), resource.get("kind")
        if isinstance(selector, dict):
            used = SELECTOR_OPTIONS.get(kind, frozenset()) | OCEAN_EVERYWHERE if isinstance(kind, str) else frozenset()
            known = OCEAN_EVERYWHERE.union(*SELECTOR_OPTIONS.values())  # an option of any kind
            for key in selector:
                if key not in known:
                    found.append(f"{at}.selector.{key}: unknown key, ignored")
                elif key not in used:
                    found.append(f"{at}.selector.{key}: does not apply to kind {kind!r}, ignored")
        port = resource.get("port")
        if isinstance(port, dict):
            found += [f"{p}: unknown key, ignored" for p in _unknown(PortConfig, port, f"{at}.port")]
            entity = port.get("entity")
            found += [f"{p}: unknown key, ignored" for p in _unknown(EntityConfig, entity, f"{at}.port.entity")]
            mappings = entity.get("mappings") if isinstance(entity, dict) else None
            found += [f"{p}: unknown key, ignored"
                      for p in _unknown(EntityMappings, mappings, f"{at}.port.entity.mappings")]
    return found


def parse_mapping(data: Any, source: str = "<mapping>", sha256: str | None = None) -> CompiledMapping:
    """A CompiledMapping from already-parsed YAML/JSON data, validated and compiled (`sha256`: of the content as
    read; None: of the data's canonical JSON)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingConfigError(f"{source}: the mapping must be a YAML mapping with `resources:`, got {type(data).__name__}")
    try:
        mapping = MappingConfig.model_validate(data)
    except ValidationError as exc:
        raise MappingConfigError(f"{source}: invalid mapping:\n{_describe(exc, data)}") from None
    warnings = [f"{source}: {w}" for w in mapping_warnings(data)]
    digest = sha256 or sha256_of(canonical_json(data).encode())
    try:
        return CompiledMapping.compile(mapping, source, digest, warnings)
    except MappingConfigError as exc:
        if len(exc.problems) == 1:
            raise MappingConfigError(f"{source}: {exc.problems[0]}") from None
        listed = "\n".join(f"  {n}. {problem}" for n, problem in enumerate(exc.problems, start=1))
        raise MappingConfigError(f"{source}: {len(exc.problems)} problems:\n{listed}", exc.problems) from None


def load_mapping(path: str | Path | None = None) -> CompiledMapping:
    return parse_snapshot(read_mapping_file(path))


# A real mapping has a few hundred nodes and rarely an alias; these leave room for a hundred times that.
MAX_YAML_ALIASES = 1_000
MAX_YAML_NODES = 100_000


def read_yaml(text: str, source: str) -> Any:
    """YAML that cannot explode: aliases are counted and the document's size once every alias is expanded is
    computed on the node graph before anything is built, so a 600-byte "billion laughs" is refused in microseconds
    instead of growing to gigabytes (in the run and in port_mapping_sensor)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise MappingConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise MappingConfigError(f"{source}: the YAML is nested too deeply to be a mapping") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    sizes: dict[int, int] = {}
    references: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_YAML_NODES:
                raise MappingConfigError(
                    f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} nodes once its aliases (*name) are "
                    "expanded; a mapping needs far fewer: write it out without nested aliases")
            continue
        references[key] = references.get(key, 0) + 1
        if key in active:
            raise MappingConfigError(f"{source}: the YAML has an alias inside its own anchor (a recursive document)")
        if key in sizes:
            continue
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    aliases = sum(count - 1 for count in references.values())
    if aliases > MAX_YAML_ALIASES:
        raise MappingConfigError(f"{source}: the YAML uses {aliases:,} aliases (*name), more than {MAX_YAML_ALIASES:,}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
