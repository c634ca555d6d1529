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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Kind = Literal["user", "team", "project", "project-tag", "issue", "issue-tag", "comment"]
KINDS: tuple[str, ...] = ("user", "team", "project", "project-tag", "issue", "issue-tag", "comment")

DEFAULT_TAG = "environment"
# What Sentry (and so Ocean) applies when no query is sent; "" syncs every status.
DEFAULT_SENTRY_QUERY = "is:unresolved"
# How `issue-tag` rows get their `__tags`: one tag-values request per issue (exact, Ocean's way), or, for the
# `environment` tag, one issue list per project and environment (far fewer requests; see assets/plan.py).
PER_ISSUE, BY_ENVIRONMENT = "per-issue", "by-environment"

# Which selector options each kind uses. Ocean's Sentry selectors also carry `tag` on every kind, and its base
# selector `exportEnvVariables`: accepted anywhere without effect. An option a kind does not use is a warning.
OCEAN_EVERYWHERE = frozenset({"query", "tag", "exportEnvVariables"})
SELECTOR_OPTIONS: dict[str, frozenset[str]] = {
    "user": frozenset(),
    "team": frozenset({"includeMembers"}),
    "project": frozenset(),
    "project-tag": frozenset({"tag"}),
    "issue": frozenset({"sentryQuery", "statsPeriod", "includeArchived"}),
    "issue-tag": frozenset({"tag", "sentryQuery", "statsPeriod", "tagValues", "includeArchived"}),
    "comment": frozenset(),
}


class Selector(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    query: str = "true"
    include_members: bool = Field(False, alias="includeMembers")
    tag: str = DEFAULT_TAG
    sentry_query: str = Field(DEFAULT_SENTRY_QUERY, alias="sentryQuery")
    stats_period: str | None = Field(None, alias="statsPeriod")
    tag_values: Literal["per-issue", "by-environment"] = Field(PER_ISSUE, alias="tagValues")
    # Ocean's meaning: false drops ignored ("archived") issues, whatever the Sentry query lists (Ocean applies it to
    # its webhooks; here the resync and the webhooks apply it alike, so they never disagree). Ocean's default: true.
    include_archived: bool = Field(True, alias="includeArchived")
    export_env_variables: Any = Field(None, alias="exportEnvVariables")

    @model_validator(mode="after")
    def _by_environment_needs_the_environment_tag(self) -> "Selector":
        if self.tag_values == BY_ENVIRONMENT and self.tag != "environment":
            raise ValueError(f"tagValues: {BY_ENVIRONMENT} works for tag 'environment' only, not {self.tag!r}; "
                             f"use tagValues: {PER_ISSUE} (the default) for other tags")
        return self

    @field_validator("query", mode="before")
    @classmethod
    def _yaml_boolean_is_jq_boolean(cls, value: Any) -> Any:
        # `query: true` unquoted in YAML is a boolean; it means the jq program `true`.
        if isinstance(value, bool):
            return "true" if value else "false"
        return value


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
    selector: Selector = Field(default_factory=Selector)
    port: PortConfig



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
