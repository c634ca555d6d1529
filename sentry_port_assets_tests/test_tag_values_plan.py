"""How `issue-tag` rows get their environment values: the fetch plan lists issues per environment when the mapping
provably reads nothing more of a tag value than an issue list gives (its name, value, key), per issue otherwise;
both ways give the same entities, on data where the cheap way could go wrong."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, materialize

from sentry_port_assets.assets.entities import entity_assets
from sentry_port_assets.assets.plan import FetchPlan
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.mapping.loader import load_mapping
from sentry_port_assets.mapping.reads import CannotTell, reads
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets.sentry.selection import IssueFilter
from sentry_port_assets_tests.conftest import RunningSentry, tag_values, write_mapping

TAG_ENDPOINT = "/organizations/{org}/issues/{issue}/tags/{key}/values/"


@pytest.mark.parametrize("expression, expected", [
    ('.id + "-" + .item.name', {("id",), ("item", "name")}),
    ('(.project.slug as $slug | .item | "\\($slug)-\\(.name)")', {("project", "slug"), ("item", "name")}),
    (".item | tojson", {("item",)}),
    ('.item["value"] | ascii_downcase', {("item", "value")}),
    ("if .item.count > 3 then .item.name else null end", {("item", "count"), ("item", "name")}),
    ("{a: .item}.a.name", {("item",)}),
    ("keys", {()}),
    ('select(.item.key == "environment") | .item.name // "none"', {("item", "key"), ("item", "name")}),
    (".__tags | map(.name)", {("__tags",), ("__tags", "name")}),
])
def test_reads_finds_what_an_expression_depends_on(expression: str, expected: set[tuple[str, ...]]) -> None:
    assert reads(expression) == expected


@pytest.mark.parametrize("expression", ["reduce .a as $x (0; . + 1)", "def f: .item; f", ".a |= 1",
                                        ".item as {name: $n} | $n", "getpath([\"item\", \"count\"])"])
def test_reads_says_when_it_cannot_tell(expression: str) -> None:
    with pytest.raises(CannotTell):
        reads(expression)


def _issue_tag(mapping: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in mapping["resources"] if r["kind"] == "issue-tag")


def plan_for(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> FetchPlan:
    return FetchPlan.of(load_mapping(write_mapping(tmp_path, edit)))


def test_the_default_mapping_lists_environments_and_says_why(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, lambda m: None)
    assert plan.environments_by_list == {IssueFilter("is:unresolved")}
    [choice] = plan.tag_values
    assert choice.how == "by-environment" and "key/name/value" in choice.why


@pytest.mark.parametrize("field, expression", [
    ("count", ".item.count"), ("firstSeen", ".item.firstSeen"), ("lastSeen", ".item.lastSeen"),
    ("whole", ".item | tojson"), ("row", "tojson"), ("tags", ".__tags | length"),
])
def test_a_mapping_reading_per_issue_fields_gets_per_issue_values(tmp_path: Path, field: str,
                                                                   expression: str) -> None:
    def reads_more(m: dict[str, Any]) -> None:
        _issue_tag(m)["port"]["entity"]["mappings"]["properties"][field] = expression

    plan = plan_for(tmp_path, reads_more)
    [choice] = plan.tag_values
    assert choice.how == "per-issue" and expression in choice.why and field in choice.why, choice
    assert not plan.environments_by_list


def test_items_to_parse_other_than_the_plain_list_and_set_options_are_respected(tmp_path: Path) -> None:
    def filtered(m: dict[str, Any]) -> None:
        _issue_tag(m)["port"]["itemsToParse"] = ".__tags | map(select(.count > 10))"

    [choice] = plan_for(tmp_path, filtered).tag_values
    assert choice.how == "per-issue" and "itemsToParse" in choice.why

    [choice] = plan_for(tmp_path, tag_values("per-issue")).tag_values
    assert (choice.how, choice.why) == ("per-issue", "tagValues: per-issue is set")

    def release_tag(m: dict[str, Any]) -> None:
        _issue_tag(m)["selector"]["tag"] = "release"

    [choice] = plan_for(tmp_path, release_tag).tag_values
    assert choice.how == "per-issue" and "environment tag" in choice.why


def test_one_resource_needing_per_issue_values_decides_for_its_query(tmp_path: Path) -> None:
    def two(m: dict[str, Any]) -> None:
        second = json.loads(json.dumps(_issue_tag(m)))
        second["port"]["entity"]["mappings"]["properties"]["events"] = ".item.count"
        m["resources"].append(second)

    plan = plan_for(tmp_path, two)
    assert [c.how for c in plan.tag_values] == ["per-issue", "per-issue"]
    assert "same sentryQuery" in plan.tag_values[0].why and not plan.environments_by_list


def _stale_environment_within(sentry: RunningSentry, days: int) -> tuple[dict[str, Any], str]:
    """An unresolved issue seen in the last `days` days with an environment last seen before them."""
    since = datetime.now(timezone.utc) - timedelta(days=days)
    for issue in sentry.state.dataset.issues:
        seen = datetime.fromisoformat(issue["lastSeen"].replace("Z", "+00:00"))
        if issue["status"] != "unresolved" or seen < since:
            continue
        for value in sentry.state.dataset.issue_tag_values[(issue["id"], "environment")]:
            if datetime.fromisoformat(value["lastSeen"].replace("Z", "+00:00")) < since:
                return issue, value["value"]
    raise AssertionError("the dataset has no issue with an environment seen only before the window")


def _entities(sentry: RunningSentry, mapping: str) -> tuple[list[str], dict[str, Any]]:
    resources = {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                          max_retries=1, backoff_seconds=0.01),
                 "mapping": MappingResource(path=mapping)}
    result = materialize([*raw_assets, *entity_assets], resources=resources)
    assert result.success
    [tags] = [m for m in result.get_asset_materialization_events() if m.asset_key == AssetKey(["sentry", "issue_tags"])]
    entities = sorted(json.dumps(e, sort_keys=True)
                      for e in result.asset_value(AssetKey(["port", "entities_issue_tag"])))
    return entities, {k: v.value for k, v in tags.materialization.metadata.items()}


@pytest.mark.parametrize("stats_period, sentry_query", [
    (None, None), ("14d", None), (None, ""), ("30d", "is:unresolved failure"),
])
def test_both_ways_give_the_same_entities(sentry_emulator: Callable[..., RunningSentry], tmp_path: Path,
                                          stats_period: str | None, sentry_query: str | None) -> None:
    dataset = lambda: build_org(issues=160, seed=11)  # noqa: E731 (one fresh copy per emulator)
    exact, listed = sentry_emulator(dataset()), sentry_emulator(dataset())

    def selector(how: str) -> Callable[[dict[str, Any]], None]:
        def edit(m: dict[str, Any]) -> None:
            tag_values(how)(m)
            for r in m["resources"]:
                if r["kind"] in ("issue", "issue-tag"):
                    if stats_period:
                        r["selector"]["statsPeriod"] = stats_period
                    if sentry_query is not None:
                        r["selector"]["sentryQuery"] = sentry_query
        return edit

    per_issue, _ = _entities(exact, write_mapping(tmp_path, selector("per-issue"), "per-issue.yaml"))
    chosen, meta = _entities(listed, write_mapping(tmp_path, selector("auto"), "auto.yaml"))
    assert "by-environment" in meta["tag_values"] and "key/name/value" in meta["tag_values"]
    assert TAG_ENDPOINT not in listed.state.endpoints and exact.state.endpoints[TAG_ENDPOINT].requests > 0
    assert len(per_issue) > 20 and chosen == per_issue


def test_an_environment_seen_before_a_short_window_still_counts(sentry_emulator: Callable[..., RunningSentry],
                                                                tmp_path: Path) -> None:
    """Sentry lists an issue under an environment only if it was seen there within the list's window; its tag values
    cover the whole retention. An issue list per environment over the resource's 14 days would lose `stale`."""
    sentry = sentry_emulator(build_org(issues=160, seed=11))
    issue, stale = _stale_environment_within(sentry, 14)
    project = issue["project"]

    async def listed(period: str) -> set[str]:
        async with SentryClient(sentry.url, sentry.organization, sentry.token) as client:
            return {i["id"] for i in await client.list_issues(project, "is:unresolved", period, environment=stale)}

    assert issue["id"] not in asyncio.run(listed("14d")), "the emulator models Sentry's window"
    assert issue["id"] in asyncio.run(listed("90d"))

    def fourteen_days(m: dict[str, Any]) -> None:
        for r in m["resources"]:
            if r["kind"] in ("issue", "issue-tag"):
                r["selector"]["statsPeriod"] = "14d"

    entities, _ = _entities(sentry, write_mapping(tmp_path, fourteen_days))
    assert any(json.loads(e)["identifier"] == f"{issue['id']}-{stale}" for e in entities)


def test_tag_values_are_kept_for_the_retention_only(sentry_emulator: Callable[..., RunningSentry]) -> None:
    """Sentry's tag store reads an issue's events within the organization's retention (90 days)."""
    sentry = sentry_emulator(build_org(issues=20, seed=11))
    issue = sentry.state.dataset.issues[3]
    values = sentry.state.dataset.issue_tag_values[(issue["id"], "environment")]
    old = (datetime.now(timezone.utc) - timedelta(days=120)).isoformat()
    values.append({**values[0], "value": "legacy", "name": "legacy", "firstSeen": old, "lastSeen": old})

    async def read() -> list[str]:
        async with SentryClient(sentry.url, sentry.organization, sentry.token) as client:
            return [v["value"] for v in await client.list_issue_tag_values(issue["id"], "environment")]

    assert "legacy" not in asyncio.run(read()) and asyncio.run(read())


def test_jq_nested_past_the_recursion_limit_is_cannot_tell_not_a_crash() -> None:
    with pytest.raises(CannotTell):
        reads("(" * 5000 + ".item.name" + ")" * 5000)
