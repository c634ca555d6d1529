"""Every Sentry kind this project syncs, declared once: what the mapping's resources of that kind may set in their
selector, which raw assets hold its items (and the Sentry endpoint, docs, fetch function and preview of each), and
the entity asset it maps into. Everything else is built from these two tables: the mapping's selector models
(`mapping/config.py`), what a mapping asks Sentry for (`assets/plan.py`), the raw assets (`assets/sentry_raw.py`),
their definition metadata (`assets/describe.py`), the entity assets, their checks and the jobs' selections
(`assets/entities.py`).

A new kind is: its fetch function in `sentry/fetch.py` (`read_<raw>(client, params, upstream, vanished)`, plus the
state it keeps when `keeps_state`), one `Raw` and one `Kind` entry here, the parameters its raw asset fetches with in
`FetchPlan.params` (assets/plan.py), and its endpoint in the Sentry emulator (`emulators/sentry_api.py`). It imports
nothing of the project: every layer reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

SENTRY_API_DOCS = "https://docs.sentry.io/api"


@dataclass(frozen=True)
class Option:
    """A selector option a kind's resources may set, as the YAML spells it (`alias`) and as the model holds it."""

    alias: str
    name: str
    type: Any
    default: Any


@dataclass(frozen=True)
class Raw:
    """A raw asset (`sentry/<name>`): what it reads from Sentry, with which function, from which upstream raw asset."""

    name: str
    description: str
    endpoint: str
    docs: str
    preview: tuple[str, ...]
    # `async def <fetch>(client, params, upstream, vanished)` in sentry/fetch.py (`read_<raw>`): `params` from
    # FetchPlan.params, `upstream` the value of the `upstream` raw asset (None for a root, read in the
    # organization's first step).
    fetch: str
    upstream: str | None = None
    # Built by an asset function of its own (sentry_raw.py), for state the plain fetch cannot hold (a cache).
    custom: bool = False
    # Its fetch keeps state between resyncs (assets/fetch_state.py) and takes it as a fifth argument.
    keeps_state: bool = False


@dataclass(frozen=True)
class Kind:
    name: str
    # The raw assets the kind's items come from, roots first; the items themselves are in the last one.
    raws: tuple[str, ...]
    # Its entity asset (`port/<entity_asset>`); None: no resync asset (comments arrive by webhook only).
    entity_asset: str | None
    options: tuple[Option, ...] = ()


DEFAULT_TAG = "environment"
# What Sentry (and so Ocean) applies when no query is sent; "" syncs every status.
DEFAULT_SENTRY_QUERY = "is:unresolved"
# How `issue-tag` rows get their `__tags`: one tag-values request per issue (Ocean's way), or, for the `environment`
# tag, one issue list per project and environment (far fewer requests); `auto` (the default) takes the second
# whenever the mapping provably reads nothing only the first has (assets/plan.py, `tag_values_choice`).
AUTO, PER_ISSUE, BY_ENVIRONMENT = "auto", "per-issue", "by-environment"

SENTRY_QUERY = Option("sentryQuery", "sentry_query", str, DEFAULT_SENTRY_QUERY)
STATS_PERIOD = Option("statsPeriod", "stats_period", Optional[str], None)
# Ocean's meaning: false drops ignored ("archived") issues, whatever the Sentry query lists (Ocean applies it to its
# webhooks; here the resync and the webhooks apply it alike, so they never disagree). Ocean's default: true.
INCLUDE_ARCHIVED = Option("includeArchived", "include_archived", bool, True)
# Which releases a release or deploy resource reads: Sentry's release search (`release.stage:adopted`,
# `semver:>=2.0.0`, `release.package:web`, free text on the version; empty: all) and how far back by date added.
RELEASE_QUERY = Option("sentryQuery", "sentry_query", str, "")
RELEASE_PERIOD = Option("statsPeriod", "stats_period", Optional[str], "90d")

