"""The bundled blueprints (`defaults/blueprints.json`), made consistent with the bundled default mapping.

The file is a JSON list of Port blueprint definitions, as Port's API takes them, with one addition: an entry
with `"ownedByPort": true` is a FRAGMENT of a blueprint that Port itself owns (`_user`). It carries only the
relations this integration needs on it (`sentry_user` -> `sentryUser`); the publisher must never create,
replace or delete such a blueprint, only add the relations it lists when they are missing.

- `load_default_blueprints() -> list[dict]`: every entry, fragments included (a fresh copy each call).
- `owned_blueprints()` / `port_owned_fragments()`: the two kinds apart.
- `blueprints_by_id()`: `{identifier: blueprint}`.
- `relation_target(blueprints, blueprint, relation) -> str | None`: the target blueprint of a relation.
- `required_fields(blueprint) -> list[str]`: `properties.<name>` for `schema.required`, `relations.<name>` for
  relations with `required: true`.

Decisions about the seed's inconsistencies are written down in docs/mapping.md.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_BLUEPRINTS_FILE = Path(__file__).resolve().parent.parent / "defaults" / "blueprints.json"
DEFAULT_SCORECARDS_FILE = DEFAULT_BLUEPRINTS_FILE.parent / "scorecards.json"
OWNED_BY_PORT = "ownedByPort"


@lru_cache(maxsize=2)
def _load(path: str, key: str, shape: str) -> tuple[dict[str, Any], ...]:
    """A bundled JSON list whose entries each have `key` (read once per process)."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, list) or not all(isinstance(entry, dict) and entry.get(key) for entry in data):
        raise ValueError(f"{path}: expected a JSON list of {shape}")
    return tuple(data)


def load_default_blueprints() -> list[dict[str, Any]]:
    return copy.deepcopy(list(_load(str(DEFAULT_BLUEPRINTS_FILE), "identifier", "blueprints with identifiers")))


def load_default_scorecards() -> list[dict[str, Any]]:
    """The bundled scorecards (`defaults/scorecards.json`, Ocean's `[{blueprint, data: [scorecard]}]`)."""
    return copy.deepcopy(list(_load(str(DEFAULT_SCORECARDS_FILE), "blueprint", "{blueprint, data: [scorecard]}")))


def owned_blueprints() -> list[dict[str, Any]]:
    """Blueprints this integration creates and owns."""
    return [b for b in load_default_blueprints() if not b.get(OWNED_BY_PORT)]


def port_owned_fragments() -> list[dict[str, Any]]:
    """Fragments of Port's own blueprints: only add the listed relations."""
    return [b for b in load_default_blueprints() if b.get(OWNED_BY_PORT)]


def blueprints_by_id(blueprints: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    return {b["identifier"]: b for b in (blueprints if blueprints is not None else load_default_blueprints())}


def relation_target(blueprints: dict[str, dict[str, Any]], blueprint: str, relation: str) -> str | None:
    rel = (blueprints.get(blueprint) or {}).get("relations", {}).get(relation)
    return rel.get("target") if isinstance(rel, dict) else None


def required_fields(blueprint: dict[str, Any]) -> list[str]:
    fields = [f"properties.{name}" for name in (blueprint.get("schema") or {}).get("required", [])]
    fields += [f"relations.{name}" for name, rel in (blueprint.get("relations") or {}).items() if rel.get("required")]
    return fields
