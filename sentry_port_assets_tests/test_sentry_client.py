"""The Sentry client against the emulator over real HTTP: pagination, limits, retries, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from sentry_port_assets.emulators.sentry_api import Fault
from sentry_port_assets.emulators.sentry_data import MANY_VALUES_TAG, build_org, demo_dataset
from sentry_port_assets.sentry.client import RetryPolicy, SentryClient
from sentry_port_assets.sentry.errors import (
    SentryAuthError,
    SentryOrganizationNotFound,
    SentryPermissionError,
    SentryRequestError,
)
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags, fetch_issues, fetch_project_tags, fetch_teams
from sentry_port_assets.sentry.pagination import next_page_url
from sentry_port_assets.sentry.selection import IssueFilter
from sentry_port_assets_tests.conftest import RunningSentry

FAST_RETRY = RetryPolicy(max_retries=4, backoff_seconds=0.01)


def client_for(sentry: RunningSentry, **kwargs: Any) -> SentryClient:
    kwargs.setdefault("retry", FAST_RETRY)
    return SentryClient(sentry.url, sentry.organization, sentry.token, **kwargs)


async def fetch_everything(client: SentryClient) -> dict[str, Any]:
    """Every raw kind the default mapping needs, the way the assets fetch them."""
    vanished = Vanished()
    projects = await client.list_projects()
    filters = [IssueFilter("")]
    issues = await fetch_issues(client, projects, filters)
    return {
        "members": await client.list_members(),
        "teams": await fetch_teams(client, True, vanished),
        "projects": projects,
        "project_tags": await fetch_project_tags(client, projects, ["environment"]),
        "issues": issues,
        "issue_tags": await fetch_issue_tags(client, issues, {filters[0]: ["environment"]}, vanished),
    }


def run(coro_fn: Callable[[SentryClient], Any], client: SentryClient) -> Any:
    async def go() -> Any:
        async with client:
            return await coro_fn(client)

    return asyncio.run(go())


def test_link_header_parsing_follows_next_only_while_it_has_results() -> None:
    header = ('<https://s/api/0/x/?cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1", '
              '<https://s/api/0/x/?cursor=0:100:0>; rel="next"; results="true"; cursor="0:100:0"')
    assert next_page_url(header) == "https://s/api/0/x/?cursor=0:100:0"
    assert next_page_url(header.replace('results="true"', 'results="false"')) is None
    assert next_page_url(None) is None


def test_pagination_across_many_pages(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(build_org(members=250, issues=260, projects=2, teams=1))
    client = client_for(sentry)
    members = run(lambda c: c.list_members(), client)
    assert len(members) == 250
    assert len({m["id"] for m in members}) == 250
    assert sentry.state.endpoints["/organizations/{org}/members/"].requests == 3  # 100 + 100 + 50

    issues = run(lambda c: c.list_projects(), client_for(sentry))[0]
    everything = run(lambda c: c.list_issues(issues, "", None), client_for(sentry))
    assert len(everything) == len([i for i in sentry.state.dataset.issues if i["project"]["id"] == issues["id"]])
    assert len(everything) > 100


def test_tag_values_are_paginated(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    issue_id = sentry.state.dataset.issues[0]["id"]
    values = run(lambda c: c.list_issue_tag_values(issue_id, MANY_VALUES_TAG), client_for(sentry))
    assert len(values) == 150
    project_values = run(lambda c: c.list_project_tag_values("python-fastapi", MANY_VALUES_TAG), client_for(sentry))
    assert [v["value"] for v in project_values] == [v["value"] for v in sentry.state.dataset.project_tag_values[
        ("python-fastapi", MANY_VALUES_TAG)]]


def test_every_project_of_the_organization_whatever_teams_the_token_user_is_on(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    assert [p for p in data.user_projects() if p["organization"]["slug"] == data.slug] == [], \
        "the token's user is on no team: Sentry's /projects/ shows them none of the organization's projects"
    projects = run(lambda c: c.list_projects(), client_for(sentry))
    assert [p["slug"] for p in projects] == [p["slug"] for p in data.org_projects()] and len(projects) == 5
    # what /projects/ items carry and the default mapping reads, filled in from what is known
    assert {p["status"] for p in projects} == {"active"}
    assert {p["organization"]["links"]["organizationUrl"] for p in projects} == {
        data.organization["links"]["organizationUrl"]}
    assert "/projects/" not in sentry.state.endpoints


def test_default_issue_query_is_unresolved_and_empty_query_syncs_every_status(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()

    async def both(c: SentryClient) -> dict[str, list[dict[str, Any]]]:
        projects = await c.list_projects()
        return await fetch_issues(c, projects, [IssueFilter("is:unresolved"), IssueFilter("")])

    issues = run(both, client_for(sentry))
    assert {i["status"] for i in issues[IssueFilter("is:unresolved").key]} == {"unresolved"}
    assert {i["status"] for i in issues[IssueFilter("").key]} == {"unresolved", "resolved", "ignored"}
    assert len(issues[IssueFilter("").key]) == 50


def test_tight_rate_limits_finish_without_failures_and_within_concurrency(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    clean = run(fetch_everything, client_for(sentry_emulator()))
    sentry = sentry_emulator(rate_limit=15, window_seconds=1, concurrent_limit=3, latency_seconds=0.01)
    client = client_for(sentry)
    limited = run(fetch_everything, client)
    assert limited == clean
    for endpoint, stats in sentry.state.endpoints.items():
        assert stats.concurrency_limited == 0, endpoint
        assert stats.max_in_flight <= 3, endpoint
    assert sentry.state.total_429 == 0
    assert client.governor.for_endpoint("/organizations/{org}/issues/{issue}/tags/{key}/values/").wait_seconds > 0


def test_a_429_means_wait_for_the_reset_not_failure(sentry_emulator: Callable[..., RunningSentry]) -> None:
    """Two clients share one endpoint's window: the second learns of the limit from 429s and still finishes."""
    sentry = sentry_emulator(rate_limit=8, window_seconds=1)
    issue_ids = [i["id"] for i in sentry.state.dataset.issues[:20]]

    async def both() -> list[list[Any]]:
        async with client_for(sentry) as a, client_for(sentry) as b:
            async def tags(c: SentryClient) -> list[Any]:
                return await asyncio.gather(*(c.list_issue_tag_values(i, "environment") for i in issue_ids))

            return list(await asyncio.gather(tags(a), tags(b)))

    first, second = asyncio.run(both())
    assert first == second
    assert sentry.state.total_429 > 0


