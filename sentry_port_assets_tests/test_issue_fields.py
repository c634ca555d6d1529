"""The issue lists keep only the fields the mapping reads (a Sentry issue is ~6 KB in memory, mostly `stats` and
`lifetime`): the entities are the same as from whole issues, and a mapping that reads more keeps more."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentry_port_assets.assets.plan import ISSUE_FIELDS_USED, FetchPlan, map_kind
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.loader import load_mapping
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags, fetch_issues
from sentry_port_assets_tests.conftest import RunningSentry, write_mapping

ISSUE_RESOURCE = {"kind": "issue", "selector": {"query": "true", "sentryQuery": ""}, "port": {"entity": {"mappings": {
    "identifier": ".id", "title": ".title", "blueprint": '"sentryIssue"',
    "properties": {"link": ".permalink", "culprit": ".culprit", "kind": ".metadata.type",
                   "events": "(.lifetime.count // .count) | tonumber"}}}}}


def with_issue_resource(m: dict[str, Any]) -> None:
    m["resources"].append(json.loads(json.dumps(ISSUE_RESOURCE)))


def plan_for(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> FetchPlan:
    return FetchPlan.of(load_mapping(write_mapping(tmp_path, edit)))


def test_the_default_mapping_keeps_what_it_reads_and_what_the_sync_needs(tmp_path: Path) -> None:
    fields = plan_for(tmp_path, lambda m: None).issue_fields
    assert fields is not None and ISSUE_FIELDS_USED <= set(fields)
    assert {"title", "permalink", "isUnhandled", "assignedTo"} <= set(fields)
    assert not {"stats", "lifetime", "metadata", "culprit"} & set(fields)

    fields = plan_for(tmp_path, with_issue_resource).issue_fields
    assert fields is not None and {"lifetime", "metadata", "culprit"} <= set(fields)


@pytest.mark.parametrize("expression", [". | tojson", "keys | length", "reduce .a as $x (0; . + 1)"])
def test_a_mapping_reading_the_whole_issue_keeps_every_field(tmp_path: Path, expression: str) -> None:
    def whole(m: dict[str, Any]) -> None:
        with_issue_resource(m)
        m["resources"][-1]["port"]["entity"]["mappings"]["properties"]["raw"] = expression

    assert plan_for(tmp_path, whole).issue_fields is None


def _entities(sentry: RunningSentry, mapping: CompiledMapping, fields: tuple[str, ...] | None) -> dict[str, list[str]]:
    plan = FetchPlan.of(mapping)

    async def fetch() -> tuple[dict[str, Any], dict[str, Any]]:
        async with SentryClient(sentry.url, sentry.organization, sentry.token) as client:
            projects = await client.list_projects()
            issues = await fetch_issues(client, projects, plan.issue_filters, fields)
            tags = await fetch_issue_tags(client, issues, plan.issue_tag_keys, Vanished(), plan.environments_by_list)
            return issues, tags

    issues, tags = asyncio.run(fetch())
    if fields is not None:
        assert all(set(i) <= set(fields) for listed in issues.values() for i in listed)
    return {kind: sorted(json.dumps(e, sort_keys=True) for e in map_kind(mapping, kind, raw).entities)
            for kind, raw in (("issue", issues), ("issue-tag", tags))}


def test_trimmed_issues_map_to_the_same_entities(sentry_emulator: Callable[..., RunningSentry],
                                                 tmp_path: Path) -> None:
    sentry = sentry_emulator(build_org(issues=120, seed=5))
    mapping = load_mapping(write_mapping(tmp_path, with_issue_resource))
    fields = FetchPlan.of(mapping).issue_fields
    assert fields is not None and "stats" not in fields
    trimmed, whole = _entities(sentry, mapping, fields), _entities(sentry, mapping, None)
    assert trimmed == whole and len(trimmed["issue"]) > 50 and len(trimmed["issue-tag"]) > 50


def test_equal_relation_values_are_one_object_in_memory() -> None:
    """300,000 issue entities would otherwise hold 300,000 copies of a few dozen assignee rules."""
    [resource] = [c for c in load_mapping(None).resources if c.kind == "issue-tag"]
    rows = [{"id": str(n), "title": "t", "permalink": "p", "status": "unresolved", "isUnhandled": True,
             "project": {"slug": "web"}, "assignedTo": {"email": f"dev{n % 2}@example.com"},
             "__tags": [{"key": "environment", "name": "production", "value": "production"}]} for n in range(300)]
    entities = resource.map(rows, workers=1).entities
    assignees = {id(e["relations"]["assignee"]) for e in entities}
    assert len(entities) == 300 and len(assignees) == 2
    assert {e["relations"]["assignee"]["rules"][0]["value"] for e in entities} == {"dev0@example.com",
                                                                                    "dev1@example.com"}
