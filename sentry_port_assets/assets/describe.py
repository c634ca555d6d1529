"""What each asset says about itself when the code location loads, as Dagster's own integrations describe theirs
(dagster-dbt, dagster-fivetran): an entity asset's table (`dagster/table_name`: its blueprint) and columns
(`dagster/column_schema`: every field the mapping writes, its Port type, its jq expression), where to see it in Port
and in Sentry; a raw asset's Sentry endpoint and that endpoint's API documentation.

Built from the mapping the code location loads (`MappingResource.at_load`) and the bundled blueprints; when the
mapping is Port's integration config (read by each run, not at load) the columns are not known here, and the
metadata says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import MetadataValue, TableColumn, TableColumnConstraints, TableSchema

from sentry_port_assets.kinds import RAWS
from sentry_port_assets.mapping.blueprints import blueprints_by_id
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.config import ResourceConfig

DATA_MODEL_PAGE = "/settings/data-model"


def sentry_organization_url(host: str, organization: str | None) -> str | None:
    return f"{host.rstrip('/')}/organizations/{organization}/" if organization else None


@dataclass(frozen=True)
class Links:
    """Where a user sees this instance's data: its Sentry organization and Port's data model (None: unknown)."""

    sentry_organization: str | None = None
    port_app: str | None = None


def raw_metadata(name: str, links: Links) -> dict[str, Any]:
    raw = RAWS[name]
    meta: dict[str, Any] = {"sentry_endpoint": MetadataValue.text(raw.endpoint),
                            "sentry_api_docs": MetadataValue.url(raw.docs)}
    if links.sentry_organization:
        meta["sentry_organization"] = MetadataValue.url(links.sentry_organization)
    return meta


def _constant(expression: Any) -> str | None:
    """The value of a jq expression that is a string literal (`'"sentryIssue"'`), else None."""
    if isinstance(expression, str):
        try:
            value = json.loads(expression)
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    return None


def _expression(value: Any) -> str:
    """A field's jq expression as the mapping writes it; a search relation as its rules, read as Port reads them
    ("search: $identifier = .assignedTo.email"), with their constant parts unquoted."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("rules"), list):
        def part(expression: Any) -> str:
            constant = _constant(expression)
            return constant if constant is not None else _expression(expression)

        rules = [f"{part(r.get('property'))} {part(r.get('operator'))} {part(r.get('value'))}"
                 if isinstance(r, Mapping) and "property" in r else _expression(r) for r in value["rules"]]
        return "search: " + f" {part(value.get('combinator', 'and'))} ".join(rules)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _port_type(schema: Mapping[str, Any] | None) -> str:
    if not schema:
        return "unknown"
    kind = schema.get("type", "unknown")
    detail = schema.get("format") or ("enum" if schema.get("enum") else None)
    return f"{kind} ({detail})" if detail else str(kind)


def _relation_type(relation: Mapping[str, Any] | None, search: bool) -> str:
    if not relation:
        return "relation"
    many = " (many)" if relation.get("many") else ""
    return f"relation to {relation.get('target')}{many}" + (", by search" if search else "")


class _Columns:
    """The columns of one entity asset, in the order the preview shows them; a field several resources write gets
    one column, each blueprint's expression in its description."""

    def __init__(self) -> None:
        self.types: dict[str, str] = {}
        self.descriptions: dict[str, list[str]] = {}
        self.required: dict[str, bool] = {}

    def add(self, name: str, type_: str, expression: Any, blueprint: str, required: bool, several: bool) -> None:
        self.types.setdefault(name, type_)
        if self.types[name] != type_:
            self.types[name] = "several types"
        text = _expression(expression)
        self.descriptions.setdefault(name, []).append(f"{blueprint}: {text}" if several else text)
        self.required[name] = self.required.get(name, True) and required

    def schema(self) -> TableSchema:
        return TableSchema(columns=[
            TableColumn(name, self.types[name], description="; ".join(self.descriptions[name])[:500],
                        constraints=TableColumnConstraints(nullable=not self.required[name]))
            for name in self.types])


def column_schema(resources: Sequence[ResourceConfig], blueprints: Mapping[str, Mapping[str, Any]]) -> TableSchema:
    """Every field the resources write: `blueprint`, `identifier`, `title`, `team`, `icon`, `properties.<name>`,
    `relations.<name>`, typed from the blueprint (Port's property type, or the relation's target)."""
    columns = _Columns()
    names = [_constant(r.port.entity.mappings.blueprint) or "(computed)" for r in resources]
    several = len(set(names)) > 1
    for resource, blueprint in zip(resources, names):
        m = resource.port.entity.mappings
        definition = blueprints.get(blueprint) or {}
        schema = definition.get("schema") or {}
        required = set(schema.get("required") or [])
        columns.add("blueprint", "string", m.blueprint, blueprint, True, several)
        columns.add("identifier", "string", m.identifier, blueprint, True, several)
        for name in ("title", "team", "icon"):
            if getattr(m, name) is not None:
                columns.add(name, "string", getattr(m, name), blueprint, False, several)
        for name, expression in m.properties.items():
            columns.add(f"properties.{name}", _port_type((schema.get("properties") or {}).get(name)), expression,
                        blueprint, name in required, several)
        for name, expression in m.relations.items():
            relation = (definition.get("relations") or {}).get(name)
            columns.add(f"relations.{name}", _relation_type(relation, isinstance(expression, Mapping)), expression,
                        blueprint, bool(relation and relation.get("required")), several)
    return columns.schema()


def entity_metadata(kind: str, mapping: CompiledMapping | None, links: Links) -> dict[str, Any]:
    """An entity asset's definition metadata (see the module doc)."""
    meta: dict[str, Any] = {}
    if links.port_app:
        meta["port_data_model"] = MetadataValue.url(links.port_app + DATA_MODEL_PAGE)
    if links.sentry_organization:
        meta["sentry_organization"] = MetadataValue.url(links.sentry_organization)
    if mapping is None:
        meta["mapping"] = MetadataValue.text("Port's integration config, read by each run: the columns are known "
                                             "once a run has mapped")
        return meta
    resources = mapping.resources_of(kind)
    meta["mapping"] = MetadataValue.text(mapping.source)
    if not resources:
        return meta
    blueprints = list(dict.fromkeys(_constant(r.port.entity.mappings.blueprint) or "(computed)" for r in resources))
    meta["dagster/table_name"] = ", ".join(blueprints)
    meta["dagster/column_schema"] = column_schema(resources, blueprints_by_id())
    return meta
