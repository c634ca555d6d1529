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
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from dagster import (AssetExecutionContext, AssetIn, AssetKey, AssetsDefinition, AssetSpec, DagsterError, Failure,
                     InputContext, MetadataValue, Output, asset, input_manager)

from sentry_port_assets.assets.describe import Links
from sentry_port_assets.assets.describe import entity_metadata as definition_metadata
from sentry_port_assets.assets.mapping_step import MAPPING_SHA, mapping_for_step
from sentry_port_assets.assets.metadata import table
from sentry_port_assets.assets.plan import map_kind
from sentry_port_assets.assets.presentation import PLAIN, Presentation
from sentry_port_assets.kinds import KINDS
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.engine import MappingResult, Misconfiguration
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.progress import duration

GROUP = "port"
PREVIEW_ROWS = 10
Entity = dict[str, Any]

# kind -> (entity asset name, the raw asset holding its items), and the raw assets it is mapped from, roots first
# (what `FetchPlan` fetches for that kind): both from the kinds table (kinds.py).
ENTITY_KINDS: dict[str, tuple[str, tuple[str, str]]] = {
    name: (kind.entity_asset, ("sentry", kind.raws[-1])) for name, kind in KINDS.items() if kind.entity_asset}
RAW_FEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    name: tuple(("sentry", raw) for raw in KINDS[name].raws) for name in ENTITY_KINDS}


def used_kinds(mapping: CompiledMapping | None) -> tuple[str, ...]:
    """The entity kinds `mapping` maps (every one when the mapping is not known yet: Port's integration config is
    read by the runs, not when the code location loads)."""
    return tuple(k for k in ENTITY_KINDS if mapping is None or mapping.uses(k))


def kind_asset_keys(names: Names, kinds: Sequence[str]) -> list[AssetKey]:
    """The raw and entity assets that `kinds` need, each once, raw first."""
    raw = dict.fromkeys(names.key(*key) for kind in kinds for key in RAW_FEEDS[kind])
    return [*raw, *(names.key(GROUP, ENTITY_KINDS[kind][0]) for kind in kinds)]


def entity_asset_keys(names: Names = DEFAULT) -> dict[str, AssetKey]:
    return {kind: names.key(GROUP, name) for kind, (name, _) in ENTITY_KINDS.items()}


ENTITY_ASSET_KEYS: dict[str, AssetKey] = entity_asset_keys()
OPTIONAL_ENTITIES = "optional_entities"


@input_manager(required_resource_keys={"io_manager"})
def optional_entities(context: InputContext) -> Optional[list[Entity]]:
    """An entity asset's latest value, or None when it has never been materialized (the jobs leave out the kinds the
    mapping does not map; one asset can be materialized alone from the UI)."""
    try:
        return context.resources.io_manager.load_input(context)
    except (FileNotFoundError, DagsterError):
        context.log.debug(f"{context.asset_key.to_user_string()} not materialized yet")
        return None


def entity_inputs(names: Names = DEFAULT) -> dict[str, AssetIn]:
    """Every entity asset as an optional input (`optional_entities`), named as the asset; `by_kind` reads them."""
    return {name: AssetIn(key=key, input_manager_key=OPTIONAL_ENTITIES)
            for (name, _), key in zip(ENTITY_KINDS.values(), entity_asset_keys(names).values())}


def by_kind(inputs: Mapping[str, Optional[list[Entity]]]) -> dict[str, Optional[list[Entity]]]:
    return {kind: inputs.get(name) for kind, (name, _) in ENTITY_KINDS.items()}


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
             "expression": m.expression, "rows": m.count, "example_item": m.example_item_id, "message": m.message}
            for m in fields]
    return table(rows, ["resource", "kind", "field", "expression", "rows", "example_item", "message"], limit=None)


def entity_metadata(result: MappingResult, mapping: CompiledMapping, resources: int) -> dict[str, Any]:
    per_blueprint = Counter(e["blueprint"] for e in result.entities)
    return {
        "dagster/row_count": len(result.entities),
        "entities_per_blueprint": MetadataValue.json(dict(sorted(per_blueprint.items()))),
        "mapping_resources": resources,
        "raw_items": result.items,
        "dropped_without_identifier_or_blueprint": result.dropped,
        "filtered_by_selector": result.filtered,
        "misconfigured_fields": len(result.misconfigurations),
        "misconfigurations": field_table(result.misconfigurations),
        "fields_with_nulls_in_the_data": len(result.nulls),
        "nulls_in_the_data": field_table(result.nulls),
        "preview": entity_preview(result.entities),
        "mapping": MetadataValue.text(mapping.source),
        MAPPING_SHA: mapping.sha256,
    }


# --- entity assets ------------------------------------------------------------------------------------------------
def _description(kind: str, raw_key: tuple[str, str], mapping: CompiledMapping | None) -> str:
    if mapping is not None and not mapping.uses(kind):
        return (f"**Not synced**: the mapping ({mapping.source}) has no `{kind}` resource, so this asset is in no job "
                f"and nothing of this kind is fetched, published or deleted. Add a `{kind}` resource to the mapping "
                "and reload the code location to sync it.")
    return (f"Port entities mapped from `{'/'.join(raw_key)}` by every `{kind}` resource of the mapping, one jq "
            "program per resource; its columns are the fields those resources write.")


def _entity_asset(names: Names, kind: str, name: str, raw_key: tuple[str, str], mapping: CompiledMapping | None,
                  links: Links, present: Presentation) -> AssetsDefinition:
    key = names.key(GROUP, name)
    spec = AssetSpec(key=key, group_name=names.group(GROUP), kinds={"port", "jq"},
                     description=_description(kind, raw_key, mapping), metadata=definition_metadata(kind, mapping, links))

    @asset(**present.asset_args(spec), ins={"raw": AssetIn(key=names.key(*raw_key))},
           required_resource_keys={names.resource("mapping")})
    def _asset(context: AssetExecutionContext, raw: Any) -> Output[list[Entity]]:
        config = mapping_for_step(context, names.resources_of(context).mapping)
        if not config.uses(kind):
            # Only materialized by hand, or when the mapping was not known at load (Port's integration config): the
            # jobs leave the kinds the mapping does not map out. Empty, marked so; its checks are skipped.
            why = f"the mapping ({config.source}) has no {kind} resource: nothing of this kind goes to Port"
            context.log.info(f"{key.to_user_string()} is empty: {why}")
            return Output([], metadata={"dagster/row_count": 0, "not_mapped": why, MAPPING_SHA: config.sha256})
        started = time.monotonic()
        result = map_kind(config, kind, raw if raw is not None else [], context.log.info)
        seconds = time.monotonic() - started
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
        if seconds >= 1:
            context.log.info(f"mapped {result.items:,} {kind} rows into {len(result.entities):,} entities in "
                             f"{duration(seconds)}")
        return Output(result.entities, metadata={**entity_metadata(result, config, len(config.of_kind(kind))),
                                                 "mapping_seconds": MetadataValue.float(round(seconds, 3))})

    return _asset


def build_entity_assets(names: Names = DEFAULT, mapping: CompiledMapping | None = None, links: Links = Links(),
                        present: Presentation = PLAIN) -> list[AssetsDefinition]:
    """The entity assets of one instance; `mapping`: the one the code location loaded (None: not known at load)."""
    return [_entity_asset(names, kind, name, raw_key, mapping, links, present)
            for kind, (name, raw_key) in ENTITY_KINDS.items()]


entity_assets = build_entity_assets()
