"""A project's error volume, crash-free rates, owners and repositories: Sentry's endpoints as the emulator serves
them (getsentry/sentry: organization_stats_v2.py, organization_sessions.py, project_ownership.py, the code-mapping
and repository endpoints), and `sentry/project_details` reading them with what it keeps between resyncs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from sentry_port_assets.assets.entities import ENTITY_ASSET_KEYS, entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.emulators.sentry_api import SENTRY_LIMITS, RateLimit
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests.conftest import RunningSentry

DETAILS = AssetKey(["sentry", "project_details"])
STATS, SESSIONS = "/organizations/{org}/stats_v2/", "/organizations/{org}/sessions/"
OWNERSHIP, MAPPINGS, REPOS = ("/projects/{org}/{project}/ownership/", "/organizations/{org}/code-mappings/",
                              "/organizations/{org}/repos/")


def get(sentry: RunningSentry, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{sentry.url}/api/0/{path}", params=params, headers={"Authorization": f"Bearer {sentry.token}"})


def requests(sentry: RunningSentry, endpoint: str) -> int:
    stats = sentry.state.endpoints.get(endpoint)
    return stats.requests if stats else 0


class Resync:
    def __init__(self, sentry: RunningSentry, instance: DagsterInstance) -> None:
        resources = {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                              max_retries=1, backoff_seconds=0.01),
                     "mapping": MappingResource()}
        selection = [AssetKey(["sentry", "projects"]), DETAILS, ENTITY_ASSET_KEYS["project"]]
        self.result = materialize([*raw_assets, *entity_assets], resources=resources, instance=instance,
                                  selection=selection)
        assert self.result.success
        self.projects = {p["slug"]: p for p in self.result.asset_value(DETAILS)}
        [event] = [m for m in self.result.get_asset_materialization_events() if m.asset_key == DETAILS]
        self.summary = event.materialization.metadata["incremental"].value
        self.entities = self.result.asset_value(ENTITY_ASSET_KEYS["project"])


def test_the_organization_endpoints_cover_the_callers_teams_unless_asked_for_every_project(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    org = sentry.organization
    stats = dict(field="sum(quantity)", groupBy=["project", "outcome"], category="error", statsPeriod="24h")
    # the demo token's user is on no team: grouped by project, Sentry has no project to count
    refused = get(sentry, f"organizations/{org}/stats_v2/", **stats)
    assert refused.status_code == 400 and refused.json() == {"detail": "No projects available"}
    groups = get(sentry, f"organizations/{org}/stats_v2/", project=-1, **stats).json()["groups"]
    assert {g["by"]["outcome"] for g in groups} >= {"accepted", "filtered"} and all("series" not in g for g in groups)
    assert get(sentry, f"organizations/{org}/code-mappings/").json() == []
    assert len(get(sentry, f"organizations/{org}/code-mappings/", project=-1).json()) == 4
    sessions = get(sentry, f"organizations/{org}/sessions/", project=-1, groupBy="project", statsPeriod="24h",
                   includeSeries=0, field=["crash_free_rate(session)", "crash_free_rate(user)"]).json()
    assert len(sessions["groups"]) == 2 and all(0 < g["totals"]["crash_free_rate(session)"] <= 1
                                                for g in sessions["groups"])
    assert SENTRY_LIMITS["user"][STATS] == SENTRY_LIMITS["org"][STATS] == RateLimit(20, 1)


def test_health_owners_and_repositories_reach_the_project_entities(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    run = Resync(sentry, DagsterInstance.ephemeral())
    first, second, quiet = (data.org_projects()[i]["slug"] for i in (0, 1, -1))
    assert requests(sentry, STATS) == 2 and requests(sentry, SESSIONS) == 1, "two windows and one sessions request"
    assert run.projects[first]["__stats"] == {
        "errors24h": data.health.outcomes[data.org_projects()[0]["id"]]["accepted"][-1],
        "errors7d": sum(data.health.outcomes[data.org_projects()[0]["id"]]["accepted"][-7:]),
        "dropped24h": data.health.outcomes[data.org_projects()[0]["id"]]["filtered"][-1]}
    assert run.projects[second]["__sessions"] == {"crashFreeSessions24h": 99.21, "crashFreeUsers24h": 99.54}
    assert run.projects[quiet]["__sessions"] == {"crashFreeSessions24h": None, "crashFreeUsers24h": None}
    assert run.projects[quiet]["__stats"]["errors24h"] == 0 and run.projects[quiet]["__repositories"] == []
    assert run.projects[first]["__ownership"]["teams"] == ["platform-team"]
    assert run.projects[second]["__ownership"] == {"teams": [], "users": [], "rules": [], "raw": None}
    assert run.projects[first]["__repositories"][0]["name"] == f"test-org/{first}"
    merged: dict[str, dict[str, Any]] = {}
    for entity in run.entities:
        into = merged.setdefault(entity["identifier"], {"properties": {}, "relations": {}})
        into["properties"].update(entity["properties"])
        into["relations"].update(entity["relations"])
    assert merged[first]["relations"]["team"] == ["platform-team"], "the ownership rules' team"
    assert merged[second]["relations"]["team"] == sorted(t["slug"] for t in data.org_projects()[1]["teams"]), \
        "no rules: the project's teams"
    assert merged[second]["properties"]["crashFreeSessions24h"] == 99.21
    assert merged[first]["properties"]["repositories"] == [f"test-org/{first}"]


def test_a_second_resync_reads_no_ownership_or_code_mapping_unless_a_project_moved(
        sentry_emulator: Callable[..., RunningSentry], monkeypatch: pytest.MonkeyPatch) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    kept = DagsterInstance.ephemeral()
    first = Resync(sentry, kept)
    assert "ownership: 0 reused, 5 read; code mappings read" in first.summary
    before = {e: requests(sentry, e) for e in (OWNERSHIP, MAPPINGS, REPOS, STATS)}
    again = Resync(sentry, kept)
    assert {e: requests(sentry, e) - n for e, n in before.items()} == {OWNERSHIP: 0, MAPPINGS: 0, REPOS: 0, STATS: 2}
    assert again.projects == first.projects
    # a project renamed (its slug moved): its rules and the code mappings are read again, the others reused
    renamed = data.projects[2]
    old = renamed["slug"]
    data.health.ownership["renamed-service"] = data.health.ownership.pop(old)
    renamed.update(slug="renamed-service")
    before = {e: requests(sentry, e) for e in (OWNERSHIP, MAPPINGS)}
    moved = Resync(sentry, kept)
    assert {e: requests(sentry, e) - n for e, n in before.items()} == {OWNERSHIP: 1, MAPPINGS: 1}
    assert "ownership: 4 reused, 1 read; code mappings read" in moved.summary
    monkeypatch.setenv("SENTRY_PORT_FULL_REFRESH_HOURS", "0.0000001")
    before = requests(sentry, OWNERSHIP)
    full = Resync(sentry, kept)
    assert requests(sentry, OWNERSHIP) - before == 5 and "full read" in full.summary
