"""What the mapping asks of Sentry, and which raw items each mapping resource maps: where the mapping's
resources meet the raw assets' value shapes (neither `mapping/` nor `sentry/` knows the other).

Raw asset values (what the Dagster IO manager stores):
- `sentry/members`, `sentry/teams`, `sentry/projects`: `list[item]` (teams carry `__members` when any team
  resource sets `includeMembers: true`).
- `sentry/project_tags`: `{tag_key: [{**project, "__tags": <one value object>}]}`, one row per project per value.
- `sentry/issues`: `{issue_filter_key: [issue]}`, one list per distinct Sentry query of the issue resources.
- `sentry/issue_tags`: `{issue_filter_key: {tag_key: [{**issue, "__tags": [value objects]}]}}`, one row per issue.
- `sentry/releases`: `{release_filter_key: [release]}`, newest first, one list per distinct release query and period.
- `sentry/deploys`: `{release_filter_key: [{**deploy, "__release": version, "__projects": [{id, slug, name}]}]}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sentry_port_assets.kinds import AUTO, BY_ENVIRONMENT, KINDS, PER_ISSUE
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.config import MappingConfig, ResourceConfig
from sentry_port_assets.mapping.engine import CompiledResource, MappingResult, compile_resource
from sentry_port_assets.mapping.reads import CannotTell, reads, yields_path
from sentry_port_assets.progress import Progress
from sentry_port_assets.sentry.releases import ReleaseFilter
from sentry_port_assets.sentry.selection import IssueFilter

Item = dict[str, Any]


def issue_filter(resource: ResourceConfig) -> IssueFilter:
    """The Sentry side of an issue resource's selector: its search query and stats period."""
    return IssueFilter(resource.selector.sentry_query, resource.selector.stats_period)


# What an issue list per environment says of an issue's `environment` tag value: which one it is. Its count and
# first/last seen there are only in the per-issue answer (over the issue's whole retention, not a list's window).
LISTED_FIELDS = frozenset({"name", "value", "key"})


@dataclass(frozen=True)
class TagValuesChoice:
    """How an `issue-tag` resource's `__tags` are read (`per-issue` or `by-environment`), and why, in words."""

    resource: str
    how: str
    why: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.how} ({self.why})"


def tag_values_choice(compiled: CompiledResource) -> TagValuesChoice:
    """`tagValues` as set, or for `auto` (the default) the cheapest way that yields the same entities: by
    environment when the tag is `environment` and no expression of the resource reads more of a tag value than
    `LISTED_FIELDS` (mapping/reads.py proves it without running the mapping), else per issue."""
    resource = compiled.resource
    name = f"resources[{compiled.index}] (issue-tag, tag {resource.selector.tag})"
    chosen = resource.selector.tag_values
    if chosen != AUTO:
        return TagValuesChoice(name, chosen, f"tagValues: {chosen} is set")
    if resource.selector.tag != "environment":
        return TagValuesChoice(name, PER_ISSUE, "only the environment tag has an issue list per value")
    reason = _reads_beyond_listed(compiled)
    if reason:
        return TagValuesChoice(name, PER_ISSUE, reason)
    return TagValuesChoice(name, BY_ENVIRONMENT, "its expressions read only the environment's "
                           + "/".join(sorted(LISTED_FIELDS)) + ", which an issue list per environment gives")


def _reads_beyond_listed(compiled: CompiledResource) -> str | None:
    """Why the resource needs per-issue tag values (None: it does not): the first expression reading a tag value's
    count or dates, the whole value, or the whole row."""
    element = compiled.items_to_parse_name
    for path, expression in compiled.checks:
        try:
            if path == "port.itemsToParse":
                target, read = yields_path(expression)
                if target != ("__tags",) or read:
                    return f"{path} {expression!r} is not plain .__tags"
                continue
            read = reads(expression)
        except CannotTell as exc:
            return f"{path} {expression!r} uses jq the plan cannot follow ({exc})"
        for p in sorted(read):
            if not p:
                return f"{path} {expression!r} reads the whole row"
            if p[0] == "__tags":
                return f"{path} {expression!r} reads .__tags"
            if compiled.items_to_parse and p[0] == element and path != "selector.query" and (
                    len(p) < 2 or p[1] not in LISTED_FIELDS):
                return f"{path} {expression!r} reads ." + ".".join(p)
    return None


