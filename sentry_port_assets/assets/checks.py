"""The checks on the entity assets: one `@multi_asset_check` (`entity_checks`) with three checks per entity asset.

- `unique_identifiers` (ERROR): no two entities of one blueprint share an identifier;
- `required_fields` (ERROR): what the bundled blueprint requires (`schema.required`, `required` relations) is
  non-null;
- `relations_resolve` (WARN): a relation into a blueprint that we produce points at an entity we produced
  (search relations are judged with `port/query.py`, Port's rules; what it cannot judge is left alone).

The check reads every entity asset through `optional_entities` (`entities.py`), so materializing one entity asset
alone (from the UI, on a fresh instance) judges what exists instead of failing; an asset never materialized, or of
a kind the mapping does not map, is not judged (Dagster shows its checks as skipped). It is subsettable, so a run
evaluates only the checks of the assets it materializes. The pure functions (`duplicate_identifiers`, `missing_required`,
`unresolved_relations`) are importable for the tests.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetChecksDefinition,
    AssetKey,
    multi_asset_check,
)

from sentry_port_assets.assets.entities import (ENTITY_ASSET_KEYS, ENTITY_KINDS, by_kind, entity_asset_keys,
                                              entity_inputs, used_kinds)
from sentry_port_assets.assets.mapping_step import mapping_for_step
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.assets.metadata import cell, table
from sentry_port_assets.mapping.blueprints import blueprints_by_id, relation_target, required_fields
from sentry_port_assets.port.query import QueryError, matches

TABLE_ROWS = 20
Entity = dict[str, Any]
UNIQUE, REQUIRED, RELATIONS = "unique_identifiers", "required_fields", "relations_resolve"


# --- check logic (pure) ---------------------------------------------------------------------------------------------
def _key(identifier: Any) -> str:
    return identifier if isinstance(identifier, str) else json.dumps(identifier, sort_keys=True)


def duplicate_identifiers(entities: Iterable[Entity], merge: bool = False) -> dict[tuple[str, str], int]:
    """(blueprint, identifier) -> how many entities share it. With `merge` (the mapping's enableMergeEntity) Port
    merges such entities field by field, which is how two resources fill one entity (the default mapping's
    environment relation to its project): only those that set one field to different values count."""
    entities = list(entities)
    counts = Counter((e.get("blueprint"), _key(e.get("identifier"))) for e in entities)
    shared = {k: n for k, n in counts.items() if n > 1}
    if not merge or not shared:
        return shared
    seen: dict[tuple[str, str], dict[str, str]] = {}
    conflicting: set[tuple[str, str]] = set()
    for e in entities:
        key = (e.get("blueprint"), _key(e.get("identifier")))
        if key not in shared:
            continue
        fields = seen.setdefault(key, {})
        for name, value in _fields(e):
            text = json.dumps(value, sort_keys=True, default=str)
            if fields.setdefault(name, text) != text:
                conflicting.add(key)
    return {k: n for k, n in shared.items() if k in conflicting}


def _fields(entity: Entity) -> Iterable[tuple[str, Any]]:
    for name in ("title", "icon", "team"):
        if entity.get(name) is not None:
            yield name, entity[name]
    for section in ("properties", "relations"):
        for name, value in (entity.get(section) or {}).items():
            if value is not None:
                yield f"{section}.{name}", value


def missing_required(entities: Iterable[Entity], blueprints: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(blueprint, identifier, field) for each required field that is null or absent."""
    missing = []
    required = {bp: required_fields(b) for bp, b in blueprints.items()}
    for e in entities:
        for f in required.get(e.get("blueprint"), []):
            section, name = f.split(".", 1)
            if (e.get(section) or {}).get(name) is None:
                missing.append((e.get("blueprint"), _key(e.get("identifier")), f))
    return missing


class _Index:
    """What we produced, per blueprint: identifiers, titles and entities (to resolve search relations)."""

    def __init__(self, all_entities: Iterable[Entity]):
        self.by_blueprint: dict[str, list[Entity]] = defaultdict(list)
        self.ids: dict[str, set[str]] = defaultdict(set)
        for e in all_entities:
            bp = e.get("blueprint")
            self.by_blueprint[bp].append(e)
            self.ids[bp].add(_key(e.get("identifier")))

    def produced(self, blueprint: str) -> bool:
        return blueprint in self.by_blueprint

    def matches(self, blueprint: str, query: dict[str, Any]) -> bool | None:
        """Whether a search query matches one of our entities, as Port evaluates it (`port/query.py`, the one
        implementation of its rules); None when the query cannot be judged here."""
        rules = query.get("rules")
        if not isinstance(rules, list) or not rules:
            return None
        try:
            return any(matches(entity, query) for entity in self.by_blueprint[blueprint])
        except QueryError:
            return None


def unresolved_relations(
    entities: Iterable[Entity], all_entities: Iterable[Entity], blueprints: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Relations into a blueprint we produce that point at nothing we produced (nulls are not judged here: they
    are misconfigurations of the mapping, reported on the entity asset)."""
    index = _Index(all_entities)
    problems = []
    for e in entities:
        for name, value in (e.get("relations") or {}).items():
            target = relation_target(blueprints, e.get("blueprint"), name)
            if target is None or not index.produced(target) or value is None:
                continue
            if isinstance(value, dict):
                if any(isinstance(r, dict) and r.get("value") is None for r in value.get("rules") or []):
                    continue
                if index.matches(target, value) is False:
                    problems.append({"blueprint": e.get("blueprint"), "identifier": _key(e.get("identifier")),
                                     "relation": name, "target": target, "value": cell(value)})
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str) and v not in index.ids[target]:
                    problems.append({"blueprint": e.get("blueprint"), "identifier": _key(e.get("identifier")),
                                     "relation": name, "target": target, "value": v})
    return problems


# --- the check ---------------------------------------------------------------------------------------------------------
def _specs(keys: dict[str, AssetKey]) -> list[AssetCheckSpec]:
    return [
        spec
        for kind, key in keys.items()
        for spec in (
            AssetCheckSpec(UNIQUE, asset=key, description="No two entities of a blueprint share an identifier (with "
                                                               "enableMergeEntity: none that set one field differently)."),
            AssetCheckSpec(REQUIRED, asset=key, description="Fields the bundled blueprint requires are non-null."),
            AssetCheckSpec(RELATIONS, asset=key, description="Relations into blueprints we produce point at entities "
                                                             "we produced.",
                           additional_deps=[other for k, other in keys.items() if k != kind]),
        )
    ]


SPECS = _specs(ENTITY_ASSET_KEYS)


def _unique(entities: list[Entity], merge: bool) -> tuple[bool, AssetCheckSeverity, dict[str, Any]]:
    dups = duplicate_identifiers(entities, merge)
    rows = [{"blueprint": bp, "identifier": i, "entities": n} for (bp, i), n in list(dups.items())[:TABLE_ROWS]]
    return not dups, AssetCheckSeverity.ERROR, {
        "duplicated_identifiers": len(dups), "examples": table(rows, ["blueprint", "identifier", "entities"])}


def _required(entities: list[Entity]) -> tuple[bool, AssetCheckSeverity, dict[str, Any]]:
    missing = missing_required(entities, blueprints_by_id())
    rows = [{"blueprint": bp, "identifier": i, "field": f} for bp, i, f in missing[:TABLE_ROWS]]
    return not missing, AssetCheckSeverity.ERROR, {
        "missing_required_fields": len(missing), "examples": table(rows, ["blueprint", "identifier", "field"])}


def _relations(entities: list[Entity], everything: list[Entity]) -> tuple[bool, AssetCheckSeverity, dict[str, Any]]:
    problems = unresolved_relations(entities, everything, blueprints_by_id())
    return not problems, AssetCheckSeverity.WARN, {
        "unresolved_relations": len(problems),
        "examples": table(problems[:TABLE_ROWS], ["blueprint", "identifier", "relation", "target", "value"])}


def build_entity_checks(names: Names = DEFAULT) -> AssetChecksDefinition:
    keys = entity_asset_keys(names)

    @multi_asset_check(
        name=names.job("entity_checks"),
        specs=_specs(keys),
        can_subset=True,
        ins=entity_inputs(names),
        required_resource_keys={names.resource("mapping")},
    )
    def checks(context: AssetCheckExecutionContext, **inputs: Optional[list[Entity]]) -> Iterator[AssetCheckResult]:
        values = by_kind(inputs)
        mapping = mapping_for_step(context.op_execution_context, names.resources_of(context).mapping)
        kinds = used_kinds(mapping)
        merge = mapping.config.enable_merge_entity
        everything = [e for kind in kinds for e in values[kind] or []]
        selected = context.selected_asset_check_keys
        for kind in ENTITY_KINDS:
            key = keys[kind]
            entities = values[kind]
            if entities is None or kind not in kinds:
                # Nothing to judge (never materialized, or a kind the mapping does not map): the checks are not
                # evaluated, which Dagster shows as skipped, rather than passed over an empty list.
                context.log.debug(f"checks of {key.to_user_string()} skipped: "
                                  + ("not materialized yet" if entities is None else f"the mapping maps no {kind}"))
                continue
            for check, judge in ((UNIQUE, lambda e: _unique(e, merge)), (REQUIRED, _required),
                                 (RELATIONS, lambda e: _relations(e, everything))):
                if not any(k.asset_key == key and k.name == check for k in selected):
                    continue
                passed, severity, metadata = judge(entities)
                yield AssetCheckResult(asset_key=key, check_name=check, passed=passed, severity=severity,
                                       metadata=metadata)

    return checks


entity_checks = build_entity_checks()
