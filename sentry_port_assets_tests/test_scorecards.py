"""Port's scorecards: what Port's API accepts, how an entity's level is reached (Port's docs: scorecards/concepts-
and-structure), ensuring the bundled "Sentry health" scorecard over HTTP like Ocean's `create_scorecard`, and its
levels on the bundled blueprints as the local catalog and the Port emulator compute them."""

from __future__ import annotations

import asyncio
import copy
import io
from argparse import Namespace
from typing import Any

import httpx
import pytest

from sentry_port_assets.cli.catalog import run_catalog
from sentry_port_assets.mapping.blueprints import load_default_scorecards, owned_blueprints
from sentry_port_assets.port.catalog import CatalogError, LocalCatalog
from sentry_port_assets.port.scorecards import evaluate, problem
from sentry_port_assets_tests import port_fixtures as fx

[HEALTH] = load_default_scorecards()[0]["data"]


def project(ident: str, **properties: Any) -> dict[str, Any]:
    return {"identifier": ident, "properties": properties, "relations": {"team": ["platform-team"]}}


def levels(entity: dict[str, Any]) -> tuple[str, set[str]]:
    result = evaluate(HEALTH, entity)
    return result["level"], {r["identifier"] for r in result["rules"] if r["status"] == "FAILURE"}


def test_an_entity_reaches_the_highest_level_whose_rules_pass_with_every_lower_levels() -> None:
    healthy = dict(alertRules=2, unhandledInProduction=0, failingMonitors=0, crashFreeSessions24h=99.8,
                   repositories=["acme/api"])
    assert levels(project("a", **healthy)) == ("Gold", set())
    assert levels(project("b", **{**healthy, "crashFreeSessions24h": 99.4})) == ("Silver", {"crashFree"})
    # no session data: the comparison has nothing to compare, and fails
    assert levels(project("c", **{**healthy, "crashFreeSessions24h": None})) == ("Silver", {"crashFree"})
    # Gold's rules all pass, but a Silver rule fails: Bronze, not Gold
    assert levels(project("d", **{**healthy, "failingMonitors": 1})) == ("Bronze", {"monitorsOk"})
    no_team = {**project("e", **healthy), "relations": {"team": []}}
    assert levels(no_team) == ("Basic", {"hasOwningTeam"}), "a relation's condition"


@pytest.mark.parametrize("change, says", [
    (lambda s: s["rules"][0].update(level="Basic"), "the first level, 'Basic', has no rules"),
    (lambda s: s["rules"][0].update(level="Platinum"), "names level 'Platinum'"),
    (lambda s: s["rules"][1]["query"]["conditions"][0].update(operator="relatedTo"), "operator 'relatedTo'"),
    (lambda s: s["rules"][0].update(identifier="has owner"), "needs an identifier"),
    (lambda s: s["levels"][0].update(color="teal"), "one of Port's colors"),
])
def test_port_refuses_malformed_scorecards(change: Any, says: str) -> None:
    scorecard = copy.deepcopy(HEALTH)
    assert problem(scorecard) is None
    change(scorecard)
    assert says in (problem(scorecard) or "")


@pytest.fixture
def catalog(tmp_path: Any) -> Any:
    cat = LocalCatalog(tmp_path / "port.sqlite")
    bundled = [b for b in owned_blueprints() if b["identifier"] != "sentryComment"]
    late = ("relations", "aggregationProperties", "mirrorProperties")
    for bp in bundled:
        cat.create_blueprint({k: v for k, v in bp.items() if k not in late})
    for bp in bundled:
        cat.patch_blueprint(bp["identifier"], {k: bp[k] for k in late if bp.get(k)})
    cat.upsert_entities("sentryTeam", [{"identifier": "platform-team", "properties": {}}])
    cat.upsert_entities("sentryProject", [
        {"identifier": "api", "properties": {"crashFreeSessions24h": 99.9, "repositories": ["acme/api"]},
         "relations": {"team": ["platform-team"]}},
        {"identifier": "web", "properties": {"crashFreeSessions24h": 99.9, "repositories": ["acme/web"]},
         "relations": {"team": ["platform-team"]}}])
    cat.upsert_entities("sentryProjectEnvironment", [
        {"identifier": f"{p}-production", "properties": {}, "relations": {"project": p}} for p in ("api", "web")])
    cat.upsert_entities("sentryAlertRule", [{"identifier": "issue-1", "properties": {"enabled": True},
                                             "relations": {"projects": ["api", "web"]}}])
    cat.upsert_entities("sentryMonitor", [{"identifier": "m1", "properties": {"health": "error"},
                                           "relations": {"project": "web"}}])
    cat.upsert_entities("sentryIssue", [
        {"identifier": "7-production", "properties": {"status": "unresolved", "isUnhandled": True},
         "relations": {"projectEnvironment": "web-production"}}])
    yield cat
    cat.close()


def test_the_bundled_scorecard_is_ensured_over_http_once_and_evaluated_on_search(catalog: Any) -> None:
    with fx.serve_port(catalog) as (url, state):
        async def ensure_twice() -> tuple[Any, Any]:
            async with fx.client(url) as client:
                return (await client.ensure_scorecards(load_default_scorecards()),
                        await client.ensure_scorecards(load_default_scorecards()))

        first, second = asyncio.run(ensure_twice())
        assert first == (["sentryProject/sentryHealth"], []) and second == ([], ["sentryProject/sentryHealth"])
        assert state.stats.requests["scorecard_create"] == 1, "an existing scorecard is left as it is"

        async def search() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=url) as http:
                token = (await http.post("/v1/auth/access_token", json={
                    "clientId": fx.CLIENT_ID, "clientSecret": fx.CLIENT_SECRET})).json()["accessToken"]
                auth = {"Authorization": f"Bearer {token}"}
                again = await http.post("/v1/blueprints/sentryProject/scorecards", json=HEALTH, headers=auth)
                assert again.status_code == 409
                found = await http.post("/v1/blueprints/sentryProject/entities/search", json={"limit": 10},
                                        headers=auth)
                return {e["identifier"]: e["scorecards"]["sentryHealth"] for e in found.json()["entities"]}

        results = asyncio.run(search())
    assert results["api"]["level"] == "Gold"
    # web: an unhandled issue in production and a failing monitor (both over relations, as Port aggregates them)
    assert results["web"]["level"] == "Bronze"
    assert {r["identifier"] for r in results["web"]["rules"] if r["status"] == "FAILURE"} == {
        "noUnhandledInProduction", "monitorsOk"}

    out = io.StringIO()
    run_catalog(Namespace(path=str(catalog.path), blueprint="sentryProject", json=False, wide=True), out=out)
    assert ("scorecard Sentry health: Bronze (4 of 6 rules pass; failing: noUnhandledInProduction, monitorsOk)"
            in out.getvalue())
    out = io.StringIO()
    run_catalog(Namespace(path=str(catalog.path), blueprint=None, json=False, wide=True), out=out)
    assert "scorecard 'Sentry health' on sentryProject: Basic 0, Bronze 1, Silver 0, Gold 1" in out.getvalue()


def test_a_scorecard_on_a_missing_blueprint_is_a_404(catalog: Any) -> None:
    with pytest.raises(CatalogError) as info:
        catalog.create_scorecard("service", HEALTH)
    assert info.value.status == 404
