"""Port's aggregation properties, as the local catalog and the Port emulator compute them (Port's docs:
setup-blueprint/properties/aggregation-property; the blueprint schema of Port's API spec), on the bundled
blueprints: deployment frequency and last deploy per environment, unresolved issues per project."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from sentry_port_assets.mapping.blueprints import owned_blueprints
from sentry_port_assets.port.catalog import CatalogError, LocalCatalog
from sentry_port_assets_tests import port_fixtures as fx


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def deploy(ident: str, env: str, finished: datetime, project: str = "api") -> dict[str, Any]:
    return {"identifier": ident, "title": ident, "properties": {
        "environment": env, "dateFinished": iso(finished), "finishedAt": finished.timestamp()},
        "relations": {"release": None, "project": [project], "projectEnvironment": [f"{project}-{env}"]}}


@pytest.fixture
def catalog(tmp_path: Any) -> Any:
    cat = LocalCatalog(tmp_path / "catalog.sqlite")
    bundled = [b for b in owned_blueprints() if b["identifier"] != "sentryComment"]
    for bp in bundled:
        cat.create_blueprint({k: v for k, v in bp.items() if k not in ("relations", "aggregationProperties")})
    for bp in bundled:
        cat.patch_blueprint(bp["identifier"], {k: bp[k] for k in ("relations", "aggregationProperties") if bp.get(k)})
    now = datetime.now(timezone.utc)
    cat.upsert_entities("sentryProject", [{"identifier": p, "properties": {}} for p in ("api", "web")])
    cat.upsert_entities("sentryProjectEnvironment", [
        {"identifier": f"{p}-{e}", "properties": {}, "relations": {"project": p}}
        for p in ("api", "web") for e in ("production", "staging")])
    cat.upsert_entities("sentryDeploy", [
        deploy("1", "production", now - timedelta(days=40)),  # outside the last 30 days
        deploy("2", "production", now - timedelta(days=20)),
        deploy("3", "production", now - timedelta(days=2)),
        deploy("4", "staging", now - timedelta(days=1)),
        deploy("5", "production", now - timedelta(days=3), project="web")])
    cat.upsert_entities("sentryIssue", [
        {"identifier": f"{n}-{env}", "properties": {"status": status},
         "relations": {"projectEnvironment": f"{project}-{env}"}}
        for n, (project, env, status) in enumerate([("api", "production", "unresolved"), ("api", "staging", "unresolved"),
                                                     ("api", "production", "resolved"), ("web", "staging", "unresolved")])])
    yield cat
    cat.close()


def by_id(entities: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["identifier"]: e["properties"] for e in entities}


def test_deploys_per_environment_in_the_last_30_days_and_the_last_one(catalog: Any) -> None:
    envs = by_id(catalog.search("sentryProjectEnvironment")[0])
    assert envs["api-production"]["deploysLast30Days"] == 2
    assert envs["api-staging"]["deploysLast30Days"] == 1
    assert envs["web-production"]["deploysLast30Days"] == 1
    assert envs["web-staging"]["deploysLast30Days"] == 0
    newest = max(d["properties"]["finishedAt"] for d in catalog.entities("sentryDeploy")
                 if d["relations"]["projectEnvironment"] == ["api-production"])
    assert envs["api-production"]["lastDeployFinished"] == newest
    assert envs["web-staging"]["lastDeployFinished"] is None


def test_unresolved_issues_per_project_over_its_environments(catalog: Any) -> None:
    projects = by_id(catalog.search("sentryProject")[0])
    assert projects["api"]["unresolvedIssues"] == 2 and projects["web"]["unresolvedIssues"] == 1


def test_without_a_path_filter_every_path_counts(catalog: Any) -> None:
    """Port's default: all paths between the blueprints. From an environment to deploys that includes
    environment -> project <- deploy, so a project's other environments' deploys count too."""
    spec = {"title": "All paths", "target": "sentryDeploy", "calculationSpec": {"calculationBy": "entities",
                                                                              "func": "count"}}
    env = catalog.get_blueprint("sentryProjectEnvironment")
    catalog.patch_blueprint("sentryProjectEnvironment",
                            {"aggregationProperties": {**env["aggregationProperties"], "anyPath": spec}})
    envs = by_id(catalog.search("sentryProjectEnvironment")[0])
    assert envs["api-staging"]["anyPath"] == 4 and envs["web-staging"]["anyPath"] == 1


def test_computed_values_are_left_out_when_asked_and_cannot_be_written(catalog: Any) -> None:
    plain = by_id(catalog.search("sentryProjectEnvironment", exclude_calculated=True)[0])
    assert "deploysLast30Days" not in plain["api-production"]
    [refused] = catalog.upsert_entities("sentryProjectEnvironment", [
        {"identifier": "api-production", "properties": {"deploysLast30Days": 99}}], merge=True)
    assert not refused.ok


COUNT = {"calculationBy": "entities", "func": "count"}


@pytest.mark.parametrize("spec, problem", [
    ({"title": "T", "target": "sentryDeploy", "type": "string", "calculationSpec": COUNT}, "type must be 'number'"),
    ({"target": "sentryDeploy", "calculationSpec": COUNT}, "needs a title"),
    ({"title": "T", "target": "sentryDeploy", "calculationSpec": {"calculationBy": "entities", "func": "max"}},
     "not one Port"),
    ({"title": "T", "target": "sentryDeploy", "calculationSpec": {"calculationBy": "property", "func": "max"}},
     "takes"),
    ({"title": "T", "target": "sentryDeploy", "calculationSpec": COUNT,
      "pathFilter": [{"path": ["project"]}, {"path": ["projectEnvironment"]}]}, "one path"),
    ({"title": "T", "target": "nowhere", "calculationSpec": COUNT}, "does not exist"),
])
def test_specs_port_refuses(catalog: Any, spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(CatalogError) as refused:
        catalog.patch_blueprint("sentryProject", {"aggregationProperties": {"bad": spec}})
    assert problem in str(refused.value)


def test_mirror_properties_follow_relations_to_a_property_or_meta_property(catalog: Any) -> None:
    catalog.upsert_entities("sentryRelease", [{"identifier": "api@1.0.0", "properties": {"newGroups": 3}}])
    catalog.upsert_entities("sentryDeploy", [{**deploy("6", "staging", datetime.now(timezone.utc)),
                                              "relations": {"release": "api@1.0.0", "project": ["api"],
                                                            "projectEnvironment": ["api-staging"]}}])
    deploys = by_id(catalog.search("sentryDeploy")[0])
    assert deploys["6"]["releaseNewIssues"] == 3 and deploys["1"]["releaseNewIssues"] is None
    catalog.patch_blueprint("sentryDeploy", {"mirrorProperties": {
        "releaseNewIssues": {"title": "N", "path": "release.newGroups"},
        "projectNames": {"title": "P", "path": "project.$identifier"}}})
    deploys = by_id(catalog.search("sentryDeploy")[0])
    assert deploys["6"]["projectNames"] == ["api"], "along a many relation: every related entity's value"
    with pytest.raises(CatalogError):
        catalog.patch_blueprint("sentryDeploy", {"mirrorProperties": {"bad": {"title": "B", "path": "newGroups"}}})


def test_the_port_emulator_serves_them_over_http(catalog: Any) -> None:
    with fx.serve_port(catalog) as (url, _state):
        async def search(exclude: bool) -> list[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=url) as http:
                token = (await http.post("/v1/auth/access_token", json={
                    "clientId": fx.CLIENT_ID, "clientSecret": fx.CLIENT_SECRET})).json()["accessToken"]
                answer = await http.post(
                    "/v1/blueprints/sentryProjectEnvironment/entities/search", json={"limit": 100},
                    params={"exclude_calculated_properties": "true"} if exclude else None,
                    headers={"Authorization": f"Bearer {token}"})
                return answer.json()["entities"]

        assert by_id(asyncio.run(search(False)))["api-production"]["deploysLast30Days"] == 2
        assert "deploysLast30Days" not in by_id(asyncio.run(search(True)))["api-production"]