# What this project's own code reads of a raw issue, whatever the mapping: its id and project (the environment lists,
# the webhooks' lookups), status (`includeArchived`), the tag cache's change fields, and the asset preview's columns.
ISSUE_FIELDS_USED = frozenset({"id", "shortId", "project", "status", "lastSeen", "count", "userCount", "firstSeen"})


def issue_fields(resources: list[CompiledResource]) -> tuple[str, ...] | None:
    """The top-level issue fields the `issue` and `issue-tag` resources read, with ISSUE_FIELDS_USED: the issue lists
    keep only these (a Sentry issue is ~6 KB in memory, mostly `stats` and `lifetime`, which few mappings read).
    None (keep every field) when an expression reads the whole issue or uses jq that mapping/reads.py cannot follow."""
    fields = set(ISSUE_FIELDS_USED)
    for compiled in resources:
        element = compiled.items_to_parse_name if compiled.items_to_parse else None
        for path, expression in compiled.checks:
            try:
                read = reads(expression)
            except CannotTell:
                return None
            for p in read:
                if not p:
                    return None
                if p[0] == "__tags" or (p[0] == element and path != "selector.query"):
                    continue
                fields.add(p[0])
    return tuple(sorted(fields))


def release_filter(resource: ResourceConfig) -> ReleaseFilter:
    """Which releases a release or deploy resource reads: its release query and period."""
    return ReleaseFilter(resource.selector.sentry_query, resource.selector.stats_period)


@dataclass(frozen=True)
class FetchPlan:
    team_members: bool
    project_tag_keys: tuple[str, ...]
    issue_filters: tuple[IssueFilter, ...]
    issue_tag_keys: dict[IssueFilter, tuple[str, ...]]
    # Filters whose `environment` values come from one issue list per project and environment (every issue-tag
    # resource reading that tag with that filter chose `by-environment`: `tag_values_choice`).
    environments_by_list: frozenset[IssueFilter] = frozenset()
    # The kinds the mapping maps (kinds.py's order).
    kinds: tuple[str, ...] = ()
    # Release lists to read (those of release and deploy resources), which of them with health data, and which
    # lists' deploys to read.
    release_filters: tuple[ReleaseFilter, ...] = ()
    release_health: frozenset[ReleaseFilter] = frozenset()
    deploy_filters: tuple[ReleaseFilter, ...] = ()
    # How each issue-tag resource reads its tag values, and why (the `sentry/issue_tags` metadata shows them).
    tag_values: tuple[TagValuesChoice, ...] = ()
    # The issue fields kept (`issue_fields`); None: all of them.
    issue_fields: tuple[str, ...] | None = None

    def needed(self, raw: str) -> bool:
        """Whether a kind the mapping maps reads raw asset `raw`."""
        return any(raw in KINDS[kind].raws for kind in self.kinds)

    def readers(self, raw: str) -> list[str]:
        """The kinds that read raw asset `raw` (for the message of a raw asset that fetches nothing)."""
        return [name for name, kind in KINDS.items() if raw in kind.raws]

    def params(self, raw: str) -> dict[str, Any]:
        """What raw asset `raw`'s fetch (kinds.Raw.fetch) is called with."""
        return {
            "teams": {"include_members": self.team_members},
            "project_tags": {"keys": self.project_tag_keys},
            "issues": {"filters": self.issue_filters, "fields": self.issue_fields},
            "releases": {"filters": self.release_filters, "health": self.release_health},
            "deploys": {"filters": self.deploy_filters},
        }.get(raw, {})

    @classmethod
    def of(cls, mapping: CompiledMapping | MappingConfig) -> FetchPlan:
        issue_resources = mapping.resources_of("issue", "issue-tag")
        tag_keys: dict[IssueFilter, set[str]] = {}
        for r in mapping.resources_of("issue-tag"):
            tag_keys.setdefault(issue_filter(r), set()).add(r.selector.tag)
        every = (list(mapping.resources) if isinstance(mapping, CompiledMapping) else
                 [compile_resource(r, i) for i, r in enumerate(mapping.resources) if r.kind in ("issue", "issue-tag")])
        choices = [(issue_filter(c.resource), c.resource.selector.tag, tag_values_choice(c))
                   for c in every if c.kind == "issue-tag"]
        # One fetch per filter and key: the environment values are listed only if every resource reading them with
        # that filter can take them so; otherwise all of them get the per-issue values.
        listed = {f for f, _, choice in choices if choice.how == BY_ENVIRONMENT}
        listed -= {f for f, tag, choice in choices if tag == "environment" and choice.how == PER_ISSUE}
        final = tuple(choice if choice.how == PER_ISSUE or f in listed else
                      TagValuesChoice(choice.resource, PER_ISSUE, "another resource with the same sentryQuery and "
                                                                  "statsPeriod needs the environment per issue")
                      for f, _, choice in choices)
        return cls(
            team_members=any(r.selector.include_members for r in mapping.resources_of("team")),
            project_tag_keys=tuple(sorted({r.selector.tag for r in mapping.resources_of("project-tag")})),
            issue_filters=tuple(sorted({issue_filter(r) for r in issue_resources})),
            issue_tag_keys={f: tuple(sorted(keys)) for f, keys in sorted(tag_keys.items())},
            environments_by_list=frozenset(listed),
            kinds=tuple(kind for kind in KINDS if mapping.uses(kind)),
            release_filters=tuple(sorted({release_filter(r) for r in mapping.resources_of("release", "deploy")})),
            release_health=frozenset(release_filter(r) for r in mapping.resources_of("release") if r.selector.health),
            deploy_filters=tuple(sorted({release_filter(r) for r in mapping.resources_of("deploy")})),
            tag_values=final,
            issue_fields=issue_fields([c for c in every if c.kind in ("issue", "issue-tag")]),
        )


