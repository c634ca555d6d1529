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
dropped entities (no identifier/blueprint), rows the selector filtered out, and the mapping snapshot's sha256. A
selector that does not yield a boolean fails the asset (as it fails the kind in Ocean): nothing of that kind is
published or deleted. The checks on these assets are in `checks.py`.
"""

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from dagster import AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, Failure, MetadataValue, Output, asset

from sentry_port_assets.assets.mapping_step import MAPPING_SHA, mapping_for_step
from sentry_port_assets.assets.metadata import table
from sentry_port_assets.assets.plan import map_kind
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.engine import MappingResult, Misconfiguration
from sentry_port_assets.names import DEFAULT, Names

GROUP = "port"
PREVIEW_ROWS = 10
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


def entity_asset_keys(names: Names = DEFAULT) -> dict[str, AssetKey]:
    return {kind: names.key(GROUP, name) for kind, (name, _) in ENTITY_KINDS.items()}


def raw_asset_keys(names: Names = DEFAULT) -> dict[str, AssetKey]:
    return {kind: names.key(*raw_key) for kind, (_, raw_key) in ENTITY_KINDS.items()}


ENTITY_ASSET_KEYS: dict[str, AssetKey] = entity_asset_keys()


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


def entity_metadata(result: MappingResult, mapping: CompiledMapping, resources: int) -> dict[str, Any]:
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
        "mapping": mapping.source,
        MAPPING_SHA: mapping.sha256,
    }


# --- entity assets ------------------------------------------------------------------------------------------------
def _entity_asset(names: Names, kind: str, name: str, raw_key: tuple[str, str]) -> AssetsDefinition:
    @asset(
        key=names.key(GROUP, name),
        group_name=names.group(GROUP),
        kinds={"port"},
        ins={"raw": AssetIn(key=names.key(*raw_key))},
        required_resource_keys={names.resource("mapping")},
        description=f"Port entities mapped from `{'/'.join(raw_key)}` by every `{kind}` resource of the mapping; "
                    f"empty when the mapping has no `{kind}` resource"
                    + (" (the bundled default has none)." if kind not in DEFAULT_KINDS else "."),
    )
    def _asset(context: AssetExecutionContext, raw: Any) -> Output[list[Entity]]:
        config = mapping_for_step(context, names.resources_of(context).mapping)
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
        resources = len(config.of_kind(kind))
        metadata = entity_metadata(result, config, resources)
        if not resources:
            metadata["not mapped"] = f"the mapping has no `{kind}` resource: nothing of this kind goes to Port"
        return Output(result.entities, metadata=metadata)

    return _asset


def build_entity_assets(names: Names = DEFAULT) -> list[AssetsDefinition]:
    return [_entity_asset(names, kind, name, raw_key) for kind, (name, raw_key) in ENTITY_KINDS.items()]


entity_assets = build_entity_assets()
