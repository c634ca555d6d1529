"""Async Sentry API client: every HTTP call to Sentry goes through here, with its limits, retries and errors."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from sentry_port_assets.config import checked_url
from sentry_port_assets.progress import duration
from sentry_port_assets.sentry.errors import (
    SentryAuthError,
    SentryConfigError,
    SentryMultiProjectError,
    SentryNotFoundError,
    SentryOrganizationNotFound,
    SentryPermissionError,
    SentryRequestError,
    token_kind,
)
from sentry_port_assets.sentry.pagination import PageWalk
from sentry_port_assets.sentry.ratelimit import RateLimitGovernor, RateLimitHeaders

PAGE_SIZE = 100
# `project=-1`: every project the token can access (ALL_ACCESS_PROJECTS, getsentry/sentry src/sentry/constants.py).
# Without a `project` parameter an organization issue list covers only the projects of the token user's teams
# (OrganizationEndpoint.get_projects, src/sentry/api/bases/organization.py): none at all for a user on no team.
ALL_ACCESSIBLE_PROJECTS = "-1"
# A 429 means "wait for the reset", not failure; this only stops a server that never lets us through.
MAX_RATE_LIMIT_WAITS = 50

log = logging.getLogger(__name__)

Item = dict[str, Any]


@dataclass
class FetchStats:
    """What a fetch cost; reported as Dagster metadata and in progress lines."""

    requests: int = 0
    pages: int = 0
    items: int = 0
    rate_limited: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    # A counted phase (the issue tag values): what it must do, what is done, and from when, for progress and ETA.
    planned: int = 0
    done: int = 0
    planned_at: float = 0.0
    planned_endpoint: str = ""

    def plan(self, total: int, endpoint: str) -> None:
        self.planned, self.done, self.planned_at, self.planned_endpoint = total, 0, time.monotonic(), endpoint

    def eta_seconds(self) -> float | None:
        """Time left for the counted phase at the pace seen so far (None before anything is done)."""
        if not self.planned or not self.done:
            return None
        pace = self.done / max(time.monotonic() - self.planned_at, 1e-6)
        return (self.planned - self.done) / pace

    def as_metadata(self, wait_seconds: float) -> dict[str, float | int]:
        planned = {"planned_requests": self.planned, "done_requests": self.done} if self.planned else {}
        return {**planned,
            "requests": self.requests,
            "pages": self.pages,
            "http_429": self.rate_limited,
            "retries": self.retries,
            "rate_limit_wait_seconds": round(wait_seconds, 2),
            "seconds": round(time.monotonic() - self.started, 2),
        }


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, bounded."""
        return random.uniform(0, min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt))


class _Transient(Exception):
    """A failure worth retrying: 5xx, timeout, dropped connection, unreadable body."""