@pytest.mark.parametrize("fault", [
    Fault("500", times=3),
    Fault("drop", times=2),
    Fault("malformed", endpoint="/organizations/{org}/issues/{issue}/tags/{key}/values/", times=2, after=5),
    Fault("slow", endpoint="/organizations/{org}/members/", times=1, slow_seconds=3.0),
])
def test_transient_faults_give_the_same_result_as_a_clean_run(
        sentry_emulator: Callable[..., RunningSentry], fault: Fault) -> None:
    clean = run(fetch_everything, client_for(sentry_emulator()))
    sentry = sentry_emulator(faults=[fault])
    client = client_for(sentry, timeout_seconds=1.0)
    assert run(fetch_everything, client) == clean
    assert fault.fired == fault.times
    assert client.stats.retries == fault.times


def test_persistent_server_errors_fail_after_bounded_retries(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(faults=[Fault("500", endpoint="/organizations/{org}/teams/", times=None)])
    client = client_for(sentry)
    with pytest.raises(SentryRequestError, match=r"GET /organizations/\{org\}/teams/ failed 5 times") as err:
        run(lambda c: c.list_teams(), client)
    assert sentry.state.endpoints["/organizations/{org}/teams/"].requests == 5
    assert "HTTP 500" in str(err.value)


def test_a_rejected_token_names_sentry_token_and_never_shows_it(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(token="the-right-token")
    client = SentryClient(sentry.url, sentry.organization, "s3cr3t-wrong-token", retry=FAST_RETRY)
    with pytest.raises(SentryAuthError, match="SENTRY_TOKEN") as err:
        run(lambda c: c.list_members(), client)
    assert "s3cr3t" not in str(err.value) and "s3cr3t" not in repr(err.value)


def test_a_missing_scope_names_the_endpoint_and_the_scope(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(faults=[Fault("403", endpoint="/organizations/{org}/members/", times=None)])
    with pytest.raises(SentryPermissionError, match=r"/organizations/\{org\}/members/.*member:read"):
        run(lambda c: c.list_members(), client_for(sentry))


def test_a_wrong_organization_slug_names_sentry_organization(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    client = SentryClient(sentry.url, "no-such-org", sentry.token, retry=FAST_RETRY)
    with pytest.raises(SentryOrganizationNotFound, match="SENTRY_ORGANIZATION"):
        run(lambda c: c.get_organization(), client)
    with pytest.raises(SentryOrganizationNotFound, match="'no-such-org'"):
        run(lambda c: c.list_members(), SentryClient(sentry.url, "no-such-org", sentry.token, retry=FAST_RETRY))


def test_an_issue_deleted_during_the_fetch_is_left_out_and_counted(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    everything = IssueFilter("")

    async def go(c: SentryClient) -> tuple[dict[str, Any], Vanished]:
        projects = await c.list_projects()
        issues = await fetch_issues(c, projects, [everything])
        sentry.state.dataset.remove_issue(issues[everything.key][1]["id"])
        vanished = Vanished()
        return await fetch_issue_tags(c, issues, {everything: ["environment"]}, vanished), vanished

    rows, vanished = run(go, client_for(sentry))
    assert len(rows[everything.key]["environment"]) == 49
    assert len(vanished.items) == 1


def test_demo_dataset_has_what_real_orgs_have() -> None:
    demo = demo_dataset()
    assert any(m["user"] is None and m["pending"] for m in demo.members)
    assert any((i["assignedTo"] or {}).get("type") == "team" and "email" not in i["assignedTo"] for i in demo.issues)
    assert {i["status"] for i in demo.issues} == {"unresolved", "resolved", "ignored"}
    assert any(len(v) > 100 for v in demo.project_tag_values.values())
    assert any(p["organization"]["slug"] != demo.slug for p in demo.projects)


def test_environments_by_list_give_the_same_rows_as_per_issue_tag_values_with_far_fewer_requests(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(build_org(projects=6, issues=300, many_values=0), limits={})  # 300 per-issue requests
    everything = IssueFilter("")

    async def both(c: SentryClient) -> tuple[dict[str, Any], dict[str, Any], int]:
        projects = await c.list_projects()
        issues = await fetch_issues(c, projects, [everything])
        exact = await fetch_issue_tags(c, issues, {everything: ["environment"]}, Vanished())
        before = c.stats.requests
        listed = await fetch_issue_tags(c, issues, {everything: ["environment"]}, Vanished(),
                                        frozenset({everything}))
        return exact, listed, c.stats.requests - before

    exact, listed, requests = run(both, client_for(sentry))

    def by_issue(rows: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {r["id"]: sorted(r["__tags"], key=lambda v: v["value"]) for r in rows[everything.key]["environment"]}

    assert by_issue(listed) == by_issue(exact)
    assert len(by_issue(listed)) == 300
    environments = sum(len(v) for (_, key), v in sentry.state.dataset.project_tag_values.items() if key == "environment")
    assert requests == len({i["project"]["slug"] for i in sentry.state.dataset.issues}) + environments
    assert requests < 300 / 5


def test_gather_limited_starts_only_what_can_be_in_flight_and_keeps_order() -> None:
    """10,000 calls must not become 10,000 waiting tasks (each woken by the governor on every answer: O(n^2))."""
    import asyncio

    from sentry_port_assets.sentry.client import GATHER_WORKERS, gather_limited

    started = 0
    running = 0
    most = 0

    async def call(i: int) -> int:
        nonlocal started, running, most
        started += 1
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        running -= 1
        return i * 2

    created = 0

    def calls():
        nonlocal created
        for i in range(10_000):
            created += 1
            assert created - started <= GATHER_WORKERS + 1, "calls are taken lazily"
            yield call(i)

    results = asyncio.run(gather_limited(calls()))
    assert results == [i * 2 for i in range(10_000)]
    assert most <= GATHER_WORKERS


def test_a_release_wakes_only_as_many_waiters_as_can_go() -> None:
    import asyncio

    from sentry_port_assets.sentry.ratelimit import EndpointGovernor, RateLimitHeaders

    async def go() -> int:
        governor = EndpointGovernor()
        headers = RateLimitHeaders(limit=None, remaining=None, reset=None, concurrent_limit=2, concurrent_remaining=1)
        first = await governor.acquire()
        await governor.release(first, headers)  # learned: 2 at a time
        held = [await governor.acquire(), await governor.acquire()]
        wakes = 0
        original = governor._changed.wait

        async def counting_wait() -> bool:
            nonlocal wakes
            result = await original()
            wakes += 1
            return result

        governor._changed.wait = counting_wait  # type: ignore[method-assign]
        waiters = [asyncio.ensure_future(governor.acquire()) for _ in range(200)]
        await asyncio.sleep(0)
        for ticket in held:
            await governor.release(ticket, headers)
        await asyncio.sleep(0.01)
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        return wakes

    assert asyncio.run(go()) <= 4, "two releases woke far more waiters than the two slots they freed"
