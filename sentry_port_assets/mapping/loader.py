"""Loads the mapping YAML (PORT_MAPPING_FILE or the bundled default) into a compiled MappingConfig.

`load_mapping(path=None) -> MappingConfig` validates the file against the models (unknown kinds, misspelt keys
and selector options that do not apply to a kind are errors) and compiles every jq expression of every resource
(one combined program per resource, attached to the returned MappingConfig: `mapping.compiled()`). Any problem
raises `MappingConfigError` before anything is fetched from Sentry, naming the file, the resource index, its
kind, the field path, the expression and jq's own message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sentry_port_assets.mapping.config import MappingConfig
from sentry_port_assets.mapping.engine import MappingConfigError, compiled_resources

DEFAULT_MAPPING_FILE = Path(__file__).resolve().parent.parent / "defaults" / "mapping.yaml"

__all__ = ["DEFAULT_MAPPING_FILE", "MappingConfigError", "load_mapping", "parse_mapping"]


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


def parse_mapping(data: Any, source: str = "<mapping>") -> MappingConfig:
    """A MappingConfig from already-parsed YAML/JSON data, validated and compiled."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingConfigError(f"{source}: the mapping must be a YAML mapping with `resources:`, got {type(data).__name__}")
    try:
        mapping = MappingConfig.model_validate(data)
    except ValidationError as exc:
        raise MappingConfigError(f"{source}: invalid mapping:\n{_describe(exc, data)}") from None
    try:
        compiled_resources(mapping)
    except MappingConfigError as exc:
        raise MappingConfigError(f"{source}: {exc}") from None
    return mapping


def load_mapping(path: str | Path | None = None) -> MappingConfig:
    source = Path(path) if path else DEFAULT_MAPPING_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingConfigError(f"cannot read mapping file {source} (PORT_MAPPING_FILE): {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_mapping(data, str(source))