RAWS: dict[str, Raw] = {raw.name: raw for raw in (
    Raw("members", "Organization members (kind `user`), pending invites included.",
        "GET /api/0/organizations/{org}/members/", f"{SENTRY_API_DOCS}/organizations/list-an-organizations-members/",
        ("email", "orgRole", "inviteStatus", "user.username"), "read_members"),
    Raw("teams", "Teams (kind `team`), with `__members` when a team resource sets includeMembers: true.",
        "GET /api/0/organizations/{org}/teams/, GET /api/0/teams/{org}/{team}/members/",
        f"{SENTRY_API_DOCS}/teams/list-an-organizations-teams/", ("slug", "name", "memberCount", "__members"),
        "read_teams"),
    Raw("projects", "Every active project of the organization.", "GET /api/0/organizations/{org}/projects/",
        f"{SENTRY_API_DOCS}/organizations/list-an-organizations-projects/", ("slug", "platform", "status"),
        "read_projects"),
    Raw("project_details", "Every active project with its error volume, crash-free rates, ownership rules, "
                           "repositories and cron monitors (kind `project`: `__stats`, `__sessions`, `__ownership`, "
                           "`__repositories`, `__monitors`).",
        "GET /api/0/organizations/{org}/stats_v2/, /sessions/, /code-mappings/, /repos/, /monitors/; "
        "GET /api/0/projects/{org}/{project}/ownership/",
        f"{SENTRY_API_DOCS}/organizations/retrieve-event-counts-for-an-organization-v2/",
        ("slug", "__stats.errors24h", "__sessions.crashFreeSessions24h", "__ownership.teams"),
        "read_project_details", upstream="projects", keeps_state=True),
    Raw("project_tags", "Tag values per project (kind `project-tag`): one row per project per value, every key "
                        "selected.",
        "GET /api/0/projects/{org}/{project}/tags/{key}/values/", f"{SENTRY_API_DOCS}/projects/list-a-tags-values/",
        ("slug", "__tags.key", "__tags.name", "__tags.count"), "read_project_tags", upstream="projects"),
    Raw("issues", "Issues per project (kinds `issue`, `issue-tag`), one list per distinct Sentry query, each with "
                  "the fields the mapping reads.",
        "GET /api/0/organizations/{org}/issues/", f"{SENTRY_API_DOCS}/events/list-an-organizations-issues/",
        ("id", "shortId", "status", "project.slug"), "read_issues", upstream="projects"),
    Raw("issue_tags", "Each issue with its `__tags` values (kind `issue-tag`), per selected tag key.",
        "GET /api/0/organizations/{org}/issues/{issue}/tags/{key}/values/",
        f"{SENTRY_API_DOCS}/events/list-a-tags-values-for-an-issue/", ("id", "status", "__tags"),
        "read_issue_tags", upstream="issues", custom=True),
    Raw("releases", "Open releases (kind `release`, and those whose deploys kind `deploy` reads), newest first, one "
                    "list per distinct release query and period; read incrementally.",
        "GET /api/0/organizations/{org}/releases/", f"{SENTRY_API_DOCS}/releases/list-an-organizations-releases/",
        ("version", "dateCreated", "deployCount", "newGroups"), "read_releases", upstream="projects",
        keeps_state=True),
    Raw("deploys", "The last deploy per project and environment of each release (kind `deploy`), with `__release` "
                   "and `__projects`; read only for releases whose deploys moved.",
        "GET /api/0/organizations/{org}/releases/{version}/deploys/",
        f"{SENTRY_API_DOCS}/releases/list-a-releases-deploys/", ("id", "__release", "environment", "dateFinished"),
        "read_deploys", upstream="releases", keeps_state=True),
    Raw("monitors", "Cron monitors of every accessible project (kind `monitor`), each with its environments' status "
                    "and `__health`.",
        "GET /api/0/organizations/{org}/monitors/",
        f"{SENTRY_API_DOCS}/crons/retrieve-monitors-for-an-organization/", ("slug", "status", "__health", "project.slug"),
        "read_monitors"),
    Raw("alert_rules", "Alert rules (kind `alert-rule`): Sentry's alerts with the detectors they fire on, or on older "
                       "installations the deprecated issue and metric alert rules; `__type`, `__projects`, `__owner`.",
        "GET /api/0/organizations/{org}/workflows/, /detectors/; where those are 404: "
        "GET /api/0/projects/{org}/{project}/rules/, /organizations/{org}/alert-rules/",
        f"{SENTRY_API_DOCS}/monitors/fetch-alerts/", ("__id", "name", "__type", "__projects"),
        "read_alert_rules", upstream="projects"),
)}

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("user", ("members",), "entities_user"),
    Kind("team", ("teams",), "entities_team",
         (Option("includeMembers", "include_members", bool, False),)),
    Kind("project", ("projects", "project_details"), "entities_project"),
    Kind("project-tag", ("projects", "project_tags"), "entities_project_tag"),
    Kind("issue", ("projects", "issues"), "entities_issue", (SENTRY_QUERY, STATS_PERIOD, INCLUDE_ARCHIVED)),
    Kind("issue-tag", ("projects", "issues", "issue_tags"), "entities_issue_tag",
         (SENTRY_QUERY, STATS_PERIOD, INCLUDE_ARCHIVED,
          Option("tagValues", "tag_values", Literal["auto", "per-issue", "by-environment"], AUTO))),
    Kind("release", ("projects", "releases"), "entities_release",
         (RELEASE_QUERY, RELEASE_PERIOD, Option("health", "health", bool, False))),
    Kind("deploy", ("projects", "releases", "deploys"), "entities_deploy",
         (RELEASE_QUERY, RELEASE_PERIOD, Option("environments", "environments", Optional[list[str]], None))),
    Kind("monitor", ("monitors",), "entities_monitor"),
    Kind("alert-rule", ("projects", "alert_rules"), "entities_alert_rule"),
    Kind("comment", (), None),  # written by webhooks only (webhooks/sync.py)
)}

# Every selector carries these, as Ocean's Sentry selectors do: the jq `query`, the `tag` (read by the tag kinds,
# accepted anywhere), and Ocean's `exportEnvVariables` (accepted without effect).
EVERYWHERE = frozenset({"query", "tag", "exportEnvVariables"})
# The kinds a resync syncs, each with an entity asset, in their order of declaration.
SYNCED: tuple[str, ...] = tuple(name for name, kind in KINDS.items() if kind.entity_asset)
