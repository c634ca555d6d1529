"""Which projects a webhook run's issue lookup covers. Sentry's organization issue list without `project` covers only
the projects of the token user's teams, so a personal token whose user is on no team gets `200 []` for every
`group=` lookup; reading that as "gone from Sentry" deleted live issues' entities until the next resync brought them
back. The emulator applies Sentry's rule (sentry_port_assets/emulators/sentry_api.py, ALL_ACCESS_PROJECTS)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from dagster import SensorResult, build_sensor_context

from sentry_port_assets.emulators.sentry_api import ISSUE_LIST_MULTI_PROJECT
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.sensors.webhooks import sentry_webhook_sensor
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets.webhooks.job import OP, sentry_webhook_sync
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.job_runs import execute, job_env
from sentry_port_assets_tests.test_webhooks_end_to_end import Loop, make_loop  # noqa: F401 (a fixture)

PERSONAL_TOKEN = "sntryu_lookup_scope_token_never_logged_31"
ISSUES = "/organizations/{org}/issues/"
SINGLE = "/organizations/{org}/issues/{issue}/"


def issue_list(sentry: RunningSentry, params: list[tuple[str, str]]) -> httpx.Response:
    return httpx.get(f"{sentry.url}/api/0/organizations/{sentry.organization}/issues/", params=params,
                     headers={"Authorization": f"Bearer {sentry.token}"})


def ids_of(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {i["id"] for i in answer.json()}


def test_the_issue_list_covers_the_projects_sentrys_rule_says(sentry_emulator: Callable[..., RunningSentry]) -> None:
    """No `project`: the token user's teams' projects; `project=-1`: every project the token can access; more than
    one project without `organizations:global-views`: 400 (OrganizationGroupIndexEndpoint.get)."""
    sentry = sentry_emulator()
    data = sentry.state.dataset
    groups = [("group", i["id"]) for i in data.issues]
    every = {i["id"] for i in data.issues}
    assert data.token_teams() == set() and data.token_role() == "owner", "the demo's token user: an owner on no team"

    assert ids_of(issue_list(sentry, groups)) == set(), "no team: no project covered, Sentry answers 200 []"
    assert ids_of(issue_list(sentry, [*groups, ("project", "-1")])) == every, "an owner can access every project"

    # On one team with one project (team-2 owns oauth-service), without global views.
    sentry.state.config.token_teams = frozenset({"team-2"})
    sentry.state.config.global_views = False
    oauth = next(p["id"] for p in data.org_projects() if p["slug"] == "oauth-service")
    assert ids_of(issue_list(sentry, groups)) == {i["id"] for i in data.issues if i["project"]["id"] == oauth}
    several = issue_list(sentry, [*groups, ("project", "-1")])
    assert several.status_code == 400 and several.json() == {"detail": ISSUE_LIST_MULTI_PROJECT}
    assert ids_of(issue_list(sentry, [*groups, ("project", oauth)])) == {
        i["id"] for i in data.issues if i["project"]["id"] == oauth}
    sentry.state.config.global_views = True
    assert ids_of(issue_list(sentry, [*groups, ("project", "-1")])) == every

    # A member (no global role) of a closed organization reaches only their teams' projects, even with -1.
    next(m for m in data.members if m["email"] == data.token_user)["orgRole"] = "member"
    assert ids_of(issue_list(sentry, [*groups, ("project", "-1")])) == {
        i["id"] for i in data.issues if i["project"]["id"] == oauth}
    other = next(p["id"] for p in data.org_projects() if p["id"] != oauth)
    assert issue_list(sentry, [*groups, ("project", other)]).status_code == 403, "a project they cannot access"
    data.organization["openMembership"] = True  # Sentry's allow_joinleave: every member reaches every project
    assert ids_of(issue_list(sentry, [*groups, ("project", "-1")])) == every
    assert issue_list(sentry, [("project", "x")]).status_code == 400


def test_an_internal_integration_is_on_every_team(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(caller="org")
    data = sentry.state.dataset
    groups = [("group", i["id"]) for i in data.issues]
    assert ids_of(issue_list(sentry, groups)) == {i["id"] for i in data.issues}
    sentry.state.config.global_views = False
    assert issue_list(sentry, groups).json() == {"detail": ISSUE_LIST_MULTI_PROJECT}


def test_a_webhook_for_a_live_issue_keeps_its_entities_with_a_token_user_on_no_team(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    """The issue's report: a personal token whose user (an owner) is on no team. The resync lands the entities; an
    `assigned` webhook for a live issue, applied by `dagster job execute -j sentry_webhook_sync`, must keep them."""
    sentry = sentry_emulator(token=PERSONAL_TOKEN)
    data = sentry.state.dataset
    assert data.token_teams() == set()
    home = tmp_path / "home"
    home.mkdir()
    inbox_path = tmp_path / "inbox.sqlite"
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(fx.PORT_USER)
    with fx.serve_port(catalog) as (port_url, _):
        env = job_env(home, sentry, port_url, SENTRY_WEBHOOK_INBOX=str(inbox_path))
        execute("sentry_port_sync", env, tmp_path)
        issue = next(i for i in data.issues if i["status"] == "unresolved"
                     and len(data.issue_tag_values[(i["id"], "environment")]) == 3)
        entities = {e["identifier"] for e in catalog.entities("sentryIssue") if e["identifier"].startswith(f"{issue['id']}-")}
        assert len(entities) == 3, entities

        member = data.members[1]
        issue["assignedTo"] = {"type": "user", "id": member["user"]["id"], "name": member["name"],
                               "email": member["email"]}
        body = json.dumps({"action": "assigned", "installation": {"uuid": "5a1e"},
                           "data": {"issue": copy.deepcopy(issue), "assignee": issue["assignedTo"]}}).encode()
        with Inbox(inbox_path) as inbox:
            inbox.append(request_id="assigned-1", resource="issue", action="assigned", issue_id=issue["id"], body=body)
            [event] = inbox.pending_after(0)
        run = execute("sentry_webhook_sync", env, tmp_path, {"ops": {OP: {"config": {"event_ids": [event.id]}}}})

    kept = {e["identifier"]: e for e in catalog.entities("sentryIssue") if e["identifier"].startswith(f"{issue['id']}-")}
    assert set(kept) == entities, "the live issue's entities were deleted: the lookup covered none of its projects"
    assert {json.dumps(e["relations"].get("assignee")) for e in kept.values()} == {json.dumps(member["email"])}
    assert PERSONAL_TOKEN not in run.stdout + run.stderr


def _batch_changes(loop: Loop) -> Any:
    """One sensor tick and its webhook run, in process; the run's result."""
    tick = sentry_webhook_sensor(build_sensor_context(instance=loop.instance, cursor=loop.cursor))
    assert isinstance(tick, SensorResult) and tick.run_requests, tick
    [request] = tick.run_requests
    return sentry_webhook_sync.execute_in_process(run_config=request.run_config, instance=loop.instance,
                                                  resources=loop.resources, tags=request.tags, raise_on_error=False)