def items_for_resource(resource: ResourceConfig, raw: Any) -> list[Item]:
    """The raw items one mapping resource maps, from the value of the raw asset of its kind."""
    kind = resource.kind
    if kind == "team" and not resource.selector.include_members:
        # Ocean leaves `__members` out unless the resource asks for it.
        return [{k: v for k, v in team.items() if k != "__members"} for team in raw]
    if kind == "project-tag":
        return list(raw.get(resource.selector.tag, []))
    if kind == "issue":
        return _archived_filtered(resource, raw.get(issue_filter(resource).key, []))
    if kind == "issue-tag":
        return _archived_filtered(resource, raw.get(issue_filter(resource).key, {}).get(resource.selector.tag, []))
    if kind == "release":
        return list(raw.get(release_filter(resource).key, []))
    if kind == "deploy":
        wanted = resource.selector.environments
        return [d for d in raw.get(release_filter(resource).key, []) if wanted is None or d.get("environment") in wanted]
    return list(raw)


def archived_wanted(resource: ResourceConfig, issue: Item) -> bool:
    """`includeArchived: false` leaves ignored ("archived") issues out, whatever the Sentry query returned."""
    return resource.selector.include_archived or issue.get("status") != "ignored"


def _archived_filtered(resource: ResourceConfig, items: list[Item]) -> list[Item]:
    return [i for i in items if archived_wanted(resource, i)]


def map_kind(mapping: CompiledMapping, kind: str, raw_value: Any,
             report: Callable[[str], None] | None = None) -> MappingResult:
    """Every resource of `kind` applied to its own items out of the raw asset value of that kind; `report` gets a
    progress line every few seconds (rows mapped of all the resources' rows, rate, time left)."""
    work = [(compiled, items_for_resource(compiled.resource, raw_value)) for compiled in mapping.of_kind(kind)]
    progress = Progress(f"mapping {kind}", sum(len(items) for _, items in work), report or (lambda line: None),
                        unit="rows")
    result = MappingResult()
    for compiled, items in work:
        result.extend(compiled.map(items, progress=progress.advance))
    return result
