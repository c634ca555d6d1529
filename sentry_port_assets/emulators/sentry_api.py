"""A Sentry Web API emulator (starlette) that behaves like sentry.io where it matters to a client.

It serves a `SentryDataset` with Sentry's `Link` pagination and cursors, per-endpoint fixed-window rate limits
and concurrency limits with Sentry's headers and 429 bodies (no `Retry-After`), optional latency, and fault
injection. Tests and benchmarks run it on loopback with `ServerThread`; the demo runs it in process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sentry_port_assets.emulators.sentry_alerts import DETECTOR_ALIASES
from sentry_port_assets.emulators.sentry_data import SentryDataset
from sentry_port_assets.emulators.sentry_health import days_in
from sentry_port_assets.emulators.sentry_releases import QueryProblem

# "query-timeout": a Snuba query timeout as Sentry releases before 24.x answered it (400, "Query timeout…"); current
# releases answer 504 (see "500"'s handling) and Snuba rate limits with a 429 that carries no rate-limit headers.
# Paging that never ends, as a buggy server or a proxy that drops the `cursor` parameter makes it: "repeat-cursor"'s
# `Link` says the next page has results, at the cursor this page was asked with (page one: "0:0:0", page one again);
# "endless"'s says it has results past the end (empty pages, the cursor moving on).
FaultKind = Literal["500", "slow", "drop", "malformed", "401", "403", "query-timeout", "snuba-429", "repeat-cursor",
                    "endless"]
LINK_FAULTS = frozenset({"repeat-cursor", "endless"})
MAX_PAGE = 100


@dataclass
class Fault:
    """Makes matching requests fail: `times` of them (None: every one), skipping the first `after`."""

    kind: FaultKind
    endpoint: str | None = None  # an endpoint template such as "/organizations/{org}/issues/"; None: all
    times: int | None = 1
    after: int = 0
    slow_seconds: float = 5.0
    seen: int = 0
    fired: int = 0

    def fires(self, endpoint: str) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        self.seen += 1
        if self.seen <= self.after or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


# The read scopes Sentry's permission classes accept for each endpoint we model (a write or admin scope of the
# same family works too): OrganizationPermission, OrganizationMemberPermission, TeamPermission, ProjectPermission,
# OrganizationEventPermission / GroupPermission.
ENDPOINT_SCOPES = {
    "/organizations/{org}/": "org", "/organizations/{org}/members/": "member", "/organizations/{org}/teams/": "org",
    "/teams/{org}/{team}/members/": "team", "/organizations/{org}/projects/": "org", "/projects/": "project",
    "/organizations/{org}/issues/": "event", "/organizations/{org}/issues/{issue}/": "event",
    "/projects/{org}/{project}/tags/{key}/values/": "project",
    "/organizations/{org}/issues/{issue}/tags/{key}/values/": "event",
    "/organizations/{org}/issues/{issue}/comments/": "event",
    "/organizations/{org}/releases/": "release", "/organizations/{org}/releases/{version}/": "release",
    "/organizations/{org}/releases/{version}/deploys/": "release",
    "/organizations/{org}/stats_v2/": "org", "/organizations/{org}/sessions/": "org",
    "/projects/{org}/{project}/ownership/": "project",
    "/organizations/{org}/repos/": "integration", "/organizations/{org}/code-mappings/": "integration",
    "/organizations/{org}/monitors/": "alerts", "/organizations/{org}/workflows/": "alerts",
    "/organizations/{org}/detectors/": "alerts", "/organizations/{org}/alert-rules/": "alerts",
    "/projects/{org}/{project}/rules/": "project-alerts",
}
# Families whose permission class accepts more than `<family>:read|write|admin`: OrganizationReleasePermission's GET
# (src/sentry/api/bases/organization.py) takes the project scopes, project:releases and org:ci.
# OrganizationIntegrationsLoosePermission's GET (repositories, code mappings) takes the org scopes,
# org:integrations and org:ci.
FAMILY_SCOPES = {"release": frozenset({"project:read", "project:write", "project:admin", "project:releases",
                                       "org:ci"}),
                 "integration": frozenset({"org:read", "org:write", "org:admin", "org:integrations", "org:ci"}),
                 # OrganizationAlertRulePermission / OrganizationAlertingMutationPermission (monitors, workflows,
                 # detectors, metric alert rules) and ProjectAlertRulePermission (a project's issue alert rules):
                 # the org (or project) scopes, or alerts:read/alerts:write.
                 "alerts": frozenset({"org:read", "org:write", "org:admin", "alerts:read", "alerts:write"}),
                 "project-alerts": frozenset({"project:read", "project:write", "project:admin", "alerts:read",
                                              "alerts:write"})}
# An organization auth token (Settings → Auth Tokens, `sntrys_…`) carries this and nothing else.
ORG_AUTH_TOKEN_SCOPES = frozenset({"org:ci"})

# Which projects an organization issue list covers, as getsentry/sentry decides it: `OrganizationEndpoint.get_projects`
# (src/sentry/api/bases/organization.py). No `project` parameter: the projects of the token user's teams
# (`has_project_membership`); `project=-1` (ALL_ACCESS_PROJECTS, src/sentry/constants.py): every project the token
# can access (`has_project_access`); explicit ids: those, each checked with `has_project_access`, any refused being a
# 403. Access (src/sentry/auth/access.py, OrganizationMemberAccess): a member with global access (the organization's
# open membership, `allow_joinleave`, or a global role) reaches every project, anyone else only their teams' projects;
# an internal integration's proxy user is a member of every project (OrganizationGlobalMembership). Then
# OrganizationGroupIndexEndpoint.get (src/sentry/issues/endpoints/organization_group_index.py): no project covered is
# `200 []`, more than one without `organizations:global-views` was this 400 in the releases that checked the feature,
# and `group=` ids are looked up only in the covered projects (`Group.objects.filter(id__in=group_ids, project_id__in=project_ids)`).
ALL_ACCESS_PROJECTS = -1
ISSUE_LIST_MULTI_PROJECT = "You do not have the multi project stream feature enabled"
# The organization roles whose `is_global` is set (SENTRY_ROLES, src/sentry/conf/server.py): owner and manager; an
# admin or member sees only the projects of their teams (Sentry's docs: "Organization Management", roles).
GLOBAL_ROLES = frozenset({"owner", "manager"})


@dataclass(frozen=True)
class RateLimit:
    limit: int  # requests per window
    window: int  # seconds; windows are aligned to the epoch, as Sentry's fixed windows are
    concurrent: int | None = None  # requests in flight


DEFAULT_BUCKET = "default"
# The GET limits Sentry's source declares on the endpoints this sync calls (`rate_limits` on each endpoint class),
# per caller category: a user token counts as "user", an internal integration's token as "org". Every endpoint
# without limits of its own shares the caller's DEFAULT_BUCKET: Sentry's default is 999 requests per second
# (SENTRY_RATELIMITER_DEFAULT). Sentry's files: api/endpoints/group_tagkey_values.py,
# api/endpoints/project_tagkey_values.py, issues/endpoints/group_details.py, core/endpoints/organization_member_index.py,
# ratelimits/config.py, releases/endpoints/organization_releases.py (40 per second per IP, user and organization),
# api/endpoints/organization_stats_v2.py (20 per second, enforced even on self-hosted: enforce_rate_limit).
SENTRY_LIMITS: dict[str, dict[str, RateLimit]] = {
    "user": {
        "/organizations/{org}/issues/{issue}/tags/{key}/values/": RateLimit(150, 60, 10),
        "/projects/{org}/{project}/tags/{key}/values/": RateLimit(10, 1, 10),
        "/organizations/{org}/issues/{issue}/": RateLimit(5, 1),
        "/organizations/{org}/members/": RateLimit(40, 1),
        "/organizations/{org}/releases/": RateLimit(40, 1),
        "/organizations/{org}/stats_v2/": RateLimit(20, 1),
        DEFAULT_BUCKET: RateLimit(999, 1),
    },
    "org": {
        "/organizations/{org}/issues/{issue}/tags/{key}/values/": RateLimit(300, 60, 5),
        "/projects/{org}/{project}/tags/{key}/values/": RateLimit(20, 1, 5),
        "/organizations/{org}/issues/{issue}/": RateLimit(5, 1),
        "/organizations/{org}/members/": RateLimit(40, 1),
        "/organizations/{org}/releases/": RateLimit(40, 1),
        "/organizations/{org}/stats_v2/": RateLimit(20, 1),
        DEFAULT_BUCKET: RateLimit(999, 1),
    },
}


@dataclass
class EmulatorConfig:
    token: str = "test-token"
    # The token's scopes; None: every read scope this sync needs (a personal token or integration set up right).
    scopes: frozenset[str] | None = None
    # Sentry's limits for this caller category (SENTRY_LIMITS), or `limits` when given: endpoint template -> its
    # own bucket, DEFAULT_BUCKET -> the bucket every other endpoint shares; {} turns limiting off.
    caller: Literal["user", "org"] = "user"
    limits: dict[str, RateLimit] | None = None
    # A uniform limit instead, each endpoint its own bucket (tests and benchmarks that want one number).
    rate_limit: int | None = None  # requests per window, per endpoint
    window_seconds: int = 1
    concurrent_limit: int | None = None  # requests in flight, per endpoint
    latency_seconds: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    # Called with (endpoint template, query parameters) before each request is answered: tests change the data
    # between two page requests with it (an issue that gets an event while a client pages through the list).
    before_answer: Callable[[str, dict[str, list[str]]], None] | None = None
    # Awaited with (endpoint template, path parameters) before each request is answered: tests hold a request
    # (one issue's tag values, say) until another run has done its part, to interleave runs deterministically.
    hold: Callable[[str, dict[str, str]], Awaitable[None]] | None = None
    # The slugs of the teams the token's user is a member of; None: the dataset's rosters say (the demo's token user,
    # the seed's owner, is on none). An internal integration's token (`caller="org"`) is a member of every team.
    token_teams: frozenset[str] | None = None
    # The organization has Sentry's `organizations:global-views` feature: an issue list may cover several projects.
    # Current Sentry no longer checks it (OrganizationGroupIndexEndpoint.get has no such check), so True is today's
    # behaviour; False models the releases that did (self-hosted ones among them, where the plan decided), in which a
    # list that would cover more than one project is a 400 (ISSUE_LIST_MULTI_PROJECT).
    global_views: bool = True
    # Sentry's current alerting API (`/workflows/`, `/detectors/`); False models the older installs that answer 404
    # for them and have only the deprecated alert-rule endpoints.
    workflow_engine: bool = True
    # The organization has `organizations:incidents` (metric alerts); without it `/alert-rules/` is a 404
    # (OrganizationAlertRuleIndexEndpoint raises ResourceDoesNotExist).
    incidents: bool = True
    # The organization's event retention: an issue's tag values are aggregated over its events within it (the tag
    # store's Snuba query sets no start, and Snuba clamps it to the retention; 90 days by default and on sentry.io).
    retention_days: int = 90
    # Serve an issue list's later pages from the list computed for its first page (keyed by every parameter but the
    # cursor). Sentry computes each page anew, and so does the emulator by default, which tests that change the data
    # between two pages rely on; benchmarks of organizations with 100,000 issues, whose data stays put, set this so
    # the emulator's filtering does not dominate what they measure.
    snapshot_lists: bool = False


@dataclass
class EndpointStats:
    requests: int = 0
    rate_limited: int = 0
    concurrency_limited: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    first_admitted: float | None = None  # epoch seconds, for benchmarks' floors


class _Window:
    def __init__(self) -> None:
        self.start = -1.0
        self.count = 0
        self.in_flight = 0


class SentryEmulatorState:
    def __init__(self, dataset: SentryDataset, config: EmulatorConfig) -> None:
        self.dataset = dataset
        self.config = config
        self.endpoints: dict[str, EndpointStats] = {}
        self.windows: dict[str, _Window] = {}
        self.paths: Counter[str] = Counter()
        self.list_snapshots: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}  # EmulatorConfig.snapshot_lists

    def stats(self, endpoint: str) -> EndpointStats:
        return self.endpoints.setdefault(endpoint, EndpointStats())

    def token_teams(self) -> set[str]:
        """The teams the token's user is a member of."""
        if self.config.token_teams is not None:
            return set(self.config.token_teams)
        return self.dataset.token_teams()

    def has_global_access(self) -> bool:
        """OrganizationMemberAccess: open membership or a global role; an internal integration always."""
        return (self.config.caller == "org" or bool(self.dataset.organization.get("openMembership"))
                or self.dataset.token_role() in GLOBAL_ROLES)

    def member_projects(self) -> set[str]:
        """`has_project_membership`: the ids of the projects of the token user's teams; for an internal integration
        (OrganizationGlobalMembership, "simulated membership") every project of the organization."""
        if self.config.caller == "org":
            return {p["id"] for p in self.dataset.org_projects()}
        teams = self.token_teams()
        return {p["id"] for t in self.dataset.teams if t["slug"] in teams for p in t["projects"]}

    def can_access(self, project_id: str) -> bool:
        """`has_project_access`: what an issue's own endpoints (GroupPermission, a ProjectPermission) check too."""
        return self.has_global_access() or project_id in self.member_projects()

    def issue_list_projects(self, requested: list[str], include_all_accessible: bool = False
                            ) -> list[dict[str, Any]] | Response:
        """The projects an organization issue list covers (see ALL_ACCESS_PROJECTS), or Sentry's error answer; the
        release list covers the same (OrganizationReleasesEndpoint.get_projects: include_all_accessible=False),
        a release's deploys every accessible project when none is asked for (the base class's default, True)."""
        try:
            ids = {int(p) for p in requested}
        except ValueError:
            return JSONResponse({"detail": "Invalid project parameter. Values must be numbers."}, status_code=400)
        active = [p for p in self.dataset.org_projects() if p.get("status", "active") == "active"]
        everything = ids == {ALL_ACCESS_PROJECTS} or (not ids and include_all_accessible)
        if everything or ids:
            covered = [p for p in active if (everything or int(p["id"]) in ids) and self.can_access(p["id"])]
        else:
            members = self.member_projects()
            covered = [p for p in active if p["id"] in members]
        if ids and not everything and {int(p["id"]) for p in covered} != ids:
            return JSONResponse({"detail": "You do not have permission to perform this action."}, status_code=403)
        return covered

    def bucket(self, endpoint: str) -> tuple[str, RateLimit | None]:
        """The bucket a request to `endpoint` counts against, and its limits (None: not limited)."""
        cfg = self.config
        if cfg.rate_limit is not None or cfg.concurrent_limit is not None:
            return endpoint, RateLimit(cfg.rate_limit or 10**9, cfg.window_seconds, cfg.concurrent_limit)
        limits = SENTRY_LIMITS[cfg.caller] if cfg.limits is None else cfg.limits
        if endpoint in limits:
            return endpoint, limits[endpoint]
        return DEFAULT_BUCKET, limits.get(DEFAULT_BUCKET)

    @property
    def total_requests(self) -> int:
        return sum(s.requests for s in self.endpoints.values())

    @property
    def total_429(self) -> int:
        return sum(s.rate_limited + s.concurrency_limited for s in self.endpoints.values())


