"""Reading releases and their deploys, incrementally: a resync asks Sentry only for what may have changed.

Sentry's facts this relies on (getsentry/sentry, src/sentry/releases/endpoints/organization_releases.py and
release_deploys.py, src/sentry/api/serializers/models/project.py):
- the release list is ordered by date added, newest first, and offset-paged: what was added since the last resync
  is on the first pages, and a page holding only releases kept from last time, unchanged, means the rest is as kept
  (except what the checks below catch);
- a deploy moves its release's `deployCount` and `lastDeploy`; a release's `newGroups`, `dateReleased`,
  `commitCount` and projects move with its issues, finalization, commits and projects: those are its signature;
- an archived release leaves the (open) list wherever it is: the archived list is read each resync to catch it;
- a deploy to an OLD release (a rollback) changes nothing near the top of the list, but it becomes the project's
  `latestDeploys` entry for that environment, which the project list (read anyway) shows: such a release is read
  again on its own;
- health data moves without any of that: with `health` on, the releases adopted in some environment
  (`release.stage:adopted`) are listed again with their health each resync;
- a release's deploys endpoint lists the LAST deploy per (project, environment) of that release, without saying
  which project: a release of several projects is asked once per project (`project=<id>`).
What this cannot see until the next full read (every SENTRY_PORT_FULL_REFRESH_HOURS): a release deleted below the
first unchanged page, and changes to a kept release that move none of its signature and no latest deploy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sentry_port_assets.timestamps import parse_iso
from sentry_port_assets.sentry.client import ALL_ACCESSIBLE_PROJECTS, SentryClient, gather_limited
from sentry_port_assets.sentry.errors import SentryNotFoundError

Item = dict[str, Any]
log = logging.getLogger(__name__)

DEFAULT_RELEASE_PERIOD = "90d"
ADOPTED = "release.stage:adopted"
_PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, order=True)
class ReleaseFilter:
    """Which releases a resource reads: Sentry's release query and the window of their date added."""

    query: str = ""
    stats_period: str | None = DEFAULT_RELEASE_PERIOD

    @property
    def key(self) -> str:
        period = "" if self.stats_period is None else f" statsPeriod={self.stats_period}"
        return f"query={self.query!r}{period}"

    def params(self, *, status: str = "open", health: bool = False, extra_query: str = "") -> dict[str, Any]:
        query = " ".join(q for q in (self.query, extra_query) if q)
        params: dict[str, Any] = {"project": ALL_ACCESSIBLE_PROJECTS, "status": status}
        if query:
            params["query"] = query
        if self.stats_period:
            params["statsPeriod"] = self.stats_period
        if health:
            params["health"] = 1
        return params

    def window_start(self, now: datetime) -> datetime | None:
        period = (self.stats_period or "").strip()
        unit = _PERIOD_UNITS.get(period[-1:]) if period else None
        if unit is None or not period[:-1].isdigit():
            return None
        return now - timedelta(seconds=int(period[:-1]) * unit)


def signature(release: Mapping[str, Any]) -> list[Any]:
    """What moves when a release changes in a way its entity shows (see the module's docstring)."""
    last = release.get("lastDeploy") or {}
    return [release.get("deployCount"), last.get("id") if isinstance(last, Mapping) else None,
            release.get("newGroups"), release.get("dateReleased"), release.get("commitCount"),
            sorted(str(p.get("id")) for p in release.get("projects") or [] if isinstance(p, Mapping)),
            release.get("status")]


def deploy_signature(release: Mapping[str, Any]) -> list[Any]:
    """What moves when a release's deploys change: a new deploy moves both."""
    return signature(release)[:2]


def addressable(version: str) -> bool:
    """Whether Sentry's per-release endpoints can address this version: its URL pattern cannot hold a "/", encoded
    or not, and Sentry has refused such versions since it validates them; releases older than that may have one."""
    return "/" not in version


@dataclass
class ReleaseRead:
    releases: list[Item]
    pages: int = 0
    stopped_early: bool = False
    kept: int = 0
    gone: int = 0
    archived: int = 0
    refreshed: int = 0
    health_refreshed: int = 0
    past_window: int = 0


def _valid_kept(kept: Any) -> list[Item] | None:
    """Releases kept from last time, or None when what was kept is not a list of releases."""
    if not isinstance(kept, list) or not all(isinstance(r, dict) and isinstance(r.get("version"), str)
                                             and isinstance(r.get("dateCreated"), str) for r in kept):
        return None
    return kept


async def _all(client: SentryClient, params: Mapping[str, Any]) -> list[Item]:
    found: list[Item] = []
    async for page in client.release_pages(params):
        found.extend(page)
    return found


