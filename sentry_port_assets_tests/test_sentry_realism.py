"""Sentry's inconvenient behaviour, as the emulator models it by default, and a client that stays complete."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from dagster import materialize

from sentry_port_assets.assets.catalog import port_catalog
from sentry_port_assets.assets.entities import entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.emulators.sentry_api import DEFAULT_BUCKET, ORG_AUTH_TOKEN_SCOPES, Fault, RateLimit
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sentry.client import RetryPolicy, SentryClient
from sentry_port_assets.sentry.errors import SentryPermissionError, SentryRequestError
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags, fetch_issues, fetch_project_tags, fetch_teams
from sentry_port_assets.sentry.pagination import next_page_url
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets.sentry.selection import IssueFilter
from sentry_port_assets_tests.conftest import ENTITY_INPUTS, RunningSentry

ISSUES = "/organizations/{org}/issues/"


def bump_on_second_page(sentry: RunningSentry, victim: dict[str, Any]) -> None:
    """The victim issue gets an event right before the second page of the issue list is answered."""
    pages = {"n": 0}

    def hook(endpoint: str, params: dict[str, list[str]]) -> None:
        if endpoint == ISSUES and "cursor" in params and pages["n"] == 0:
            pages["n"] += 1
            sentry.state.dataset.record_event(victim["id"])

    sentry.state.config.before_answer = hook


def test_the_default_order_moves_an_issue_that_gets_an_event_while_paging(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    """What the emulator does, as Sentry does: in last-seen order the bumped issue is never returned."""
    sentry = sentry_emulator(build_org(projects=1, issues=250, many_values=0))
    data = sentry.state.dataset
    oldest = min(data.issues, key=lambda i: i["lastSeen"])
    bump_on_second_page(sentry, oldest)
    seen: list[str] = []
    url: str | None = f"{sentry.url}/api/0/organizations/{data.slug}/issues/"
    params: dict[str, Any] | None = {"project": data.org_projects()[0]["id"], "query": "", "limit": 100}
    while url:
        answer = httpx.get(url, params=params, headers={"Authorization": f"Bearer {sentry.token}"})
        seen += [i["id"] for i in answer.json()]
        url, params = next_page_url(answer.headers.get("link")), None
    assert oldest["id"] not in seen and len(seen) == 250, "Sentry's default order loses the issue"


def test_issues_are_paged_in_an_order_events_do_not_change(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(build_org(projects=1, issues=250, many_values=0))
    data = sentry.state.dataset
    oldest = min(data.issues, key=lambda i: i["lastSeen"])
    bump_on_second_page(sentry, oldest)

    async def go() -> list[dict[str, Any]]:
        async with SentryClient(sentry.url, data.slug, sentry.token, retry=RetryPolicy(1, 0.01)) as client:
            return await client.list_issues(data.org_projects()[0], "", None)

    issues = asyncio.run(go())
    assert sorted(i["id"] for i in issues) == sorted(i["id"] for i in data.issues)


def test_an_issue_that_gets_an_event_mid_resync_is_not_deleted(
        sentry_emulator: Callable[..., RunningSentry], tmp_path: Path) -> None:
    # 2 x 250 issue tag requests: Sentry's 150 per minute would make this test wait for minutes
    sentry = sentry_emulator(build_org(projects=1, issues=250, many_values=0), limits={})
    data = sentry.state.dataset
    catalog = LocalCatalog(tmp_path / "catalog.sqlite")
    resources = {"sentry": SentryResource(host=sentry.url, organization=data.slug, token=sentry.token,
                                          max_retries=1, backoff_seconds=0.01),
                 "mapping": MappingResource(),
                 "port": PortResource(local_catalog=str(tmp_path / "catalog.sqlite")), **ENTITY_INPUTS}
    everything = [*raw_assets, *entity_assets, port_catalog]
    assert materialize(everything, resources=resources).success
    before = {e["identifier"] for e in catalog.entities("sentryIssue")}
    victim = next(i for i in sorted(data.issues, key=lambda i: i["lastSeen"]) if i["status"] == "unresolved")
    assert any(e.startswith(f"{victim['id']}-") for e in before)

    bump_on_second_page(sentry, victim)
    result = materialize(everything, resources=resources)
    [publish] = [m for m in result.get_asset_materialization_events() if m.asset_key.path == ["port", "catalog"]]
    assert publish.materialization.metadata["deleted"].value == 0
    assert {e["identifier"] for e in catalog.entities("sentryIssue")} == before


def run_client(sentry: RunningSentry, work: Callable[[SentryClient], Any], retries: int = 1) -> Any:
    async def go() -> Any:
        async with SentryClient(sentry.url, sentry.organization, sentry.token,
                                retry=RetryPolicy(retries, 0.01)) as client:
            return await work(client)

    return asyncio.run(go())


def test_a_missing_tag_key_is_a_404_and_means_no_values_not_a_deleted_issue(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    bare = next(i for i in data.issues if i["status"] == "unresolved" and i["id"] != data.issues[0]["id"])
    del data.issue_tag_values[(bare["id"], "environment")]  # an issue whose events carry no environment
    headers = {"Authorization": f"Bearer {sentry.token}"}
    answer = httpx.get(f"{sentry.url}/api/0/organizations/{data.slug}/issues/{bare['id']}/tags/environment/values/",
                       headers=headers)
    assert answer.status_code == 404, "Sentry: GroupTagKeyNotFound -> ResourceDoesNotExist"
    no_env = next(p for p in data.org_projects() if not data.project_tag_values.get((p["slug"], "environment")))
    assert httpx.get(f"{sentry.url}/api/0/projects/{data.slug}/{no_env['slug']}/tags/environment/values/",
                     headers=headers).status_code == 404

    everything = IssueFilter("")
    gone = data.issues[-1]

    async def work(client: SentryClient) -> tuple[dict[str, Any], dict[str, Any], Vanished]:
        projects = await client.list_projects()
        issues = await fetch_issues(client, projects, [everything])
        data.remove_issue(gone["id"])  # deleted in Sentry while the fetch runs
        vanished = Vanished()
        tags = await fetch_issue_tags(client, issues, {everything: ["environment"]}, vanished)
        return tags, await fetch_project_tags(client, projects, ["environment"]), vanished

    tags, project_tags, vanished = run_client(sentry, work)
    rows = {row["id"]: row["__tags"] for row in tags[everything.key]["environment"]}
    assert rows[bare["id"]] == [], "an issue without the tag is kept, with no values"
    assert gone["id"] not in rows and vanished.items == [f"issue {gone['id']}"], "only a deleted issue vanishes"
    assert no_env["slug"] not in {row["slug"] for row in project_tags["environment"]}


def test_an_unknown_environment_is_no_issues_not_a_missing_organization(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    headers = {"Authorization": f"Bearer {sentry.token}"}
    answer = httpx.get(f"{sentry.url}/api/0/organizations/{data.slug}/issues/",
                       params={"environment": "nowhere"}, headers=headers)
    assert answer.status_code == 404
    project = data.org_projects()[0]
    assert run_client(sentry, lambda c: c.list_issues(project, "", None, environment="nowhere")) == []


def test_snuba_overload_is_retried_and_other_400s_are_final(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(faults=[Fault("query-timeout", endpoint=ISSUES, times=2),
                                     Fault("snuba-429", endpoint=ISSUES, times=1)])
    data = sentry.state.dataset
    project = data.org_projects()[0]
    issues = run_client(sentry, lambda c: c.list_issues(project, "", None), retries=3)
    assert {i["id"] for i in issues} == {i["id"] for i in data.issues if i["project"]["id"] == project["id"]}
    assert sentry.state.endpoints[ISSUES].requests == 4

    headers = {"Authorization": f"Bearer {sentry.token}"}
    too_big = httpx.get(f"{sentry.url}/api/0/organizations/{data.slug}/members/", params={"per_page": 101},
                        headers=headers)
    assert too_big.status_code == 400 and "Must be between 1 and 100" in too_big.json()["detail"]
    try:
        run_client(sentry, lambda c: c._list("/organizations/{org}/members/",
                                             f"/organizations/{data.slug}/members/", {"per_page": 101}, None),
                   retries=3)
    except SentryRequestError as exc:
        assert "HTTP 400" in str(exc) and "per_page" in str(exc)
    else:
        raise AssertionError("a 400 that is not an overload must not be retried into success")
    assert sentry.state.endpoints["/organizations/{org}/members/"].requests == 2  # the check above, then one


def test_the_issue_list_covers_90_days_unless_a_stats_period_says_otherwise(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    project = data.org_projects()[0]
    mine = [i for i in data.issues if i["project"]["id"] == project["id"]]
    old = (datetime.now(timezone.utc) - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    mine[-1]["lastSeen"] = old

    def listed(period: str | None) -> set[str]:
        return {i["id"] for i in run_client(sentry, lambda c: c.list_issues(project, "", period))}

    assert listed(None) == {i["id"] for i in mine[:-1]}, "no event in 90 days: not listed, whatever its status"
    assert listed("") == listed(None)
    assert mine[-1]["id"] in listed("120d")
    recent = {i["id"] for i in mine if datetime.fromisoformat(i["lastSeen"].replace("Z", "+00:00"))
              >= datetime.now(timezone.utc) - timedelta(days=14)}
    assert listed("14d") == recent and recent != listed(None)


def test_an_organization_auth_token_is_refused_everywhere_and_the_error_says_which_token_works(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    token = "sntrys_eyJpYXQiOjE3MDAwMDAwMDB9_org_token_for_tests"
    sentry = sentry_emulator(token=token, scopes=ORG_AUTH_TOKEN_SCOPES)
    try:
        run_client(sentry, lambda c: c.list_members())
    except SentryPermissionError as exc:
        message = str(exc)
    else:
        raise AssertionError("an organization auth token can read nothing this sync needs")
    assert "organization auth token" in message and "org:ci" in message
    assert "Personal Tokens" in message and "Issue & Event: Read" in message
    assert token not in message


def test_a_missing_scope_names_the_scope_and_the_integration_permission(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(scopes=frozenset({"org:read", "member:read", "team:read", "project:read"}))
    project = sentry.state.dataset.org_projects()[0]
    assert run_client(sentry, lambda c: c.list_projects()), "org:read is enough for the organization's projects"
    try:
        run_client(sentry, lambda c: c.list_issues(project, "", None))
    except SentryPermissionError as exc:
        assert "event:read" in str(exc) and "Issue & Event: Read" in str(exc)
    else:
        raise AssertionError("the issue list needs event:read")


def test_endpoints_sharing_sentrys_default_bucket_are_paced_as_one(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    """Endpoints without limits of their own share one bucket per caller: the governor learns that from the headers
    (they report the same limit) and paces them together, so no request is refused."""
    sentry = sentry_emulator(build_org(teams=12, projects=12, issues=60, many_values=0),
                             limits={DEFAULT_BUCKET: RateLimit(8, 2)})
    data = sentry.state.dataset

    async def work(client: SentryClient) -> Any:
        projects = await client.list_projects()
        return await asyncio.gather(fetch_teams(client, True, Vanished()),
                                    fetch_issues(client, projects, [IssueFilter("")]))

    teams, issues = run_client(sentry, work)
    assert len(teams) == len(data.teams) and len(issues[IssueFilter("").key]) == len(data.issues)
    assert sum(s.requests for s in sentry.state.endpoints.values()) > 3 * 8
    # Only an endpoint's very first request cannot know its bucket yet; everything after is paced with the others.
    assert sentry.state.total_429 <= 2, {e: s.rate_limited for e, s in sentry.state.endpoints.items()}


def test_sentrys_own_limits_are_the_default(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    headers = {"Authorization": f"Bearer {sentry.token}"}
    issue = data.issues[0]
    answer = httpx.get(f"{sentry.url}/api/0/organizations/{data.slug}/issues/{issue['id']}/tags/environment/values/",
                       headers=headers)
    assert (answer.headers["x-sentry-rate-limit-limit"], answer.headers["x-sentry-rate-limit-concurrentlimit"]) == (
        "150", "10")
    assert int(answer.headers["x-sentry-rate-limit-reset"]) % 60 == 0, "60-second windows, aligned like Sentry's"
    org = sentry_emulator(caller="org")
    answer = httpx.get(f"{org.url}/api/0/organizations/{data.slug}/issues/{issue['id']}/tags/environment/values/",
                       headers=headers)
    assert answer.headers["x-sentry-rate-limit-limit"] == "300"
    teams = httpx.get(f"{sentry.url}/api/0/organizations/{data.slug}/teams/", headers=headers)
    projects = httpx.get(f"{sentry.url}/api/0/organizations/{data.slug}/projects/", headers=headers)
    assert int(projects.headers["x-sentry-rate-limit-remaining"]) == \
        int(teams.headers["x-sentry-rate-limit-remaining"]) - 1, "one shared default bucket"
