"""Ensuring blueprints, the same way for Port and for the local catalog.

1. Blueprints that do not exist are created WITHOUT relations (and without mirror, calculation and aggregation
   properties, which may read relations), so blueprints that point at each other can be made.
2. Their relations are then patched in.
3. On a blueprint that already exists (Port's own `_user`, or one a user edited) only the properties and
   relations the mapping needs and the blueprint lacks are added; nothing is changed or removed.

`fragments` are partial blueprints for blueprints this integration does not own (`{"identifier": "_user",
"relations": {"sentry_user": {...}}}`): their missing relations/properties are added the same way; if the blueprint
does not exist at all (the local catalog has no `_user`), it is created from the fragment.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from sentry_port_assets.port.results import EnsureReport

Blueprint = dict[str, Any]
# Keys that may depend on relations: sent in the second (patch) step.
LATE_KEYS = ("relations", "mirrorProperties", "calculationProperties", "aggregationProperties")


def _merge_specs(blueprints: Iterable[Mapping[str, Any]], fragments: Iterable[Mapping[str, Any]]) -> dict[str, Blueprint]:
    specs: dict[str, Blueprint] = {}
    for bp in [*blueprints, *fragments]:
        ident = bp["identifier"]
        if ident not in specs:
            specs[ident] = copy.deepcopy(dict(bp))
            continue
        into = specs[ident]
        schema = into.setdefault("schema", {})
        schema.setdefault("properties", {})
        for name, prop in ((bp.get("schema") or {}).get("properties") or {}).items():
            schema["properties"].setdefault(name, copy.deepcopy(prop))
        for key in LATE_KEYS:
            for name, value in (bp.get(key) or {}).items():
                into.setdefault(key, {}).setdefault(name, copy.deepcopy(value))
    return specs


async def ensure_blueprints(
    get: Callable[[str], Awaitable[Blueprint | None]],
    create: Callable[[Blueprint], Awaitable[Any]],
    patch: Callable[[str, Blueprint], Awaitable[Any]],
    blueprints: Iterable[Mapping[str, Any]],
    fragments: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] = (),
) -> EnsureReport:
    if isinstance(fragments, Mapping):
        fragments = [{"identifier": k, **v} for k, v in fragments.items()]
    specs = _merge_specs(blueprints, fragments)
    report = EnsureReport()
    current: dict[str, Blueprint | None] = {}
    for ident in specs:
        current[ident] = await get(ident)

    # 1. create the missing ones without relations
    for ident, spec in specs.items():
        if current[ident] is not None:
            continue
        body = {k: copy.deepcopy(v) for k, v in spec.items() if k not in LATE_KEYS}
        body.setdefault("title", ident)
        schema = body.setdefault("schema", {})
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        await create(body)
        report.created.append(ident)

    # 2. patch relations into the new ones; add what is missing to the existing ones
    for ident, spec in specs.items():
        existing = current[ident]
        if existing is None:
            late = {k: copy.deepcopy(spec[k]) for k in LATE_KEYS if spec.get(k)}
            if late:
                await patch(ident, late)
            continue
        body: Blueprint = {}
        added: list[str] = []
        have_props = ((existing.get("schema") or {}).get("properties")) or {}
        want_props = ((spec.get("schema") or {}).get("properties")) or {}
        new_props = {n: p for n, p in want_props.items() if n not in have_props}
        if new_props:
            schema = copy.deepcopy(existing.get("schema") or {})
            schema["properties"] = {**have_props, **copy.deepcopy(new_props)}
            schema.setdefault("required", [])
            body["schema"] = schema
            added += [f"properties.{n}" for n in new_props]
        for key in LATE_KEYS:
            have = existing.get(key) or {}
            new = {n: v for n, v in (spec.get(key) or {}).items() if n not in have}
            if new:
                body[key] = {**copy.deepcopy(have), **copy.deepcopy(new)}
                added += [f"{key}.{n}" for n in new]
        if body:
            await patch(ident, body)
            report.added[ident] = added
        else:
            report.unchanged.append(ident)
    return report
