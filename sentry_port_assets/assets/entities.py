"""Entity assets (group `port`): every mapping resource of a kind applied to that kind's raw Sentry asset.

| asset | raw input | value |
|---|---|---|
| `port/entities_user` | `sentry/members` | `list[dict]` Port entities |
| `port/entities_team` | `sentry/teams` | 〃 |
| `port/entities_project` | `sentry/projects` | 〃 |
| `port/entities_project_tag` | `sentry/project_tags` | 〃 |
| `port/entities_issue` | `sentry/issues` | 〃 |
| `port/entities_issue_tag` | `sentry/issue_tags` | 〃 |

Each needs the resource `mapping` (`MappingResource`). Metadata: entity count per blueprint, a preview of the
first entities, the misconfigurations (resource, field, expression, rows, an example item id, jq's message),
dropped entities (no identifier/blueprint) and rows the selector filtered out. A selector that does not yield a
boolean fails the asset (as it fails the kind in Ocean): nothing of that kind is published or deleted.

Checks, per entity asset (`entity_checks`):
- `unique_identifiers` (ERROR): no two entities of one blueprint share an identifier;
- `required_fields` (ERROR): what the bundled blueprint requires (`schema.required`, `required` relations) is
  non-null;
- `relations_resolve` (WARN): a relation into a blueprint that we produce points at an entity we produced
  (search relations with `=`/`contains`/`in` rules are resolved the way Port would; others are not judged).
  It reads all six entity assets.

The pure functions behind the checks (`duplicate_identifiers`, `missing_required`, `unresolved_relations`)
are importable for the publisher and the tests.
"""



import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    DagsterError,
    Failure,
    InputContext,
    MetadataValue,
    Output,
    asset,
    asset_check,
    input_manager,
)

from sentry_port_assets.assets.mapping_step import mapping_for_step
from sentry_port_assets.assets.metadata import cell, table
from sentry_port_assets.mapping.blueprints import blueprints_by_id, relation_target, required_fields
from sentry_port_assets.mapping.engine import MappingResult, Misconfiguration, map_kind
from sentry_port_assets.mapping.resource import MappingResource
from sentry_port_assets.port.query import QueryError, matches

GROUP = "port"
PREVIEW_ROWS = 10
TABLE_ROWS = 20
Entity = dict[str, Any]

# kind -> (entity asset name, raw asset key)
ENTITY_KINDS: dict[str, tuple[str, tuple[str, str]]] = {
    "user": ("entities_user", ("sentry", "members")),
    "team": ("entities_team", ("sentry", "teams")),
    "project": ("entities_project", ("sentry", "projects")),
    "project-tag": ("entities_project_tag", ("sentry", "project_tags")),
    "issue": ("entities_issue", ("sentry", "issues")),
    "issue-tag": ("entities_issue_tag", ("sentry", "issue_tags")),
}
# The kinds the bundled default mapping (defaults/mapping.yaml) maps; the others' assets stay empty unless yours does.
DEFAULT_KINDS = ("user", "team", "project-tag", "issue-tag")
ENTITY_ASSET_KEYS: dict[str, AssetKey] = {kind: AssetKey([GROUP, name]) for kind, (name, _) in ENTITY_KINDS.items()}


# --- metadata ----------------------------------------------------------------------------------------------------
def relation_cell(value: Any) -> Any:
    """What a relation points at: identifiers as they are; a search relation as the values its rules look for
    (an issue's assignee shows as the email), not the rule's JSON. An unassigned rule shows as null."""
    if isinstance(value, dict) and isinstance(value.get("rules"), list):
        parts = [relation_cell(r) for r in value["rules"]]
        if len(parts) == 1:
            return parts[0]
        return f" {value.get('combinator', 'and')} ".join("null" if p is None else str(p) for p in parts)
    if isinstance(value, dict) and "value" in value:
        target = value["value"]
        if value.get("operator") != "=":
            target = f"{value.get('operator')} {json.dumps(target, ensure_ascii=False)}"
        elif target is None:
            return None
        prop = value.get("property")
        return target if prop in ("$identifier", None) else f"{prop} {target}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


def entity_preview(entities: Sequence[Entity], limit: int = PREVIEW_ROWS) -> Any:
    rows = []
    for e in entities[:limit]:
        row = {"blueprint": e.get("blueprint"), "identifier": e.get("identifier"), "title": e.get("title")}
        row.update({f"properties.{k}": v for k, v in (e.get("properties") or {}).items()})
        row.update({f"relations.{k}": relation_cell(v) for k, v in (e.get("relations") or {}).items()})
        rows.append(row)
    return table(rows, limit=None)


def field_table(fields: Sequence[Misconfiguration]) -> Any:
    rows = [{"resource": f"resources[{m.resource_index}]", "kind": m.kind, "field": m.field,
             "expression": m.expression, "rows": m.count, "example item": m.example_item_id, "message": m.message}
            for m in fields]
    return table(rows, ["resource", "kind", "field", "expression", "rows", "example item", "message"], limit=None)


def entity_metadata(result: MappingResult, mapping_source: str, resources: int) -> dict[str, Any]:
    per_blueprint = Counter(e["blueprint"] for e in result.entities)
    return {
        "dagster/row_count": len(result.entities),
        "entities": len(result.entities),
        "entities per blueprint": MetadataValue.json(dict(sorted(per_blueprint.items()))),
        "mapping resources": resources,
        "raw items": result.items,
        "dropped (no identifier or blueprint)": result.dropped,
        "filtered by selector": result.filtered,
        "misconfigured fields": len(result.misconfigurations),
        "misconfigurations": field_table(result.misconfigurations),
        "fields with nulls in the data": len(result.nulls),
        "nulls in the data": field_table(result.nulls),
        "preview": entity_preview(result.entities),
        "mapping": mapping_source,
    }


