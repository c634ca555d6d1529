"""Port's mirror properties (Port's docs: setup-blueprint/properties/mirror-property; the blueprint schema of Port's
API spec): `mirrorProperties: {name: {title?, path: "relation[.relation…].property"}}` shows a related entity's
property (or meta-property: `$identifier`, `$title`, `$team`, `$createdAt`, `$updatedAt`) on the entity. Along a
`many` relation the values of every related entity come back as a list; a missing relation or entity is null."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Entity = dict[str, Any]
# Port's pattern for a mirror path: at least one relation, then the property.
PATH = re.compile(r"^(?:[A-Za-z0-9@_=\-$]+\.)+?(\w|\$|@|-)*?[^.]+$")
META = {"$identifier": "identifier", "$title": "title", "$team": "team", "$createdAt": "createdAt",
        "$updatedAt": "updatedAt"}


def spec_problem(name: str, spec: Any) -> str | None:
    """Why Port would refuse this mirror property in a blueprint (None: it would not)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("path"), str):
        return f"mirror property {name!r} needs a path"
    if "." not in spec["path"] or not PATH.match(spec["path"]):
        return f"mirror property {name!r}: path {spec['path']!r} is not relation[.relation…].property"
    return None


def _field(entity: Mapping[str, Any], name: str) -> Any:
    if name in META:
        return entity.get(META[name])
    return (entity.get("properties") or {}).get(name)


def value(path: str, entity: Mapping[str, Any], blueprints: Mapping[str, Mapping[str, Any]], blueprint: str,
          load: Callable[[str, str], Entity | None]) -> Any:
    """The mirrored value for `entity` of `blueprint`; `load(blueprint, identifier)` reads a related entity."""
    *relations, prop = path.split(".")
    current: list[tuple[str, Mapping[str, Any]]] = [(blueprint, entity)]
    many = False
    for name in relations:
        following: list[tuple[str, Mapping[str, Any]]] = []
        for bp_id, item in current:
            rel = ((blueprints.get(bp_id) or {}).get("relations") or {}).get(name) or {}
            target = rel.get("target")
            many = many or bool(rel.get("many"))
            linked = (item.get("relations") or {}).get(name)
            for ident in linked if isinstance(linked, list) else [linked]:
                found = load(target, ident) if isinstance(target, str) and isinstance(ident, str) else None
                if found is not None:
                    following.append((target, found))
        current = following
    values = [_field(item, prop) for _, item in current]
    if many:
        return values
    return values[0] if values else None
