"""Cron monitors and alert rules: Sentry's endpoints as the emulator serves them (getsentry/sentry:
monitors/endpoints/organization_monitor_index.py, workflow_engine/endpoints/organization_workflow_index.py and
organization_detector_index.py, the deprecated project_rules.py and organization_alert_rule_index.py), the raw assets
`sentry/monitors` and `sentry/alert_rules` reading them (with the fallback to the deprecated endpoints), and the
entities the default mapping makes of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from sentry_port_assets.assets.entities import ENTITY_ASSET_KEYS, entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests.conftest import RunningSentry

MONITORS, RULES = AssetKey(["sentry", "monitors"]), AssetKey(["sentry", "alert_rules"])


def get(sentry: RunningSentry, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{sentry.url}/api/0/{path}", params=params, headers={"Authorization": f"Bearer {sentry.token}"})


def requests(sentry: RunningSentry, endpoint: str) -> int:
    stats = sentry.state.endpoints.get(endpoint)
    return stats.requests if stats else 0


def resync(sentry: RunningSentry, *kinds: str) -> Any:
    resources = {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                          max_retries=1, backoff_seconds=0.01),
                 "mapping": MappingResource()}
    selection = [AssetKey(["sentry", "projects"]), MONITORS, RULES, *(ENTITY_ASSET_KEYS[k] for k in kinds)]
    return materialize([*raw_assets, *entity_assets], resources=resources, instance=DagsterInstance.ephemeral(),
                       selection=selection, raise_on_error=False)


def metadata(result: Any, key: AssetKey) -> dict[str, Any]:
    [event] = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def test_the_monitor_list_covers_the_callers_teams_unless_asked_for_every_project(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    org = sentry.organization
    # the demo token's user is on no team: without project=-1 Sentry lists none of the organization's monitors
    assert get(sentry, f"organizations/{org}/monitors/").json() == []
    listed = get(sentry, f"organizations/{org}/monitors/", project=-1).json()
    assert len(listed) == 3 and isinstance(listed[0]["environments"], list)
    assert "error" in [e["status"] for e in listed[0]["environments"]], "sort=status: a failing monitor first"
    assert get(sentry, f"organizations/{org}/detectors/").json() == []
    assert len(get(sentry, f"organizations/{org}/detectors/", project=-1, query="type:cron").json()) == 3
    workflows = get(sentry, f"organizations/{org}/workflows/")
    assert workflows.headers["X-Hits"] == "6", "the workflow list covers every accessible project by default"
    assert get(sentry, f"organizations/{org}/alert-rules/", project=-1).headers["X-Hits"] == "1"


def test_monitors_and_alerts_reach_their_entities_and_the_projects(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    result = resync(sentry, "monitor", "alert-rule")
    assert result.success
    monitors = {m["slug"]: m for m in result.asset_value(MONITORS)}
    assert {slug: m["__health"] for slug, m in monitors.items()} == {
        "python-fastapi-nightly-cleanup": "ok", "admin-service-heartbeat": "error",
        "oauth-service-nightly-cleanup": "disabled"}
    entities = {e["identifier"]: e for e in result.asset_value(ENTITY_ASSET_KEYS["monitor"])}
    failing = entities[monitors["admin-service-heartbeat"]["id"]]
    assert failing["properties"]["schedule"] == "every 30 minute(s)"
    assert failing["properties"]["scheduleType"] == "interval" and failing["properties"]["health"] == "error"
    assert "error" in failing["properties"]["environmentStatus"].values()
    assert failing["relations"] == {"project": "admin-service", "ownerTeam": None,
                                    "ownerUser": monitors["admin-service-heartbeat"]["owner"]["email"]}
    nightly = entities[monitors["python-fastapi-nightly-cleanup"]["id"]]
    assert nightly["relations"]["ownerTeam"] == "platform-team" and nightly["properties"]["schedule"] == "0 3 * * *"

    assert metadata(result, RULES)["read_from"] == "read from /organizations/{org}/workflows/ and /detectors/"
    rules = {e["identifier"]: e for e in result.asset_value(ENTITY_ASSET_KEYS["alert-rule"])}
    assert {i.split("-")[0] for i in rules} == {"issue", "metric", "uptime", "cron"}
    cron = next(e for i, e in rules.items() if i.startswith("cron-"))
    assert cron["relations"]["projects"] == ["python-fastapi", "admin-service", "oauth-service"]
    assert all(e["properties"]["source"] == "workflows" for e in rules.values())


@pytest.mark.parametrize("incidents", [True, False])
def test_older_installs_are_read_from_the_deprecated_alert_rule_endpoints(
        sentry_emulator: Callable[..., RunningSentry], incidents: bool) -> None:
    sentry = sentry_emulator(workflow_engine=False, incidents=incidents)
    assert get(sentry, f"organizations/{sentry.organization}/workflows/").status_code == 404
    result = resync(sentry, "alert-rule")
    assert result.success
    note = metadata(result, RULES)["read_from"]
    assert "Sentry has no /workflows/ here (404)" in note
    assert ("metric alerts read" in note) == incidents
    assert ("lacks organizations:incidents" in note) == (not incidents)
    rules = {e["identifier"]: e for e in result.asset_value(ENTITY_ASSET_KEYS["alert-rule"])}
    issue = sorted(i for i in rules if i.startswith("issue-"))
    assert len(issue) == 3 and [i for i in rules if i.startswith("metric-")] == (["metric-44"] if incidents else [])
    first = rules[issue[0]]
    assert first["properties"]["owner"] == "platform-team", "the rule's 'team:<id>' named by the team's slug"
    assert first["properties"]["lastTriggered"] is not None, "asked with expand=lastTriggered"
    assert first["relations"]["projects"] == ["python-fastapi"] and first["properties"]["source"] == "rules"
    assert requests(sentry, "/projects/{org}/{project}/rules/") == 5, "one list per project"


@pytest.mark.parametrize("scopes, works", [({"alerts:read", "project:read"}, True), ({"project:read"}, False)])
def test_the_alert_endpoints_take_org_read_or_alerts_read(
        sentry_emulator: Callable[..., RunningSentry], scopes: set[str], works: bool) -> None:
    sentry = sentry_emulator(scopes=frozenset(scopes | {"org:ci"}))
    org = sentry.organization
    assert (get(sentry, f"organizations/{org}/monitors/", project=-1).status_code == 200) == works
    assert (get(sentry, f"organizations/{org}/workflows/").status_code == 200) == works
    assert get(sentry, f"projects/{org}/python-fastapi/rules/").status_code == 200, "project:read suffices"
    if not works:
        result = resync(sentry, "monitor")
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        # without org:read even the project list is refused: the message names the scope to add
        assert "(403): it needs the scope org:read" in failure.event_specific_data.error.to_string()