class SentryClient:
    """`async with SentryClient(...) as client:` then the list_* methods. Holds no secret in any message."""

    def __init__(
        self,
        host: str,
        organization: str,
        token: str,
        *,
        timeout_seconds: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ) -> None:
        # Before httpx sees it: a password in the URL would replace the Bearer token with Basic auth.
        checked_url("SENTRY_HOST", host, SentryConfigError)
        self.organization = organization
        self.token_kind = token_kind(token)
        self.retry = retry
        self.governor = RateLimitGovernor()
        self.stats = FetchStats()
        parts = urlsplit(host.rstrip("/"))
        self._origin = (parts.scheme, parts.netloc)
        self._http = httpx.AsyncClient(
            base_url=f"{host.rstrip('/')}/api/0",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> SentryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    # ----- the resources -------------------------------------------------------------------------

    async def get_organization(self) -> Item:
        try:
            return await self._get_json("/organizations/{org}/", f"/organizations/{self.organization}/")
        except SentryNotFoundError:
            raise SentryOrganizationNotFound(self.organization) from None

    async def list_members(self) -> list[Item]:
        return await self._org_list("/organizations/{org}/members/", "members/")

    async def list_teams(self) -> list[Item]:
        return await self._org_list("/organizations/{org}/teams/", "teams/")

    async def list_team_members(self, team_slug: str) -> list[Item]:
        return await self._list("/teams/{org}/{team}/members/", f"/teams/{self.organization}/{team_slug}/members/")

    async def list_projects(self) -> list[Item]:
        """Every active project of the organization, from `/organizations/{org}/projects/` (not `/projects/`, which
        lists only the projects of the token user's teams). Its items lack the `status` and `organization` that
        the mapping reads; both are known: it lists active projects only, and the organization is
        `GET /organizations/{org}/` (which also turns a wrong slug into a clear error first)."""
        organization = await self.get_organization()
        projects = await self.list_organization_projects()
        return [{"status": "active", **p, "organization": p.get("organization") or organization} for p in projects]

    async def list_organization_projects(self) -> list[Item]:
        """`/organizations/{org}/projects/` as Sentry lists it (a request per 100 projects), each project with its
        `latestRelease` and `latestDeploys` (its newest deploy per environment)."""
        return await self._org_list("/organizations/{org}/projects/", "projects/")

    async def list_issues(self, project: Item, query: str, stats_period: str | None,
                          environment: str | None = None, keep: tuple[str, ...] | None = None) -> list[Item]:
        """A project's issues; with `environment`, only those seen there, their counts and dates for it alone; with
        `keep`, only those fields of each.

        Paged in first-seen order (`sort=new`): Sentry's default order is last seen, in which an issue that gets an
        event while later pages are read jumps above the cursor and is never returned (and its entities would then
        look stale). An issue created meanwhile can shift a page instead; it is returned twice and kept once."""
        params: dict[str, Any] = {"project": project["id"], "query": query, "limit": PAGE_SIZE, "sort": "new"}
        if stats_period is not None:
            params["statsPeriod"] = stats_period
        if environment is None:
            issues = await self._org_list("/organizations/{org}/issues/", "issues/", params, page_param=None,
                                          keep=keep)
        else:
            params["environment"] = environment
            try:  # the organization is known to exist here: a 404 names an environment Sentry does not have
                issues = await self._list("/organizations/{org}/issues/", f"/organizations/{self.organization}/issues/",
                                          params, page_param=None, keep=keep)
            except SentryNotFoundError:
                return []
        seen: set[str] = set()
        return [i for i in issues if not (i["id"] in seen or seen.add(i["id"]))]

    async def get_issue(self, issue_id: str) -> Item:
        return await self._get_json(
            "/organizations/{org}/issues/{issue}/", f"/organizations/{self.organization}/issues/{issue_id}/"
        )

    async def issues_by_id(self, issue_ids: Iterable[str], project: str = ALL_ACCESSIBLE_PROJECTS) -> dict[str, Item]:
        """The issues with these ids that the lookup found, as the issue list shows them: one request per 100 ids
        (repeated `group=` parameters make Sentry's issue list return exactly those issues, whatever the query),
        over `project` (default: every project the token can access).

        Sentry looks the ids up only in the projects the list covers and says nothing of the others, so an id
        missing here is gone only where the lookup covered its project (`webhooks/sync.current_issues` decides).
        Without the organization's `global-views` feature a lookup over several projects is refused:
        SentryMultiProjectError."""
        ids = sorted(set(issue_ids), key=int)
        found: dict[str, Item] = {}
        for start in range(0, len(ids), ISSUES_PER_GROUP_REQUEST):
            chunk = ids[start:start + ISSUES_PER_GROUP_REQUEST]
            issues = await self._list("/organizations/{org}/issues/", f"/organizations/{self.organization}/issues/",
                                      {"group": chunk, "project": project}, page_param=None)
            found.update((str(i["id"]), i) for i in issues if str(i["id"]) in chunk)
        return found

    async def issue_exists(self, issue_id: str) -> bool:
        try:
            await self.get_issue(issue_id)
        except SentryNotFoundError:
            return False
        return True

    async def list_project_tag_values(self, project_slug: str, key: str) -> list[Item]:
        return await self._list(
            "/projects/{org}/{project}/tags/{key}/values/",
            f"/projects/{self.organization}/{project_slug}/tags/{key}/values/",
        )

    async def list_issue_tag_values(self, issue_id: str, key: str) -> list[Item]:
        return await self._list(
            "/organizations/{org}/issues/{issue}/tags/{key}/values/",
            f"/organizations/{self.organization}/issues/{issue_id}/tags/{key}/values/",
        )

    async def list_issue_comments(self, issue_id: str) -> list[Item]:
        """The issue's comments as Sentry holds them now (`GET /organizations/{org}/issues/{id}/comments/`, Sentry's
        GroupNotesEndpoint: not in its published API reference, but what its UI reads), newest first."""
        return await self._list(
            "/organizations/{org}/issues/{issue}/comments/",
            f"/organizations/{self.organization}/issues/{issue_id}/comments/",
        )

    def release_pages(self, params: Mapping[str, Any]) -> AsyncIterator[list[Item]]:
        """The organization's releases, a page at a time, newest first (Sentry orders by date added): the caller
        may stop early. `params`: the list's query parameters (`project`, `status`, `statsPeriod`, `query`,
        `health`)."""
        return self._pages("/organizations/{org}/releases/", f"/organizations/{self.organization}/releases/",
                           dict(params))

    async def get_release(self, version: str, health: bool = False) -> Item:
        """One release (`GET /organizations/{org}/releases/{version}/`), the version URL-quoted: versions hold
        `@`, `+`, spaces, `#`, `?`."""
        return await self._get_json("/organizations/{org}/releases/{version}/", self._release_path(version),
                                    {"health": 1} if health else None)

    async def list_release_deploys(self, version: str, project_id: str | None = None) -> list[Item]:
        """The last deploy of each (project, environment) of a release; of one project with `project_id`."""
        return await self._list("/organizations/{org}/releases/{version}/deploys/",
                                f"{self._release_path(version)}deploys/",
                                {"project": project_id} if project_id is not None else None)

    async def outcome_totals(self, period: str) -> dict[str, dict[str, int]]:
        """{project id: {outcome: error events}} over `period` (`GET /organizations/{org}/stats_v2/`, one request
        for the whole organization, every accessible project)."""
        body = await self._get_json("/organizations/{org}/stats_v2/", f"/organizations/{self.organization}/stats_v2/",
                                    {"field": "sum(quantity)", "groupBy": ["project", "outcome"], "category": "error",
                                     "statsPeriod": period, "interval": "1d", "project": ALL_ACCESSIBLE_PROJECTS})
        totals: dict[str, dict[str, int]] = {}
        for group in body.get("groups") or []:
            by = group.get("by") or {}
            totals.setdefault(str(by.get("project")), {})[str(by.get("outcome"))] = int(
                (group.get("totals") or {}).get("sum(quantity)") or 0)
        return totals

    async def crash_free_rates(self, period: str) -> dict[str, dict[str, float | None]]:
        """{project id: {"session": rate, "user": rate}} (fractions) over `period` for the projects with session
        data (`GET /organizations/{org}/sessions/`, one request)."""
        fields = ["crash_free_rate(session)", "crash_free_rate(user)"]
        body = await self._get_json("/organizations/{org}/sessions/", f"/organizations/{self.organization}/sessions/",
                                    {"field": fields, "groupBy": "project", "statsPeriod": period,
                                     "includeSeries": 0, "project": ALL_ACCESSIBLE_PROJECTS})
        return {str((group.get("by") or {}).get("project")): {
            "session": (group.get("totals") or {}).get(fields[0]), "user": (group.get("totals") or {}).get(fields[1])}
            for group in body.get("groups") or []}

    async def get_ownership(self, project_slug: str) -> Item:
        return await self._get_json("/projects/{org}/{project}/ownership/",
                                    f"/projects/{self.organization}/{project_slug}/ownership/")

    async def list_repos(self) -> list[Item]:
        return await self._org_list("/organizations/{org}/repos/", "repos/")

    async def list_code_mappings(self) -> list[Item]:
        """Every accessible project's code mappings (`project=-1`: without it, only the caller's teams' projects)."""
        return await self._org_list("/organizations/{org}/code-mappings/", "code-mappings/",
                                    {"project": ALL_ACCESSIBLE_PROJECTS})

    async def list_monitors(self) -> list[Item]:
        """Every accessible project's cron monitors (`project=-1`: without it, only the caller's teams' projects)."""
        return await self._org_list("/organizations/{org}/monitors/", "monitors/", {"project": ALL_ACCESSIBLE_PROJECTS})

    async def list_workflows(self) -> list[Item]:
        """Sentry's alerts (`/workflows/`); a SentryNotFoundError on installs that predate them."""
        return await self._list("/organizations/{org}/workflows/", f"/organizations/{self.organization}/workflows/",
                                {"project": ALL_ACCESSIBLE_PROJECTS})

    async def list_detectors(self) -> list[Item]:
        """What Sentry's alerts fire on (`/detectors/`: error, metric, uptime and cron detectors); a
        SentryNotFoundError on installs that predate them."""
        return await self._list("/organizations/{org}/detectors/", f"/organizations/{self.organization}/detectors/",
                                {"project": ALL_ACCESSIBLE_PROJECTS})

    async def list_project_rules(self, project_slug: str) -> list[Item]:
        """A project's issue alert rules (deprecated endpoint), with when each last fired."""
        return await self._list("/projects/{org}/{project}/rules/",
                                f"/projects/{self.organization}/{project_slug}/rules/", {"expand": "lastTriggered"})

    async def list_metric_alert_rules(self) -> list[Item]:
        """Metric alert rules (deprecated endpoint); a SentryNotFoundError without `organizations:incidents`."""
        return await self._list("/organizations/{org}/alert-rules/",
                                f"/organizations/{self.organization}/alert-rules/",
                                {"project": ALL_ACCESSIBLE_PROJECTS})

    def _release_path(self, version: str) -> str:
        return f"/organizations/{self.organization}/releases/{quote(version, safe='')}/"

    # ----- pagination, limits, retries ------------------------------------------------------------

    async def _list(
        self, endpoint: str, path: str, params: dict[str, Any] | None = None, page_param: str | None = "per_page",
        keep: tuple[str, ...] | None = None,
    ) -> list[Item]:
        """Every page of a list endpoint, following `rel="next"` while it has results, within `PageWalk`'s bounds;
        with `keep`, each item holds only those fields, dropped page by page (a list of 100,000 issues held whole is
        gigabytes)."""
        items: list[Item] = []
        async for page in self._pages(endpoint, path, params, page_param):
            items.extend(page if keep is None else [{k: i[k] for k in keep if k in i} for i in page])
        return items

    async def _pages(
        self, endpoint: str, path: str, params: dict[str, Any] | None = None, page_param: str | None = "per_page"
    ) -> AsyncIterator[list[Item]]:
        """The pages of a list endpoint, one at a time: the next is asked for only when the caller wants it."""
        query = dict(params or {})
        if page_param:
            query[page_param] = PAGE_SIZE
        url: str | None = path
        first = True
        walk = PageWalk(endpoint, PAGE_SIZE)
        while url is not None:
            # The next URL already carries every parameter: sending them again loops on page one.
            response, page = await self._send(endpoint, url, query if first else None)
            if not isinstance(page, list):
                raise SentryRequestError(f"GET {endpoint} answered {type(page).__name__}, expected a JSON list")
            self.stats.pages += 1
            self.stats.items += len(page)
            first = False
            url = self._same_origin(walk.next_url(response.headers))
            yield page

    async def _org_list(self, endpoint: str, tail: str, params: dict[str, Any] | None = None,
                        page_param: str | None = "per_page", keep: tuple[str, ...] | None = None) -> list[Item]:
        """A list under /organizations/{org}/: there a 404 means the organization slug is wrong."""
        try:
            return await self._list(endpoint, f"/organizations/{self.organization}/{tail}", params, page_param, keep)
        except SentryNotFoundError:
            raise SentryOrganizationNotFound(self.organization) from None

    async def _get_json(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> Item:
        _, body = await self._send(endpoint, path, params)
        return body

    def _same_origin(self, url: str | None) -> str | None:
        """Keep the token on the configured host even if a Link points elsewhere."""
        if url is None:
            return None
        parts = urlsplit(url)
        return urlunsplit((*self._origin, parts.path, parts.query, ""))

    async def _send(self, endpoint: str, url: str, params: dict[str, Any] | None) -> tuple[httpx.Response, Any]:
        """One GET with the governor, retries and typed errors; returns the answer and its parsed JSON."""
        governor = self.governor.for_endpoint(endpoint)
        failures = 0
        waits = 0
        while True:
            ticket = await governor.acquire()
            headers: RateLimitHeaders | None = None
            rate_limited = False
            try:
                self.stats.requests += 1
                response = await self._http.get(url, params=params)
                headers = RateLimitHeaders.parse(response.headers)
                if response.status_code == 429:
                    rate_limited = True
                elif response.status_code >= 500 or (response.status_code == 400 and _overloaded(response)):
                    raise _Transient(f"HTTP {response.status_code} {_detail(response)[:80]}".strip())
                else:
                    self._raise_for_client_error(response, endpoint)
                    try:
                        return response, json.loads(response.content)
                    except ValueError as exc:
                        raise _Transient(f"unreadable JSON ({exc.__class__.__name__})") from None
            except (httpx.TimeoutException, httpx.TransportError, _Transient) as exc:
                failures += 1
                if failures > self.retry.max_retries:
                    raise SentryRequestError(
                        f"GET {endpoint} failed {failures} times in a row; last error: {_describe(exc)}. "
                        "Sentry may be down or overloaded; the run fails rather than sync partial data."
                    ) from None
                self.stats.retries += 1
                await governor.release(ticket, headers)
                ticket = -1
                await asyncio.sleep(self.retry.delay(failures - 1))
                continue
            finally:
                if ticket >= 0:
                    await governor.release(ticket, headers, rate_limited)
            # Only a 429 gets here: the governor now knows the window is spent and waits for its reset.
            self.stats.rate_limited += 1
            waits += 1
            if waits > MAX_RATE_LIMIT_WAITS:
                raise SentryRequestError(
                    f"GET {endpoint} was still rate limited after {MAX_RATE_LIMIT_WAITS} waits for the window reset."
                )
            if headers is None or headers.reset is None or (headers.remaining or 0) > 0:
                # No window to wait for (a concurrency 429, or no headers): back off briefly.
                await asyncio.sleep(self.retry.delay(min(waits, 4)))

    def _raise_for_client_error(self, response: httpx.Response, endpoint: str) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 401:
            raise SentryAuthError(endpoint)
        if status == 403:
            raise SentryPermissionError(endpoint, self.token_kind)
        if status == 404:
            raise SentryNotFoundError(endpoint, response.request.url.path)
        if status == 400 and _detail(response).startswith(SentryMultiProjectError.DETAIL):
            raise SentryMultiProjectError(endpoint)
        raise SentryRequestError(f"GET {endpoint} answered HTTP {status}: {_detail(response)}")


# Sentry's answers when Snuba is overloaded: releases before 24.x sent a 400 with these details (current ones send
# 504 for timeouts and 429 for Snuba's rate limits); both mean "try again later", unlike any other 400.
OVERLOAD_DETAILS = ("Query timeout", "Rate limit exceeded")


def _overloaded(response: httpx.Response) -> bool:
    return _detail(response).startswith(OVERLOAD_DETAILS)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        text = body.get("detail") if isinstance(body, dict) else None
    except ValueError:
        text = None
    return str(text or response.text)[:300]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({exc.__class__.__name__})"
    return str(exc) or exc.__class__.__name__


# Issue ids per `group=` request (Sentry's issue list page size).
ISSUES_PER_GROUP_REQUEST = 100
# Tasks that gather_limited keeps going: more than any concurrency cap Sentry reports, far fewer than the calls of a
# large organization (each waiting task costs the governor work when it is woken).
GATHER_WORKERS = 64


async def gather_limited(calls: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run calls together, in order of results as given (the governor paces them), with at most GATHER_WORKERS
    started at a time; the calls are taken from the iterable lazily. The first failure cancels the rest and is
    raised."""
    source = enumerate(calls)
    results: dict[int, Any] = {}

    async def worker() -> None:
        for index, call in source:
            results[index] = await call

    tasks = [asyncio.ensure_future(worker()) for _ in range(GATHER_WORKERS)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, call in source:  # never awaited: close them so Python does not warn
            getattr(call, "close", lambda: None)()
        raise
    return [results[i] for i in range(len(results))]


def _count(n: Any, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def cost_line(cost: Mapping[str, Any]) -> str:
    """A fetch's cost as a sentence: "12 requests (12 pages) in 0.8 s, no 429 and no retry"."""
    waits = cost.get("rate_limit_wait_seconds") or 0
    troubles = [_count(cost["http_429"], "answer 429", "answers 429") if cost.get("http_429") else "",
                _count(cost["retries"], "retry", "retries") if cost.get("retries") else "",
                f"{waits:.1f} s waiting for rate limits" if waits >= 0.1 else ""]
    said = [t for t in troubles if t]
    return (f"{_count(cost.get('requests', 0), 'request')} ({_count(cost.get('pages', 0), 'page')}) in "
            f"{duration(cost.get('seconds', 0))}, " + (", ".join(said) if said else "no 429 and no retry"))


def progress_line(stats: FetchStats, client: SentryClient) -> str:
    """"2,300 / 10,000, 51 min left at 150 per 60 s window" for the counted phase."""
    governor = client.governor.for_endpoint(stats.planned_endpoint)
    window = governor.window
    limit = (f" at Sentry's {window.limit} per window" if window.limit else
             " (Sentry sends no rate limits: as fast as it answers)")
    eta = stats.eta_seconds()
    left = "estimating time left" if eta is None else (
        f"{eta / 60:.0f} min left" if eta >= 90 else f"{eta:.0f} s left")
    return f"{stats.done:,} / {stats.planned:,}, {left}{limit}"


@asynccontextmanager
async def progress_reporter(
    report: Callable[[str], None], label: str, client: SentryClient, interval: float = 5.0
) -> AsyncIterator[None]:
    """Logs a progress line every `interval` seconds while the block runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            s = client.stats
            if s.planned:
                report(f"{label}: {progress_line(s, client)}")
                continue
            report(
                f"{label}: {s.items:,} items so far from {_count(s.requests, 'request')}, "
                f"{duration(client.governor.wait_seconds)} waiting for rate limits, "
                f"{duration(time.monotonic() - s.started)} elapsed"
            )

    task = asyncio.ensure_future(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