def _held(loop: Loop, issue: dict[str, Any]) -> set[str]:
    return {k for k in loop.snapshot() if k.startswith(f"sentryIssue/{issue['id']}-")}


def test_without_global_views_the_lookup_goes_per_project_and_a_gone_issue_still_leaves(
        make_loop: Callable[[str | None], Loop]) -> None:
    """`project=-1` over several projects is a 400 without `organizations:global-views`: the batch is looked up per
    project (the webhook names each issue's project), a live issue keeps its entities and a deleted one loses them."""
    loop = make_loop(None)
    data = loop.sentry.state.dataset
    loop.full_resync()
    unresolved = [i for i in data.issues if i["status"] == "unresolved"]
    live, deleted = unresolved[0], next(i for i in unresolved if i["project"]["id"] != unresolved[0]["project"]["id"])
    before = _held(loop, live)
    assert before and _held(loop, deleted)
    loop.sentry.state.config.global_views = False
    loop.deliver("issue", "assigned", {"issue": copy.deepcopy(live)})
    loop.deliver("issue", "ignored", {"issue": copy.deepcopy(deleted)})
    data.remove_issue(deleted["id"])
    assert _batch_changes(loop).success
    assert _held(loop, live) == before and not _held(loop, deleted)
    assert loop.sentry.state.stats(ISSUES).requests, "looked up by the issue list"


def test_an_issue_the_lookup_cannot_cover_is_never_deleted(make_loop: Callable[[str | None], Loop]) -> None:
    """A token whose user lost access to the issue's project (a member of a closed organization, on no team): the
    lookup covers nothing, the issue's own endpoint answers 403, and the batch fails with its events kept for a retry,
    deleting nothing; the single-issue endpoint confirms only what the lookup could not cover."""
    loop = make_loop(None)
    data = loop.sentry.state.dataset
    loop.full_resync()
    issue = next(i for i in data.issues if i["status"] == "unresolved")
    before = loop.snapshot()
    next(m for m in data.members if m["email"] == data.token_user)["orgRole"] = "member"
    loop.deliver("issue", "assigned", {"issue": copy.deepcopy(issue)})
    result = _batch_changes(loop)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.step_failure_data.error.to_string()
    assert "cannot see" in error and issue["project"]["slug"] in error, error
    assert loop.snapshot() == before and loop.inbox.count_pending() == 1
    assert loop.sentry.state.stats(SINGLE).requests == 1
