"""Sentry's release and deploy endpoints, as the emulator serves them and the client reads them (over loopback).

The emulator follows getsentry/sentry's endpoint classes (releases/endpoints/organization_releases.py,
release_deploys.py): who sees what, paging, filters, quoting, scopes, rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from sentry_port_assets.emulators.sentry_api import SENTRY_LIMITS, RateLimit
from sentry_port_assets.emulators.sentry_data import QUOTED_VERSION, build_org
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.errors import SentryPermissionError
from sentry_port_assets.sentry.releases import ReleaseFilter, read_deploys, read_releases
from sentry_port_assets_tests.conftest import RunningSentry

RELEASES = "/organizations/{org}/releases/"
DEPLOYS = "/organizations/{org}/releases/{version}/deploys/"


def get(sentry: RunningSentry, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{sentry.url}/api/0/organizations/{sentry.organization}/{path}", params=params,
                     headers={"Authorization": f"Bearer {sentry.token}"})


def client(sentry: RunningSentry) -> SentryClient:
    return SentryClient(sentry.url, sentry.organization, sentry.token)


async def _read(sentry: RunningSentry, release_filter: ReleaseFilter = ReleaseFilter()) -> list[dict[str, Any]]:
    async with client(sentry) as c:
        return (await read_releases(c, release_filter, False, None, {}, [])).releases


def test_the_list_covers_the_callers_teams_unless_asked_for_every_accessible_project(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    # The demo token's user is on no team: without `project`, Sentry's release list covers no project at all.
    assert get(sentry, "releases/").json() == []
    everything = get(sentry, "releases/", project=-1).json()
    open_releases = [r for r in sentry.state.dataset.releases.releases.values() if r.status == "open"]
    assert len(everything) == len(open_releases) > 20
    assert [r["dateCreated"] for r in everything] == sorted((r["dateCreated"] for r in everything), reverse=True)
    assert {r["version"] for r in asyncio.run(_read(sentry))} == {r.version for r in open_releases}


def test_paging_status_window_and_search(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(build_org(releases_per_project=30))
    first = get(sentry, "releases/", project=-1, per_page=100)
    assert len(first.json()) == 100 and 'rel="next"; results="true"' in first.headers["link"]
    assert get(sentry, "releases/", project=-1, per_page=101).status_code == 400
    assert len(asyncio.run(_read(sentry))) == sum(
        r.status == "open" for r in sentry.state.dataset.releases.releases.values()) > 100
    archived = get(sentry, "releases/", project=-1, status="archived").json()
    assert archived and {r["status"] for r in archived} == {"archived"}
    assert get(sentry, "releases/", project=-1, status="deleted").status_code == 400
    week = get(sentry, "releases/", project=-1, statsPeriod="7d").json()
    since = datetime.now(timezone.utc) - timedelta(days=7)
    assert week and all(datetime.fromisoformat(r["dateCreated"].replace("Z", "+00:00")) >= since for r in week)
    assert len(week) < len(get(sentry, "releases/", project=-1, statsPeriod="90d").json())
    semver = get(sentry, "releases/", project=-1, query="semver:>=1.25.0").json()
    assert semver and all(int(r["versionInfo"]["version"]["minor"]) >= 25 for r in semver)
    adopted = get(sentry, "releases/", project=-1, query="release.stage:adopted").json()
    assert adopted and len(adopted) < 20
    assert get(sentry, "releases/", project=-1, query="release.stage:golden").status_code == 400
    health = get(sentry, "releases/", project=-1, health=1).json()
    assert any(p.get("healthData") for r in health for p in r["projects"])
    assert not any("healthData" in p for r in get(sentry, "releases/", project=-1).json() for p in r["projects"])


def test_a_version_is_one_url_quoted_path_segment(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    store = sentry.state.dataset.releases
    project = sentry.state.dataset.org_projects()[0]["id"]
    odd = store.create("nightly 2026-12-07 #4?x=1", [project], datetime.now(timezone.utc) - timedelta(hours=1))
    store.deploy(odd.version, "staging", datetime.now(timezone.utc))
    assert get(sentry, f"releases/{quote(QUOTED_VERSION, safe='')}/deploys/").json()
    # Unquoted, "#" ends the path and "?" starts a query: Sentry sees another URL.
    unquoted = httpx.get(f"{sentry.url}/api/0/organizations/{sentry.organization}/releases/{odd.version}/deploys/",
                         headers={"Authorization": f"Bearer {sentry.token}"})
    assert unquoted.status_code != 200

    async def deploys() -> list[dict[str, Any]] | None:
        async with client(sentry) as c:
            return await read_deploys(c, {"version": odd.version, "deployCount": 1,
                                          "projects": [{"id": int(project), "slug": "python-fastapi"}]}, [], [])

    [deploy] = asyncio.run(deploys()) or []
    assert deploy["environment"] == "staging" and deploy["__release"] == odd.version


def test_a_version_with_a_slash_cannot_be_addressed_and_is_not_asked_for(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    store = sentry.state.dataset.releases
    project = sentry.state.dataset.org_projects()[0]["id"]
    with pytest.raises(ValueError):
        store.create("feature/login", [project], datetime.now(timezone.utc))
    legacy = store.create("feature/login", [project], datetime.now(timezone.utc), legacy=True)
    store.deploy(legacy.version, "staging", datetime.now(timezone.utc))
    assert any(r["version"] == "feature/login" for r in get(sentry, "releases/", project=-1).json())
    assert get(sentry, f"releases/{quote(legacy.version, safe='')}/deploys/").status_code == 404
    unaddressable: list[str] = []

    async def deploys() -> Any:
        async with client(sentry) as c:
            return await read_deploys(c, {"version": legacy.version, "deployCount": 1, "projects": []}, [],
                                      unaddressable)

    before = sentry.state.total_requests
    assert asyncio.run(deploys()) == [] and unaddressable == ["feature/login"]
    assert sentry.state.total_requests == before


def test_deploys_are_the_last_per_project_and_environment(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    store = data.releases
    a, b = (p["id"] for p in data.org_projects()[1:3])
    now = datetime.now(timezone.utc)
    release = store.create("monorepo@9.0.0", [a, b], now - timedelta(hours=5))
    store.deploy(release.version, "staging", now - timedelta(hours=4))  # both projects
    store.deploy(release.version, "staging", now - timedelta(hours=3), projects=[a])  # replaces a's
    store.deploy(release.version, "production", now - timedelta(hours=2), projects=[b])
    listed = get(sentry, "releases/monorepo%409.0.0/deploys/").json()
    assert [(d["environment"], d["dateFinished"][:13]) for d in listed] == [
        ("production", (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H")),
        ("staging", (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H")),
        ("staging", (now - timedelta(hours=4)).strftime("%Y-%m-%dT%H"))]
    assert "project" not in listed[0] and "projects" not in listed[0]
    assert len(get(sentry, "releases/monorepo%409.0.0/deploys/", project=a).json()) == 1

    async def deploys() -> Any:
        async with client(sentry) as c:
            [item] = [r for r in (await read_releases(c, ReleaseFilter(), False, None, {}, [])).releases
                      if r["version"] == release.version]
            assert item["deployCount"] == 3
            return await read_deploys(c, item, [], [])

    slugs = {p["id"]: p["slug"] for p in data.org_projects()}
    rows = {(d["environment"], d["dateFinished"][:13]): sorted(p["slug"] for p in d["__projects"])
            for d in asyncio.run(deploys())}
    assert sorted(rows.values()) == sorted([[slugs[b]], [slugs[a]], [slugs[b]]])


def test_a_release_of_projects_the_caller_cannot_reach_is_a_404(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(token_teams=frozenset({"team-1"}))
    data = sentry.state.dataset
    # a member (no global role) of a closed organization reaches only the projects of their teams
    next(m for m in data.members if m["email"] == data.token_user)["orgRole"] = "member"
    data.organization["openMembership"] = False
    reachable = {p["id"] for t in data.teams if t["slug"] == "team-1" for p in t["projects"]}
    other = next(r for r in data.releases.releases.values() if not set(r.projects) & reachable and r.total_deploys)
    mine = next(r for r in data.releases.releases.values() if set(r.projects) <= reachable and r.total_deploys)
    assert get(sentry, f"releases/{quote(other.version, safe='')}/deploys/").status_code == 404
    assert get(sentry, f"releases/{quote(mine.version, safe='')}/deploys/").status_code == 200
    assert {r["version"] for r in get(sentry, "releases/", project=-1).json()} == {
        r.version for r in data.releases.releases.values() if set(r.projects) & reachable and r.status == "open"}


@pytest.mark.parametrize("scopes, allowed", [
    ({"project:read"}, True), ({"project:releases"}, True), ({"org:ci"}, True), ({"org:read", "event:read"}, False)])
def test_the_scopes_releases_accept(sentry_emulator: Callable[..., RunningSentry], scopes: set[str],
                                    allowed: bool) -> None:
    sentry = sentry_emulator(scopes=frozenset(scopes))
    assert (get(sentry, "releases/", project=-1).status_code == 200) is allowed
    if allowed:
        return
    with pytest.raises(SentryPermissionError) as refused:
        asyncio.run(_read(sentry))
    assert RELEASES in str(refused.value) and "project:read" in str(refused.value)


def test_the_release_list_has_its_own_limit_and_the_client_keeps_to_it(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    # OrganizationReleasesEndpoint.rate_limits: 40 a second per IP, user and organization; deploys: the default
    assert SENTRY_LIMITS["user"][RELEASES] == SENTRY_LIMITS["org"][RELEASES] == RateLimit(40, 1)
    assert DEPLOYS not in SENTRY_LIMITS["user"] and DEPLOYS not in SENTRY_LIMITS["org"]
    sentry = sentry_emulator(build_org(releases_per_project=70), limits={RELEASES: RateLimit(2, 1)})
    releases = asyncio.run(_read(sentry))
    assert len(releases) == sum(r.status == "open" for r in sentry.state.dataset.releases.releases.values()) > 300
    stats = sentry.state.stats(RELEASES)
    assert stats.requests - stats.rate_limited == -(-len(releases) // 100)