# --- entity assets ------------------------------------------------------------------------------------------------
def _entity_asset(kind: str, name: str, raw_key: tuple[str, str]):
    @asset(
        name=name,
        key_prefix=[GROUP],
        group_name=GROUP,
        kinds={"port"},
        ins={"raw": AssetIn(key=AssetKey(list(raw_key)))},
        description=f"Port entities mapped from `{'/'.join(raw_key)}` by every `{kind}` resource of the mapping; "
                    f"empty when the mapping has no `{kind}` resource"
                    + (" (the bundled default has none)." if kind not in DEFAULT_KINDS else "."),
    )
    def _asset(context: AssetExecutionContext, mapping: MappingResource, raw: Any) -> Output[list[Entity]]:
        config = mapping_for_step(mapping)
        result = map_kind(config, kind, raw if raw is not None else [])
        if result.errors:
            raise Failure(
                description=f"mapping of kind {kind!r} failed: "
                + "; ".join(e.describe() for e in result.errors)
                + " (a selector must yield true or false; nothing of this kind is published)",
                metadata={"errors": MetadataValue.md("\n".join(f"- {e.describe()}" for e in result.errors))},
            )
        for m in result.misconfigurations:
            context.log.warning(f"misconfigured field: {m.describe()}")
        if result.dropped:
            context.log.warning(f"{result.dropped} {kind} entities dropped: empty identifier or blueprint")
        resources = sum(1 for r in config.resources if r.kind == kind)
        metadata = entity_metadata(result, mapping.source, resources)
        if not resources:
            metadata["not mapped"] = f"the mapping has no `{kind}` resource: nothing of this kind goes to Port"
        return Output(result.entities, metadata=metadata)

    return _asset


entity_assets = [_entity_asset(kind, name, raw_key) for kind, (name, raw_key) in ENTITY_KINDS.items()]


# --- check logic (pure) ---------------------------------------------------------------------------------------------
def _key(identifier: Any) -> str:
    return identifier if isinstance(identifier, str) else json.dumps(identifier, sort_keys=True)


def duplicate_identifiers(entities: Iterable[Entity]) -> dict[tuple[str, str], int]:
    counts = Counter((e.get("blueprint"), _key(e.get("identifier"))) for e in entities)
    return {k: n for k, n in counts.items() if n > 1}


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


def _relations_result(entities: list[Entity], others: list[list[Entity]]) -> AssetCheckResult:
    everything = list(entities)
    for values in others:
        everything.extend(values or [])
    problems = unresolved_relations(entities, everything, blueprints_by_id())
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.WARN,
        metadata={"unresolved relations": len(problems),
                  "examples": table(problems[:TABLE_ROWS], ["blueprint", "identifier", "relation", "target", "value"])},
    )


# --- checks ----------------------------------------------------------------------------------------------------------
OPTIONAL_ENTITIES = "optional_entities"


@input_manager(required_resource_keys={"io_manager"})
def optional_entities(context: InputContext) -> list[Entity] | None:
    """Another entity asset's latest value for the relations check, or None when it has never been materialized:
    materializing one entity asset alone (from the UI, on a fresh instance) must not fail for want of the others."""
    try:
        return context.resources.io_manager.load_input(context)
    except (FileNotFoundError, DagsterError):
        context.log.info(f"{context.asset_key.to_user_string()} not materialized yet: its relations are not judged")
        return None


def _checks_for(kind: str, name: str) -> list:
    key = ENTITY_ASSET_KEYS[kind]
    others = {n: AssetIn(key=ENTITY_ASSET_KEYS[k], input_manager_key=OPTIONAL_ENTITIES)
              for k, (n, _) in ENTITY_KINDS.items() if k != kind}

    @asset_check(asset=key, name="unique_identifiers", description="No two entities of a blueprint share an identifier.")
    def unique_identifiers(entities: list[Entity]) -> AssetCheckResult:
        dups = duplicate_identifiers(entities)
        rows = [{"blueprint": bp, "identifier": i, "entities": n} for (bp, i), n in list(dups.items())[:TABLE_ROWS]]
        return AssetCheckResult(
            passed=not dups,
            severity=AssetCheckSeverity.ERROR,
            metadata={"duplicated identifiers": len(dups), "examples": table(rows, ["blueprint", "identifier", "entities"])},
        )

    @asset_check(asset=key, name="required_fields", description="Fields the bundled blueprint requires are non-null.")
    def required(entities: list[Entity]) -> AssetCheckResult:
        missing = missing_required(entities, blueprints_by_id())
        rows = [{"blueprint": bp, "identifier": i, "field": f} for bp, i, f in missing[:TABLE_ROWS]]
        return AssetCheckResult(
            passed=not missing,
            severity=AssetCheckSeverity.ERROR,
            metadata={"missing required fields": len(missing), "examples": table(rows, ["blueprint", "identifier", "field"])},
        )

    # Dagster wants one named parameter per additional input: build the function with those names.
    namespace: dict[str, Any] = {"_relations_result": _relations_result}
    exec(  # noqa: S102 - parameter names come from ENTITY_KINDS above, not from input
        f"def relations(entities, {', '.join(others)}):\n"
        f"    return _relations_result(entities, [{', '.join(others)}])\n",
        namespace,
    )
    relations = namespace["relations"]
    relations_check = asset_check(
        asset=key,
        name="relations_resolve",
        additional_ins=others,
        description="Relations into blueprints we produce point at entities we produced.",
    )(relations)
    return [unique_identifiers, required, relations_check]


entity_checks = [check for kind, (name, _) in ENTITY_KINDS.items() for check in _checks_for(kind, name)]
