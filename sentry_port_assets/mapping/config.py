"""Models for the mapping YAML, in Ocean's format, accepted unchanged.

The Sentry-side options of a selector (`includeMembers`, `tag`, `sentryQuery`, `statsPeriod`) say what the raw
assets fetch; `query` is the jq filter applied to every raw item. The Sentry search query is spelt `sentryQuery`
so it cannot be confused with the jq `query`.

Unknown keys are ignored, as Ocean ignores them (Port stores an integration's config with extra keys allowed), but
never silently: `load_mapping` (loader.py) lists each one as a warning that names it (a misspelt `itemToParse` or
`identifer` is reported, and a missing required key is still an error), then compiles every jq expression into a
`CompiledMapping` (compiled.py). These models hold the YAML's content only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from sentry_port_assets.kinds import (BY_ENVIRONMENT, DEFAULT_TAG, EVERYWHERE, PER_ISSUE,
                                      KINDS as KIND_TABLE)

KINDS: tuple[str, ...] = tuple(KIND_TABLE)
Kind = Literal[KINDS]  # type: ignore[valid-type]  # the names of kinds.py's table


class Selector(BaseModel):
    """What every kind's selector holds (kinds.EVERYWHERE); each kind's own options are added by `selector_model`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    query: str = "true"
    tag: str = DEFAULT_TAG
    export_env_variables: Any = Field(None, alias="exportEnvVariables")

    @model_validator(mode="after")
    def _by_environment_needs_the_environment_tag(self) -> "Selector":
        if getattr(self, "tag_values", PER_ISSUE) == BY_ENVIRONMENT and self.tag != "environment":
            raise ValueError(f"tagValues: {BY_ENVIRONMENT} works for tag 'environment' only, not {self.tag!r}; "
                             f"use tagValues: {PER_ISSUE} or leave it out for other tags")
        return self

    @field_validator("query", mode="before")
    @classmethod
    def _yaml_boolean_is_jq_boolean(cls, value: Any) -> Any:
        # `query: true` unquoted in YAML is a boolean; it means the jq program `true`.
        if isinstance(value, bool):
            return "true" if value else "false"
        return value


def _selector_model(kind: str) -> type[Selector]:
    options = KIND_TABLE[kind].options
    fields: dict[str, Any] = {o.name: (o.type, Field(o.default, alias=o.alias)) for o in options}
    name = "".join(part.capitalize() for part in kind.split("-")) + "Selector"
    return create_model(name, __base__=Selector, **fields)


SELECTORS: dict[str, type[Selector]] = {kind: _selector_model(kind) for kind in KINDS}
# Which selector options each kind uses (an option another kind uses is a warning: it is ignored here).
SELECTOR_OPTIONS: dict[str, frozenset[str]] = {
    kind: frozenset(o.alias for o in spec.options) for kind, spec in KIND_TABLE.items()}
OCEAN_EVERYWHERE = EVERYWHERE


class EntityMappings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    identifier: Any
    title: Any = None
    icon: Any = None
    blueprint: Any
    team: Any = None
    properties: dict[str, Any] = Field(default_factory=dict)
    relations: dict[str, Any] = Field(default_factory=dict)


class EntityConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    mappings: EntityMappings


class PortConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    entity: EntityConfig
    items_to_parse: str | None = Field(None, alias="itemsToParse")
    items_to_parse_name: str = Field("item", alias="itemsToParseName")
    items_to_parse_top_level_transform: bool = Field(True, alias="itemsToParseTopLevelTransform")


class ResourceConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Kind
    # The kind's own model (SELECTORS), with the options kinds.py declares for it.
    selector: Selector = Field(default_factory=Selector)
    port: PortConfig

    @model_validator(mode="before")
    @classmethod
    def _the_kinds_selector(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in SELECTORS and not isinstance(data.get("selector"), Selector):
            try:
                selector = SELECTORS[data["kind"]].model_validate(data.get("selector") or {})
            except ValidationError as exc:  # the errors keep their place in the YAML: resources[i].selector.<key>
                raise ValidationError.from_exception_data(exc.title, [
                    {"type": e["type"], "loc": ("selector", *e["loc"]), "input": e["input"], **(
                        {"ctx": e["ctx"]} if "ctx" in e else {})} for e in exc.errors()]) from None
            return {**data, "selector": selector}
        return data



class MappingConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    delete_dependent_entities: bool = Field(True, alias="deleteDependentEntities")  # Ocean's default
    create_missing_related_entities: bool = Field(True, alias="createMissingRelatedEntities")
    enable_merge_entity: bool = Field(True, alias="enableMergeEntity")
    entity_deletion_threshold: float = Field(0.9, alias="entityDeletionThreshold", ge=0, le=1)
    resources: list[ResourceConfig] = Field(default_factory=list)

    def resources_of(self, *kinds: str) -> list[ResourceConfig]:
        return [r for r in self.resources if r.kind in kinds]

    def uses(self, *kinds: str) -> bool:
        return any(r.kind in kinds for r in self.resources)
