"""The raw Sentry assets, materialized by Dagster against the emulator over loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterInstance, materialize

from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.emulators.sentry_api import Fault
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.client import SentryClient, progress_reporter
from sentry_port_assets.resources.demo import DEMO_WARNING, DemoSentryResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets.sentry.selection import IssueFilter
from sentry_port_assets_tests.conftest import RunningSentry, tag_values, write_mapping

UNRESOLVED = IssueFilter("is:unresolved").key


def resources(sentry: RunningSentry | None, mapping_path: str | None = None) -> dict[str, Any]:
    if sentry is None:
        sentry_resource = DemoSentryResource()
    else:
        sentry_resource = SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                         backoff_seconds=0.01, max_retries=2)
    return {"sentry": sentry_resource, "mapping": MappingResource(path=mapping_path)}


def value(result: Any, *key: str) -> Any:
    return result.asset_value(AssetKey(list(key)))


def metadata(result: Any, *key: str) -> dict[str, Any]:
    [mat] = [m for m in result.get_asset_materialization_events()
             if m.asset_key == AssetKey(list(key))]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def test_default_mapping_fetches_every_kind_it_needs(sentry_emulator: Callable[..., RunningSentry],
                                                     tmp_path: Path) -> None:
    sentry = sentry_emulator()
    dataset = sentry.state.dataset
    result = materialize(raw_assets, resources=resources(sentry, write_mapping(tmp_path, tag_values("per-issue"))))
    assert result.success

    assert len(value(result, "sentry", "members")) == len(dataset.members)
    teams = value(result, "sentry", "teams")
    assert {t["slug"]: len(t["__members"]) for t in teams} == {k: len(v) for k, v in dataset.team_members.items()}
    projects = value(result, "sentry", "projects")
    assert {p["organization"]["slug"] for p in projects} == {"test-org"}

    project_tags = value(result, "sentry", "project_tags")
    expected_rows = sum(len(v) for (slug, key), v in dataset.project_tag_values.items() if key == "environment")
    assert len(project_tags["environment"]) == expected_rows
    assert all(isinstance(row["__tags"], dict) and row["__tags"]["key"] == "environment"
               for row in project_tags["environment"])

    issues = value(result, "sentry", "issues")
    assert list(issues) == [UNRESOLVED]
    assert {i["status"] for i in issues[UNRESOLVED]} == {"unresolved"}
    issue_tags = value(result, "sentry", "issue_tags")[UNRESOLVED]["environment"]
    assert [row["id"] for row in issue_tags] == [i["id"] for i in issues[UNRESOLVED]]
    assert all(row["__tags"] == dataset.issue_tag_values[(row["id"], "environment")] for row in issue_tags)

    meta = metadata(result, "sentry", "issue_tags")
    assert meta["dagster/row_count"] == len(issue_tags) and "items" not in meta
    assert meta["requests"] == len(issue_tags)
    assert {"pages", "http_429", "retries", "seconds", "rate_limit_wait_seconds", "preview"} <= set(meta)
    assert len(projects) == len(dataset.org_projects())


def test_only_what_the_mapping_needs_is_fetched(sentry_emulator: Callable[..., RunningSentry],
                                               tmp_path: Path) -> None:
    sentry = sentry_emulator()
    path = write_mapping(tmp_path, lambda m: m.update(
        resources=[r for r in m["resources"] if r["kind"] in ("user", "team")]))
    result = materialize(raw_assets, resources=resources(sentry, path))
    assert result.success
    touched = set(sentry.state.endpoints)
    assert touched == {"/organizations/{org}/members/", "/organizations/{org}/teams/",
                       "/teams/{org}/{team}/members/"}
    assert value(result, "sentry", "issues") == {}
    assert "no mapping resource of kind issue" in metadata(result, "sentry", "issues")["skipped"]


def test_an_empty_sentry_query_syncs_every_status(sentry_emulator: Callable[..., RunningSentry],
                                                  tmp_path: Path) -> None:
    sentry = sentry_emulator()

    def every_status(m: dict[str, Any]) -> None:
        for r in m["resources"]:
            if r["kind"] == "issue-tag":
                r["selector"]["sentryQuery"] = ""

    result = materialize(raw_assets, resources=resources(sentry, write_mapping(tmp_path, every_status)))
    issues = value(result, "sentry", "issues")[IssueFilter("").key]
    assert {i["status"] for i in issues} == {"unresolved", "resolved", "ignored"}
    assert len(issues) == len(sentry.state.dataset.issues)


def test_a_bad_mapping_fails_before_any_sentry_request(sentry_emulator: Callable[..., RunningSentry],
                                                        tmp_path: Path) -> None:
    sentry = sentry_emulator()
    path = write_mapping(tmp_path, lambda m: m["resources"][0]["selector"].update(query=".user |||"))
    result = materialize(raw_assets, resources=resources(sentry, path), raise_on_error=False)
    assert not result.success
    assert sentry.state.total_requests == 0


def test_a_missing_scope_fails_the_asset_instead_of_returning_nothing(
        sentry_emulator: Callable[..., RunningSentry], tmp_path: Path) -> None:
    sentry = sentry_emulator(faults=[Fault("403", endpoint="/organizations/{org}/issues/{issue}/tags/{key}/values/",
                                           times=None)])
    result = materialize(raw_assets, resources=resources(sentry, write_mapping(tmp_path, tag_values("per-issue"))),
                         raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "sentry__issue_tags"
    assert "event:read" in str(failure.event_specific_data.error.cause or failure.event_specific_data.error)
    assert not any(m.asset_key == AssetKey(["sentry", "issue_tags"]) for m in result.get_asset_materialization_events())


def test_a_failed_organization_fetch_fails_its_step_and_keeps_the_others_recorded(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(faults=[Fault("403", endpoint="/organizations/{org}/members/", times=None)])
    result = materialize(raw_assets, resources=resources(sentry), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "sentry_organization"
    assert "member:read" in str(failure.event_specific_data.error)
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert materialized == {"sentry/teams", "sentry/projects", "sentry/monitors"}, "nothing downstream runs on a gap"


def test_demo_organization_is_the_embedded_default() -> None:
    instance = DagsterInstance.ephemeral()
    result = materialize(raw_assets, resources=resources(None), instance=instance)
    assert result.success
    assert any(m["email"] == "developer@getport.io" for m in value(result, "sentry", "members"))
    assert metadata(result, "sentry", "members")["source"] == "demo organization"
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert DEMO_WARNING in warnings


def test_long_fetches_report_progress(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(latency_seconds=0.05)
    lines: list[str] = []

    async def go() -> None:
        async with SentryClient(sentry.url, sentry.organization, sentry.token) as client:
            async with progress_reporter(lines.append, "issue tags", client, interval=0.05):
                for issue in sentry.state.dataset.issues[:8]:
                    await client.list_issue_tag_values(issue["id"], "environment")

    asyncio.run(go())
    assert lines, "no progress line"
    assert "issue tags:" in lines[-1] and "requests" in lines[-1] and "waiting for rate limits" in lines[-1]