def _rate_headers(limit: RateLimit | None, window: _Window | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if limit is None or window is None:
        return headers
    headers["X-Sentry-Rate-Limit-Limit"] = str(limit.limit)
    headers["X-Sentry-Rate-Limit-Remaining"] = str(max(limit.limit - window.count, 0))
    headers["X-Sentry-Rate-Limit-Reset"] = str(int(window.start + limit.window))
    if limit.concurrent is not None:
        headers["X-Sentry-Rate-Limit-ConcurrentLimit"] = str(limit.concurrent)
        headers["X-Sentry-Rate-Limit-ConcurrentRemaining"] = str(max(limit.concurrent - window.in_flight, 0))
    return headers


def _issue_matches(issue: dict[str, Any], query: str) -> bool:
    for token in query.split():
        if token.startswith("is:"):
            wanted = token[3:]
            wanted = "ignored" if wanted == "archived" else wanted
            if issue.get("status") != wanted:
                return False
        elif ":" not in token and token.lower() not in issue.get("title", "").lower():
            return False
    return True


def _in_environments(dataset: SentryDataset, issue: dict[str, Any], environments: list[str]) -> dict[str, Any] | None:
    """The issue as Sentry lists it with an environment filter: only if seen there, with the count and dates of
    those environments alone; None when it was not seen there."""
    seen = [v for v in dataset.issue_tag_values.get((issue["id"], "environment"), []) if v["value"] in environments]
    if not seen:
        return None
    return {**issue, "count": str(sum(v["count"] for v in seen)), "firstSeen": min(v["firstSeen"] for v in seen),
            "lastSeen": max(v["lastSeen"] for v in seen)}


_PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _window_start(params: Any) -> datetime | None:
    """The start of the issue list's time window, as Sentry computes it: `start` when sent, else now minus
    `statsPeriod`, else now minus 90 days (MAX_STATS_PERIOD, src/sentry/api/utils.py). None: unparseable."""
    now = datetime.now(timezone.utc)
    if params.get("start"):
        try:
            return _parse_iso(params["start"])
        except ValueError:
            return None
    period = (params.get("statsPeriod") or "").strip()
    if not period:
        return now - timedelta(days=90)
    unit = _PERIOD_UNITS.get(period[-1])
    if unit is None or not period[:-1].isdigit():
        return None
    return now - timedelta(seconds=int(period[:-1]) * unit)


def create_sentry_emulator(dataset: SentryDataset, config: EmulatorConfig | None = None) -> Starlette:
    """The emulator app; its `state.sentry` (a SentryEmulatorState) holds the data, config and counters."""
    cfg = config or EmulatorConfig()
    state = SentryEmulatorState(dataset, cfg)

    def page(request: Request, items: list[Any], size_param: str = "per_page", hits: bool = False,
             default_size: int = MAX_PAGE) -> Response:
        try:
            size = int(request.query_params.get(size_param, default_size))
        except ValueError:
            return JSONResponse({"detail": f"Invalid {size_param} parameter."}, status_code=400)
        if size_param == "per_page" and not 1 <= size <= MAX_PAGE:  # Sentry's get_per_page; `limit` is capped
            return JSONResponse({"detail": f"Invalid per_page value. Must be between 1 and {MAX_PAGE}."},
                                status_code=400)
        size = min(size, MAX_PAGE)
        try:
            offset = int(request.query_params.get("cursor", "0:0:0").split(":")[1])
        except (ValueError, IndexError):
            return JSONResponse({"detail": "Invalid cursor parameter."}, status_code=400)
        chunk = items[offset: offset + size]
        base = {k: v for k, v in request.query_params.multi_items() if k != "cursor"}
        url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"

        def link(cursor: str, rel: str, results: bool) -> str:
            query = urlencode([*base.items(), ("cursor", cursor)])
            return f'<{url}?{query}>; rel="{rel}"; results="{str(results).lower()}"; cursor="{cursor}"'

        prev_cursor = f"0:{max(offset - size, 0)}:1"
        next_cursor, more = f"0:{offset + size}:0", offset + size < len(items)
        fault = getattr(request.state, "link_fault", None)
        if fault == "repeat-cursor":
            next_cursor, more = request.query_params.get("cursor", "0:0:0"), True
        elif fault == "endless":
            more = True
        header = ", ".join([link(prev_cursor, "previous", offset > 0), link(next_cursor, "next", more)])
        # Sentry counts the matches of a list paged with count_hits (the issue list: OrganizationGroupIndexEndpoint
        # passes count_hits=True) and says so in X-Hits (api/base.py, add_cursor_headers).
        return JSONResponse(chunk, headers={"Link": header, **({"X-Hits": str(len(items))} if hits else {})})

    def org_or_404(request: Request) -> Response | None:
        if request.path_params.get("org") != dataset.slug:
            return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
        return None

    async def organization(request: Request) -> Response:
        return org_or_404(request) or JSONResponse(dataset.organization)

    async def members(request: Request) -> Response:
        return org_or_404(request) or page(request, dataset.members)

    async def teams(request: Request) -> Response:
        return org_or_404(request) or page(request, dataset.teams)

    async def team_members(request: Request) -> Response:
        roster = dataset.team_members.get(request.path_params["team"])
        if org_or_404(request) or roster is None:
            return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
        return page(request, roster)

    async def projects(request: Request) -> Response:
        return page(request, dataset.user_projects(state.token_teams()))

    async def org_projects(request: Request) -> Response:
        return org_or_404(request) or page(request, dataset.organization_projects())

    async def org_issues(request: Request) -> Response:
        if (missing := org_or_404(request)) is not None:
            return missing
        # Sentry's order (OrganizationGroupIndexEndpoint.get): the environments (an unknown one is a 404), then the
        # projects covered (none: `200 []`), then the group ids or the search.
        environments = request.query_params.getlist("environment")
        if set(environments) - dataset.environments():
            return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
        covered = state.issue_list_projects(request.query_params.getlist("project"))
        if isinstance(covered, Response):
            return covered
        if not covered:
            return JSONResponse([])
        if len(covered) > 1 and not cfg.global_views:  # releases before the check's removal (see EmulatorConfig)
            return JSONResponse({"detail": ISSUE_LIST_MULTI_PROJECT}, status_code=400)
        wanted = {p["id"] for p in covered}
        groups = request.query_params.getlist("group")
        if groups:
            # Sentry (OrganizationGroupIndexEndpoint): group ids given, the query is ignored and exactly those
            # issues of the covered projects come back, unpaginated; a non-integer id is a 400.
            if not all(g.strip().isdigit() for g in groups):
                return JSONResponse({"detail": "Group ids must be integers"}, status_code=400)
            wanted_ids = {str(int(g)) for g in groups}
            return JSONResponse([i for i in dataset.issues if i["id"] in wanted_ids and i["project"]["id"] in wanted])
        since = _window_start(request.query_params)
        if since is None:
            return JSONResponse({"detail": "Invalid statsPeriod"}, status_code=400)
        key = tuple(sorted((k, v) for k, v in request.query_params.multi_items() if k != "cursor"))
        found = state.list_snapshots.get(key) if cfg.snapshot_lists else None
        if found is None:
            query = request.query_params.get("query", "is:unresolved")
            found = [i for i in dataset.issues if i["project"]["id"] in wanted and _issue_matches(i, query)]
            if environments:
                found = [i for i in (_in_environments(dataset, i, environments) for i in found) if i is not None]
            found = [i for i in found if _parse_iso(i["lastSeen"]) >= since]
            # Sentry's default `sort=date` orders by last seen, newest first, so an issue that gets an event moves to
            # the top while a client pages; `new` orders by first seen, which events do not change.
            order = "firstSeen" if request.query_params.get("sort") == "new" else "lastSeen"
            found.sort(key=lambda i: (i[order], i["id"]), reverse=True)
            if cfg.snapshot_lists:
                state.list_snapshots[key] = found
        return page(request, found, size_param="limit", hits=True)

    async def one_issue(request: Request) -> Response:
        issue = dataset.issue(request.path_params["issue"])
        if org_or_404(request) or issue is None:
            return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
        if not state.can_access(issue["project"]["id"]):
            return JSONResponse({"detail": "You do not have permission to perform this action."}, status_code=403)
        # the details endpoint adds what only one issue's page shows
        return JSONResponse({**issue, "activity": [], "seenBy": [], "participants": [], "userReportCount": 0})

    async def project_tag_values(request: Request) -> Response:
        slug, key = request.path_params["project"], request.path_params["key"]
        values = dataset.project_tag_values.get((slug, key))
        # Sentry: TagKeyNotFound -> 404, so a project without the key answers like a missing project
        if org_or_404(request) or all(p["slug"] != slug for p in dataset.org_projects()) or not values:
            return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
        return page(request, values)

    async def issue_tag_values(request: Request) -> Response:
        issue_id, key = request.path_params["issue"], request.path_params["key"]
        since = datetime.now(timezone.utc) - timedelta(days=cfg.retention_days)
        values = [v for v in dataset.issue_tag_values.get((issue_id, key)) or [] if _parse_iso(v["lastSeen"]) >= since]
        # Sentry: GroupTagKeyNotFound -> 404, so an issue without the key answers like a deleted issue
        if org_or_404(request) or dataset.issue(issue_id) is None or not values:
            return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
        return page(request, values)

    async def issue_comments(request: Request) -> Response:
        # Sentry's GroupNotesEndpoint: the issue's notes, newest first (DateTimePaginator on -datetime)
        issue_id = request.path_params["issue"]
        if org_or_404(request) or dataset.issue(issue_id) is None:
            return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
        notes = sorted(dataset.issue_comments.get(issue_id, []), key=lambda n: (n["dateCreated"], n["id"]), reverse=True)
        return page(request, notes)

    not_found = {"detail": "The requested resource does not exist"}

    def release_window(params: Any) -> datetime | None | Response:
        """`get_filter_params(date_filter_optional=True)`: no period, no date filter; `statsPeriod` or `start`."""
        if not params.get("statsPeriod") and not params.get("start"):
            return None
        since = _window_start(params)
        return JSONResponse({"detail": "Invalid statsPeriod"}, status_code=400) if since is None else since

    async def org_releases(request: Request) -> Response:
        if (missing := org_or_404(request)) is not None:
            return missing
        params = request.query_params
        status = params.get("status", "open")
        if status not in ("open", "archived"):
            return JSONResponse({"detail": "invalid value for status"}, status_code=400)
        if (params.get("sort") or "date") != "date":  # Sentry has more orders; this sync asks for none of them
            return JSONResponse({"detail": "the emulator orders by date only"}, status_code=400)
        environments = params.getlist("environment")
        if set(environments) - dataset.environments():
            return JSONResponse(not_found, status_code=404)
        covered = state.issue_list_projects(params.getlist("project"))
        if isinstance(covered, Response):
            return covered
        if not covered:  # NoProjects
            return JSONResponse([])
        since = release_window(params)
        if isinstance(since, Response):
            return since
        try:
            found = dataset.releases.listed({p["id"] for p in covered}, status=status, since=since,
                                            query=params.get("query") or "", environments=environments or None)
        except QueryProblem as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        projects = {p["id"]: p for p in dataset.org_projects()}
        health = params.get("health") == "1"
        return page(request, [dataset.releases.serialized(r, projects, health=health) for r in found])

    def release_or_404(request: Request) -> Any:
        """OrganizationReleasesBaseEndpoint: the release, if one of its projects is accessible (else a 404)."""
        release = dataset.releases.releases.get(request.path_params["version"])
        if org_or_404(request) or release is None or not any(state.can_access(p) for p in release.projects):
            return JSONResponse(not_found, status_code=404)
        return release

    async def one_release(request: Request) -> Response:
        release = release_or_404(request)
        if isinstance(release, Response):
            return release
        projects = {p["id"]: p for p in dataset.org_projects()}
        return JSONResponse(dataset.releases.serialized(release, projects,
                                                        health=request.query_params.get("health") == "1"))

    async def release_deploys(request: Request) -> Response:
        release = release_or_404(request)
        if isinstance(release, Response):
            return release
        covered = state.issue_list_projects(request.query_params.getlist("project"), include_all_accessible=True)
        if isinstance(covered, Response):
            return covered
        return page(request, dataset.releases.deploys_of(release.version, {p["id"] for p in covered}))

    def snuba_projects(request: Request) -> list[dict[str, Any]] | Response:
        """The projects a stats or sessions query covers (`get_projects`), or Sentry's answer: none is a
        400 "No projects available" (NoProjects raised as a ParseError)."""
        covered = state.issue_list_projects(request.query_params.getlist("project"))
        if not isinstance(covered, Response) and not covered:
            return JSONResponse({"detail": "No projects available"}, status_code=400)
        return covered

    async def org_stats(request: Request) -> Response:
        if (missing := org_or_404(request)) is not None:
            return missing
        params = request.query_params
        fields, groups = params.getlist("field"), params.getlist("groupBy")
        if not fields or any(f not in ("sum(quantity)", "sum(times_seen)") for f in fields):
            return JSONResponse({"detail": f'Invalid field: "{(fields or [""])[0]}"'}, status_code=400)
        if any(g not in ("outcome", "category", "reason", "project", "key_id") for g in groups):
            return JSONResponse({"detail": "Invalid groupBy"}, status_code=400)
        if params.get("category") not in ("error", "default", "security") and "category" not in groups:
            return JSONResponse({"detail": "Query must have category as groupby or filter"}, status_code=400)
        days = days_in(params.get("statsPeriod") or "14d")
        if days is None:
            return JSONResponse({"detail": "Invalid statsPeriod"}, status_code=400)
        if "project" not in groups or "outcome" not in groups:  # the only grouping this sync asks for
            return JSONResponse({"detail": "the emulator groups by project and outcome only"}, status_code=400)
        covered = snuba_projects(request)
        if isinstance(covered, Response):
            return covered
        found = dataset.health.outcome_totals({p["id"] for p in covered}, days)
        wanted = params.get("outcome")
        if wanted:
            found = [g for g in found if g["by"]["outcome"] == wanted]
        end = datetime.now(timezone.utc).replace(microsecond=0)
        # grouped by project: totals only, neither series nor intervals (outcomes.massage_outcomes_result)
        return JSONResponse({"start": (end - timedelta(days=days)).isoformat().replace("+00:00", "Z"),
                             "end": end.isoformat().replace("+00:00", "Z"), "groups": found})

    async def org_sessions(request: Request) -> Response:
        if (missing := org_or_404(request)) is not None:
            return missing
        params = request.query_params
        fields = params.getlist("field")
        known = ("crash_free_rate(session)", "crash_free_rate(user)")
        if not fields or any(f not in known for f in fields):
            return JSONResponse({"detail": f'Invalid field: "{(fields or [""])[0]}"'}, status_code=400)
        if params.getlist("groupBy") not in ([], ["project"]):
            return JSONResponse({"detail": "the emulator groups by project only"}, status_code=400)
        covered = snuba_projects(request)
        if isinstance(covered, Response):
            return covered
        groups = []
        for project in covered:
            rates = dataset.health.sessions.get(project["id"])
            if rates is None:
                continue  # no session in the window: Sentry has no group for it
            totals = {f: rates[known.index(f)] for f in fields}
            group = {"by": {"project": int(project["id"])}, "totals": totals}
            if params.get("includeSeries", "1") != "0":
                group["series"] = {f: [value] for f, value in totals.items()}
            groups.append(group)
        end = datetime.now(timezone.utc).replace(microsecond=0)
        return JSONResponse({"start": (end - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
                             "end": end.isoformat().replace("+00:00", "Z"), "intervals": [], "groups": groups,
                             "query": params.get("query", "")})

    async def project_ownership(request: Request) -> Response:
        slug = request.path_params["project"]
        project = next((p for p in dataset.org_projects() if p["slug"] == slug), None)
        if org_or_404(request) or project is None:
            return JSONResponse(not_found, status_code=404)
        return JSONResponse(dataset.health.ownership.get(slug) or {
            "raw": None, "fallthrough": True, "dateCreated": None, "lastUpdated": None, "isActive": True,
            "autoAssignment": "Auto Assign to Issue Owner", "codeownersAutoSync": True, "schema": None})

    async def org_repos(request: Request) -> Response:
        return org_or_404(request) or page(request, dataset.health.repos)

    async def code_mappings(request: Request) -> Response:
        covered = listed_projects(request)
        if isinstance(covered, Response):
            return covered
        ids = {p["id"] for p in covered}
        return page(request, [m for m in dataset.health.code_mappings if m["projectId"] in ids])

    def listed_projects(request: Request, served: bool = True,
                        include_all_accessible: bool = False) -> list[dict[str, Any]] | Response:
        """The projects an organization list covers (`get_projects`, as issue_list_projects), or Sentry's answer: 404
        for another organization or for an endpoint this installation does not serve (`served` false)."""
        if (missing := org_or_404(request)) is not None:
            return missing
        if not served:
            return JSONResponse(not_found, status_code=404)
        return state.issue_list_projects(request.query_params.getlist("project"), include_all_accessible)

    async def org_monitors(request: Request) -> Response:
        covered = listed_projects(request)
        if isinstance(covered, Response):
            return covered
        ids = {p["id"] for p in covered}
        # `sort=status` (the default): monitors with an environment in error first, then ok, active, disabled
        rank = {"error": 0, "ok": 1, "active": 2, "disabled": 3}

        def order(monitor: dict[str, Any]) -> tuple[int, str]:
            statuses = [e["status"] for e in monitor["environments"] if not e["isMuted"]]
            worst = min((rank.get(s, 2) for s in statuses), default=3)
            return (3 if monitor["status"] == "disabled" else worst, monitor["name"])

        return page(request, sorted((m for m in dataset.alerts.monitors if m["project"]["id"] in ids), key=order))

    async def org_workflows(request: Request) -> Response:
        covered = listed_projects(request, cfg.workflow_engine, include_all_accessible=True)
        if isinstance(covered, Response):
            return covered
        ids = {p["id"] for p in covered}
        in_projects = {d["id"] for d in dataset.alerts.detectors if d["projectId"] in ids}
        # workflows connected to a detector of the covered projects, and those connected to none
        found = [w for w in dataset.alerts.workflows if not w["detectorIds"] or in_projects & set(w["detectorIds"])]
        return page(request, found, hits=True)

    async def org_detectors(request: Request) -> Response:
        covered = listed_projects(request, cfg.workflow_engine)
        if isinstance(covered, Response):
            return covered
        ids = {p["id"] for p in covered}
        found = [d for d in dataset.alerts.detectors if d["projectId"] in ids]
        for token in request.query_params.get("query", "").split():
            if token.startswith("type:"):
                wanted = token[5:]
                found = [d for d in found if d["type"] == DETECTOR_ALIASES.get(wanted, wanted)]
        return page(request, found, hits=True)

    async def project_rules(request: Request) -> Response:
        slug = request.path_params["project"]
        project = next((p for p in dataset.org_projects() if p["slug"] == slug), None)
        if org_or_404(request) or project is None:
            return JSONResponse(not_found, status_code=404)
        if not state.can_access(project["id"]):
            return JSONResponse({"detail": "You do not have permission to perform this action."}, status_code=403)
        expand = request.query_params.getlist("expand")
        rules = [r if "lastTriggered" in expand else {k: v for k, v in r.items() if k != "lastTriggered"}
                 for r in dataset.alerts.project_rules.get(slug, [])]
        return page(request, rules)

    async def metric_alert_rules(request: Request) -> Response:
        covered = listed_projects(request, cfg.incidents)
        if isinstance(covered, Response):
            return covered
        slugs = {p["slug"] for p in covered}
        found = [r for r in dataset.alerts.metric_rules if set(r["projects"]) & slugs]
        return page(request, found, hits=True, default_size=25)

    handlers = {
        "/organizations/{org}/": organization,
        "/organizations/{org}/members/": members,
        "/organizations/{org}/teams/": teams,
        "/teams/{org}/{team}/members/": team_members,
        "/projects/": projects,
        "/organizations/{org}/projects/": org_projects,
        "/organizations/{org}/issues/": org_issues,
        "/organizations/{org}/issues/{issue}/": one_issue,
        "/projects/{org}/{project}/tags/{key}/values/": project_tag_values,
        "/organizations/{org}/issues/{issue}/tags/{key}/values/": issue_tag_values,
        "/organizations/{org}/issues/{issue}/comments/": issue_comments,
        "/organizations/{org}/releases/": org_releases,
        "/organizations/{org}/releases/{version}/": one_release,
        "/organizations/{org}/releases/{version}/deploys/": release_deploys,
        "/organizations/{org}/stats_v2/": org_stats,
        "/organizations/{org}/sessions/": org_sessions,
        "/projects/{org}/{project}/ownership/": project_ownership,
        "/organizations/{org}/repos/": org_repos,
        "/organizations/{org}/code-mappings/": code_mappings,
        "/organizations/{org}/monitors/": org_monitors,
        "/organizations/{org}/workflows/": org_workflows,
        "/organizations/{org}/detectors/": org_detectors,
        "/projects/{org}/{project}/rules/": project_rules,
        "/organizations/{org}/alert-rules/": metric_alert_rules,
    }

    def governed(endpoint: str, handler: Any) -> Any:
        async def endpoint_fn(request: Request) -> Response:
            return await _serve(state, endpoint, handler, request)

        return endpoint_fn

    routes = [Route(f"/api/0{template}", governed(template, fn)) for template, fn in handlers.items()]
    app = Starlette(routes=routes)
    app.state.sentry = state
    return app


async def _serve(state: SentryEmulatorState, endpoint: str, handler: Any, request: Request) -> Response:
    cfg = state.config
    st = state.stats(endpoint)
    st.requests += 1
    state.paths[request.url.path] += 1
    if request.headers.get("authorization") != f"Bearer {cfg.token}":
        return JSONResponse({"detail": "Invalid token"}, status_code=401)
    family = ENDPOINT_SCOPES[endpoint]
    accepted = FAMILY_SCOPES.get(family, {f"{family}:read", f"{family}:write", f"{family}:admin"})
    if cfg.scopes is not None and not accepted & cfg.scopes:
        return JSONResponse({"detail": "You do not have permission to perform this action."}, status_code=403)

    key, limit = state.bucket(endpoint)
    window = state.windows.setdefault(key, _Window()) if limit is not None else None
    if limit is not None and window is not None:
        now = time.time()
        start = math.floor(now / limit.window) * limit.window
        if window.start != start:
            window.start, window.count = start, 0
        window.count += 1  # like Sentry, a refused request still counts against the window
        if window.count > limit.limit:
            st.rate_limited += 1
            return JSONResponse(
                {"detail": "You are attempting to use this endpoint too frequently. "
                           f"Limit is {limit.limit} requests in {limit.window} seconds"},
                status_code=429, headers=_rate_headers(limit, window))
        if limit.concurrent is not None and window.in_flight >= limit.concurrent:
            st.concurrency_limited += 1
            return JSONResponse(
                {"detail": "You are attempting to go above the allowed concurrency for this endpoint. "
                           f"Concurrency limit is {limit.concurrent}"},
                status_code=429, headers=_rate_headers(limit, window))

    st.in_flight += 1
    st.max_in_flight = max(st.max_in_flight, st.in_flight)
    if window is not None:
        window.in_flight += 1
    if st.first_admitted is None:
        st.first_admitted = time.time()
    # Like Sentry's middleware, the headers describe the limits as they stood when the request was admitted.
    rate_headers = _rate_headers(limit, window)
    try:
        if cfg.before_answer is not None:
            cfg.before_answer(endpoint, {k: request.query_params.getlist(k) for k in request.query_params})
        if cfg.hold is not None:
            await cfg.hold(endpoint, dict(request.path_params))
        fault = next((f for f in cfg.faults if f.fires(endpoint)), None)
        if fault is not None and fault.kind in LINK_FAULTS:
            request.state.link_fault = fault.kind  # answered normally, with `page`'s Link header changed
        if cfg.latency_seconds:
            await asyncio.sleep(cfg.latency_seconds)
        if fault is not None:
            if fault.kind == "500":
                return JSONResponse({"detail": "Internal Error"}, status_code=500)
            if fault.kind == "401":
                return JSONResponse({"detail": "Invalid token"}, status_code=401)
            if fault.kind == "403":
                return JSONResponse({"detail": "You do not have permission to perform this action."},
                                    status_code=403)
            if fault.kind == "query-timeout":
                return JSONResponse({"detail": "Query timeout. Please try with a smaller date range or fewer "
                                               "conditions."}, status_code=400)
            if fault.kind == "snuba-429":
                return JSONResponse({"detail": "Rate limit exceeded. Please try your query with a smaller date "
                                               "range or fewer projects."}, status_code=429)
            if fault.kind == "slow":
                await asyncio.sleep(fault.slow_seconds)
            if fault.kind == "drop":
                return _DroppedConnection()
        response = await handler(request)
        if fault is not None and fault.kind == "malformed":
            link = {"Link": response.headers["link"]} if "link" in response.headers else {}
            return Response(b'[{"id": "1", "title": "trunc', media_type="application/json", headers=link)
        response.headers.update(rate_headers)
        return response
    finally:
        st.in_flight -= 1
        if window is not None:
            window.in_flight -= 1


class _DroppedConnection(Response):
    """Starts the answer, then fails: the server closes the connection mid-response."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        raise ConnectionAbortedError("emulated dropped connection")