async def read_releases(client: SentryClient, release_filter: ReleaseFilter, health: bool, kept: Any,
                        latest_deploys: Mapping[str, datetime], vanished: list[str],
                        now: datetime | None = None) -> ReleaseRead:
    """The open releases `release_filter` selects, newest first. `kept`: this filter's releases from the last
    resync (None: read them all). `latest_deploys`: {version: the newest `latestDeploys` date of any project and
    environment whose latest deploy is of that version}, from the project list."""
    now = now or datetime.now(timezone.utc)
    previous = _valid_kept(kept)
    known = {r["version"]: r for r in previous or []}
    read: dict[str, Item] = {}
    out = ReleaseRead([])
    last_page: list[Item] = []
    async for page in client.release_pages(release_filter.params(health=health)):
        out.pages += 1
        for release in page:
            read.setdefault(release["version"], release)  # an offset page shifted by a new release repeats one
        last_page = page
        if previous is not None and page and all(
                r["version"] in known and signature(r) == signature(known[r["version"]]) for r in page):
            out.stopped_early = True
            break
    if not out.stopped_early:
        out.releases = list(read.values())
        return out

    # Below the first unchanged page: kept releases as they were, unless gone, archived, past the window or
    # redeployed.
    boundary = min(parse_iso(r["dateCreated"]) or now for r in last_page)
    since = release_filter.window_start(now)
    carried: dict[str, Item] = {}
    for release in previous or []:
        version, created = release["version"], parse_iso(release["dateCreated"]) or now
        if version in read:
            continue
        if created > boundary:  # it would have been on a page just read: archived or deleted since
            out.gone += 1
        elif since is not None and created < since:
            out.past_window += 1
        else:
            carried[version] = release
    if carried:
        archived = {r["version"] for r in await _all(client, release_filter.params(status="archived"))}
        for version in archived & set(carried):
            del carried[version]
            out.archived += 1
    stale = [version for version, moment in latest_deploys.items() if version in carried
             and moment > (parse_iso(((carried[version].get("lastDeploy") or {}).get("dateFinished"))) or
                           datetime.min.replace(tzinfo=timezone.utc))]
    for version, fresh in zip(stale, await gather_limited(_one(client, v, health, vanished) for v in stale)):
        if fresh is None or fresh.get("status") == "archived":
            del carried[version]
            out.gone += 1
        else:
            carried[version] = fresh
            out.refreshed += 1
    if health and carried:
        for release in await _all(client, release_filter.params(health=True, extra_query=ADOPTED)):
            if release["version"] in carried:
                carried[release["version"]] = release
                out.health_refreshed += 1
    out.kept = len(carried)
    merged = [*read.values(), *carried.values()]
    merged.sort(key=lambda r: parse_iso(r["dateCreated"]) or now, reverse=True)
    out.releases = merged
    return out


async def _one(client: SentryClient, version: str, health: bool, vanished: list[str]) -> Item | None:
    if not addressable(version):
        return None
    try:
        return await client.get_release(version, health)
    except SentryNotFoundError:
        vanished.append(f"release {version}")
        return None


def latest_deploy_times(projects: Sequence[Item]) -> dict[str, datetime]:
    """{version: newest `latestDeploys` date naming it} over the projects' latest deploy per environment."""
    latest: dict[str, datetime] = {}
    for project in projects:
        deploys = project.get("latestDeploys")
        for entry in (deploys.values() if isinstance(deploys, Mapping) else ()):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("version"), str):
                continue
            moment = parse_iso(entry.get("dateFinished"))
            if moment is not None and (entry["version"] not in latest or moment > latest[entry["version"]]):
                latest[entry["version"]] = moment
    return latest


async def read_deploys(client: SentryClient, release: Mapping[str, Any], vanished: list[str],
                       unaddressable: list[str]) -> list[Item] | None:
    """The release's deploys, each with `__release` (its version) and `__projects` (the projects it is the last
    deploy of, {id, slug, name}); None when the release was deleted meanwhile (a 404)."""
    version = release["version"]
    if not release.get("deployCount"):
        return []
    if not addressable(version):
        unaddressable.append(version)
        return []
    projects = [p for p in release.get("projects") or [] if isinstance(p, Mapping)]
    try:
        if len(projects) <= 1:
            per_project = [(projects[0] if projects else None, await client.list_release_deploys(version))]
        else:
            listed = await gather_limited(client.list_release_deploys(version, str(p["id"])) for p in projects)
            per_project = list(zip(projects, listed))
    except SentryNotFoundError:
        vanished.append(f"release {version}")
        return None
    rows: dict[str, Item] = {}
    for project, deploys in per_project:
        for deploy in deploys:
            row = rows.setdefault(str(deploy["id"]), {**deploy, "__release": version, "__projects": []})
            if project is not None:
                row["__projects"].append({"id": str(project["id"]), "slug": project.get("slug"),
                                          "name": project.get("name")})
    return sorted(rows.values(), key=lambda d: (d.get("dateFinished") or "", d["id"]), reverse=True)


def release_signals(projects: Sequence[Item]) -> dict[str, Any]:
    """What tells that a release or deploy appeared or moved, from the organization's project list alone: each
    project's newest release (`latestRelease`) and newest deploy per environment (`latestDeploys`: version and when it
    finished). A new release, a deploy, or an old release deployed again (a rollback, which the release list's
    newest-first first page would not show) each change it; nothing else does."""
    signals: dict[str, Any] = {}
    for project in projects:
        deploys = project.get("latestDeploys")
        signals[str(project.get("id"))] = {
            "release": (project.get("latestRelease") or {}).get("version"),
            "deploys": {env: [(d or {}).get("version"), (d or {}).get("dateFinished")]
                        for env, d in sorted(deploys.items())} if isinstance(deploys, Mapping) else {}}
    return signals

