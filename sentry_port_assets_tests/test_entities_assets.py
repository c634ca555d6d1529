"""The entity assets and their checks, materialized by Dagster from stub raw assets (same keys, fixture values)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetCheckSeverity, AssetKey, asset, materialize

from sentry_port_assets.assets.checks import (
    SPECS,
    duplicate_identifiers,
    entity_checks,
    missing_required,
    unresolved_relations,
)
from sentry_port_assets.assets.entities import (ENTITY_ASSET_KEYS, OPTIONAL_ENTITIES, entity_assets, optional_entities,
                                              relation_cell, used_kinds)
from sentry_port_assets_tests.conftest import table_text
from sentry_port_assets.mapping.blueprints import blueprints_by_id, load_default_blueprints
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, load_mapping

OCEAN_DEFAULT = str(DEFAULT_MAPPING_FILE.parent / "examples" / "mapping-ocean-default.yaml")
from sentry_port_assets.emulators.sentry_data import demo_dataset
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.alerts import from_workflows, with_health
from sentry_port_assets.sentry.releases import ReleaseFilter
from sentry_port_assets.sentry.selection import IssueFilter

SAMPLES = json.loads((Path(__file__).resolve().parent.parent / "sentry_port_assets/sentry/seed_samples.json").read_text())
UNRESOLVED = IssueFilter("is:unresolved").key
RELEASES = ReleaseFilter().key
# A release and its deploy as Sentry lists them (shapes: getsentry/sentry-api-schema, listOrganizationReleases and
# listOrganizationReleaseDeploys), with the fields the sync adds (`__organizationUrl`, `__release`, `__projects`).
DEPLOY = {"id": "11", "environment": "production", "dateStarted": "2024-03-05T11:58:00.000000Z",
          "dateFinished": "2024-03-05T12:00:00.000000Z", "name": None, "url": "https://ci.example.com/11"}
RELEASE = {
    "id": 1, "version": "python-fastapi@1.2.0", "shortVersion": "python-fastapi@1.2.0", "status": "open",
    "versionInfo": {"package": "python-fastapi", "version": {"raw": "1.2.0"}, "description": "1.2.0",
                    "buildHash": None},
    "dateCreated": "2024-03-05T10:00:00.000000Z", "dateReleased": None, "newGroups": 2, "commitCount": 5,
    "deployCount": 1, "lastDeploy": DEPLOY, "authors": [{"name": "Danny", "email": "danny@domain.io"}],
    "projects": [{"id": 4504931759095808, "slug": "python-fastapi", "name": "python-fastapi", "newGroups": 2,
                  "platform": "python", "platforms": ["python"], "hasHealthData": True,
                  "healthData": {"crashFreeSessions": 99.5, "crashFreeUsers": 99.8, "adoption": 40.0}}],
    "__organizationUrl": "https://test-org.sentry.io"}


# A monitor and an alert as the raw assets hold them (the emulator's, built as Sentry's serializers send them).
_DEMO = demo_dataset()
MONITOR = with_health(_DEMO.alerts.monitors[:1])[0]
ALERT = from_workflows(_DEMO.alerts.workflows[:1], _DEMO.alerts.detectors, _DEMO.org_projects())[0]


def env_value(name: str) -> dict[str, Any]:
    return {"key": "environment", "name": name, "value": name, "count": 1}


def raw_values() -> dict[str, Any]:
    danny = copy.deepcopy(SAMPLES["Team"]["__members"][0])
    project = SAMPLES["Project"]
    issue = copy.deepcopy(SAMPLES["Issue"])
    return {
        "members": [SAMPLES["User"], danny],
        "teams": [SAMPLES["Team"]],
        "projects": [project],
        "project_details": [{**project, "__stats": {"errors24h": 3, "errors7d": 21, "dropped24h": 0},
                             "__sessions": {"crashFreeSessions24h": 99.9, "crashFreeUsers24h": None},
                             "__ownership": {"teams": ["platform-team"], "users": [], "rules": [], "raw": "x"},
                             "__repositories": [{"name": "test-org/python-fastapi", "provider": "github"}]}],
        "project_tags": {"environment": [{**project, "__tags": env_value("production")}, {**project, "__tags": env_value("staging")}]},
        "issues": {UNRESOLVED: [issue]},
        "issue_tags": {UNRESOLVED: {"environment": [{**issue, "__tags": [env_value("production"), env_value("staging")]}]}},
        "releases": {RELEASES: [RELEASE]},
        "deploys": {RELEASES: [{**DEPLOY, "__release": RELEASE["version"], "__projects": [
            {"id": "4504931759095808", "slug": "python-fastapi", "name": "python-fastapi"}]}]},
        "monitors": [MONITOR],
        "alert_rules": [ALERT],
    }


def stubs(values: dict[str, Any]) -> list:
    out = []
    for name, value in values.items():
        def make(v=value, n=name):
            @asset(key=AssetKey(["sentry", n]), group_name="sentry")
            def _stub() -> Any:
                return v
            return _stub
        out.append(make())
    return out


def run(values: dict[str, Any], mapping_path: str | None = None):
    return materialize(
        [*stubs(values), *entity_assets, entity_checks],
        resources={"mapping": MappingResource(path=mapping_path), OPTIONAL_ENTITIES: optional_entities},
        raise_on_error=False,
    )


def checks_by_name(result) -> dict[tuple[str, str], Any]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def metadata_of(result, name: str) -> dict[str, Any]:
    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key == ENTITY_ASSET_KEYS_BY_NAME[name]]
    return mat.materialization.metadata


ENTITY_ASSET_KEYS_BY_NAME = {key.path[-1]: key for key in ENTITY_ASSET_KEYS.values()}


@pytest.fixture(scope="module")
def default_run():
    return run(raw_values())


def test_keys_groups_and_inputs():
    by_key = {a.key: a for a in entity_assets}
    assert set(by_key) == {AssetKey(["port", n]) for n in (
        "entities_user", "entities_team", "entities_project", "entities_project_tag", "entities_issue",
        "entities_issue_tag", "entities_release", "entities_deploy", "entities_monitor", "entities_alert_rule")}
    deps = {k.path[-1]: {d.path[-1] for d in a.dependency_keys} for k, a in by_key.items()}
    assert deps == {
        "entities_user": {"members"},
        "entities_team": {"teams"},
        "entities_project": {"project_details"},
        "entities_project_tag": {"project_tags"},
        "entities_issue": {"issues"},
        "entities_issue_tag": {"issue_tags"},
        "entities_release": {"releases"},
        "entities_deploy": {"deploys"},
        "entities_monitor": {"monitors"},
        "entities_alert_rule": {"alert_rules"},
    }
    assert {a.group_names_by_key[a.key] for a in entity_assets} == {"port"}
    assert all("mapping" in a.required_resource_keys for a in entity_assets)
    assert len(SPECS) == 30 and len(entity_checks.check_keys) == 30


def test_default_mapping_end_to_end(default_run):
    assert default_run.success
    value = lambda n: default_run.asset_value(ENTITY_ASSET_KEYS_BY_NAME[n])  # noqa: E731
    assert sorted((e["blueprint"], e["identifier"]) for e in value("entities_user")) == [
        ("_user", "danny@domain.io"), ("_user", "developer@getport.io"),
        ("sentryUser", "danny@domain.io"), ("sentryUser", "developer@getport.io"),
    ]
    assert [e["identifier"] for e in value("entities_team")] == ["platform-team"]
    # the default mapping has no issue resource: materialized by hand, it says so; the jobs leave it out
    assert value("entities_issue") == []
    assert "no issue resource" in metadata_of(default_run, "entities_issue")["not_mapped"].value
    # two resources fill the project (the seed's, and its health, owners and repositories): merged on publish
    assert [e["identifier"] for e in value("entities_project")] == ["python-fastapi", "python-fastapi"]
    assert value("entities_project")[1]["relations"] == {"team": ["platform-team"], "monitors": []}
    # two resources fill each environment (the seed's, and its relation to the project): merged on publish
    assert sorted(e["identifier"] for e in value("entities_project_tag")) == [
        "python-fastapi-production", "python-fastapi-production", "python-fastapi-staging", "python-fastapi-staging"]
    assert [e["identifier"] for e in value("entities_release")] == ["python-fastapi@1.2.0"]
    [deploy] = value("entities_deploy")
    assert deploy["relations"] == {"release": "python-fastapi@1.2.0", "project": ["python-fastapi"],
                                   "projectEnvironment": ["python-fastapi-production"]}
    assert [e["identifier"] for e in value("entities_issue_tag")] == ["4605173695-production", "4605173695-staging"]
    # every check passes on consistent data, relations included (issue -> environment, issue -> user, ...)
    evaluations = checks_by_name(default_run)
    assert len(evaluations) == 27, "the checks of the kind the mapping does not map are skipped, not passed"
    assert not {k for k in evaluations if k[0] == "entities_issue"}
    assert {k: e.passed for k, e in evaluations.items() if not e.passed} == {}


def test_metadata(default_run):
    meta = metadata_of(default_run, "entities_user")
    assert meta["dagster/row_count"].value == 4 and "entities" not in meta, "no second copy of the row count"
    assert meta["entities_per_blueprint"].data == {"_user": 2, "sentryUser": 2}
    preview = meta["preview"]
    assert [c.name for c in preview.schema.columns][:3] == ["blueprint", "identifier", "title"]
    assert "developer@getport.io" in [r.data["identifier"] for r in preview.records]
    assert meta["misconfigured_fields"].value == 0 and meta["mapping_resources"].value == 2
    meta = metadata_of(default_run, "entities_issue_tag")
    assert meta["raw_items"].value == 1 and meta["dagster/row_count"].value == 2


def test_misconfiguration_and_null_tables():
    values = raw_values()
    issue = values["issue_tags"][UNRESOLVED]["environment"][0]
    issue["assignedTo"] = None  # unassigned: a null the data holds, not a misconfiguration
    result = run(values)
    assert result.success
    meta = metadata_of(result, "entities_issue_tag")
    assert meta["misconfigured_fields"].value == 0 and meta["fields_with_nulls_in_the_data"].value == 1
    [row] = [r.data for r in meta["nulls_in_the_data"].records]
    assert (row["resource"], row["kind"], row["field"], row["expression"], row["example_item"]) == (
        "resources[3]", "issue-tag", "relations.assignee.rules[0].value", ".assignedTo.email", "4605173695")
    preview = meta["preview"].records
    assert {r.data["relations.assignee"] for r in preview} == {None}
    assert {r.data["relations.projectEnvironment"] for r in preview} <= {"python-fastapi-production",
                                                                          "python-fastapi-staging"}


def test_search_relations_show_the_rule_values_not_json():
    assert relation_cell({"combinator": "and", "rules": [
        {"property": "$identifier", "operator": "=", "value": "a@b.io"}]}) == "a@b.io"
    assert relation_cell({"combinator": "or", "rules": [
        {"property": "$identifier", "operator": "=", "value": "a"},
        {"property": "tags", "operator": "contains", "value": None}]}) == 'a or tags contains null'
    assert relation_cell(["x", "y"]) == "x, y"


def test_the_kinds_synced_are_those_the_mapping_maps():
    assert used_kinds(load_mapping()) == ("user", "team", "project", "project-tag", "issue-tag", "release", "deploy",
                                          "monitor", "alert-rule")
    assert used_kinds(load_mapping(OCEAN_DEFAULT)) == ("user", "team", "project-tag", "issue-tag")
    assert used_kinds(None) == ("user", "team", "project", "project-tag", "issue", "issue-tag", "release",
                                "deploy", "monitor", "alert-rule"), "unknown: all"


def test_relations_check_warns_on_dangling_relation():
    values = raw_values()
    values["project_tags"]["environment"] = values["project_tags"]["environment"][:1]  # staging gone
    values["members"] = values["members"][:1]  # danny gone: assignee and team member dangle
    result = run(values)
    assert result.success  # a WARN check does not fail the run
    evaluations = checks_by_name(result)
    issue_check = evaluations[("entities_issue_tag", "relations_resolve")]
    assert not issue_check.passed and issue_check.severity == AssetCheckSeverity.WARN
    assert issue_check.metadata["unresolved_relations"].value == 3  # staging env, assignee x 2 entities
    assert "python-fastapi-staging" in table_text(issue_check.metadata["examples"])
    team_check = evaluations[("entities_team", "relations_resolve")]
    assert not team_check.passed and "danny@domain.io" in table_text(team_check.metadata["examples"])
    assert evaluations[("entities_user", "relations_resolve")].passed


def test_duplicate_identifiers_check_fails():
    values = raw_values()
    # the same member twice with different roles: one entity set two ways (identical twins would merge harmlessly)
    values["members"] = [SAMPLES["User"], {**SAMPLES["User"], "orgRole": "member"}]
    result = run(values)
    evaluations = checks_by_name(result)
    check = evaluations[("entities_user", "unique_identifiers")]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["duplicated_identifiers"].value == 1  # sentryUser (the _user twins do not conflict)
    assert evaluations[("entities_team", "unique_identifiers")].passed


def test_non_boolean_selector_fails_the_asset(tmp_path):
    data = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    data["resources"][4]["selector"]["query"] = ".slug"  # the team resource
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run(raw_values(), str(path))
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [f.step_key for f in failures] == ["port__entities_team"]
    message = str(failures[0].event_specific_data.error)
    assert "resources[4]" in message and "selector.query" in message and "boolean" in message and "platform-team" in message
    # the other kinds are mapped
    assert len(result.asset_value(ENTITY_ASSET_KEYS_BY_NAME["entities_user"])) == 4


# --- the checks' logic on its own ---------------------------------------------------------------------------------
def test_required_fields_logic():
    blueprints = {"bp": {"identifier": "bp", "schema": {"required": ["a"]}, "relations": {"r": {"target": "x", "required": True}}}}
    entities = [
        {"identifier": "1", "blueprint": "bp", "properties": {"a": 0}, "relations": {"r": "x1"}},
        {"identifier": "2", "blueprint": "bp", "properties": {"a": None}, "relations": {}},
        {"identifier": "3", "blueprint": "other", "properties": {}, "relations": {}},
    ]
    assert missing_required(entities, blueprints) == [("bp", "2", "properties.a"), ("bp", "2", "relations.r")]


def test_duplicates_logic_per_blueprint():
    entities = [{"identifier": "a", "blueprint": "x"}, {"identifier": "a", "blueprint": "y"}, {"identifier": "a", "blueprint": "x"}]
    assert duplicate_identifiers(entities) == {("x", "a"): 2}


def test_with_merge_only_conflicting_duplicates_count():
    """enableMergeEntity: Port merges entities of one identifier field by field (two resources filling one entity,
    as the default mapping's environment-to-project resource does); only a field set two ways is a problem."""
    filled = [{"identifier": "e", "blueprint": "env", "title": "E", "properties": {"a": 1}, "relations": {}},
              {"identifier": "e", "blueprint": "env", "title": None, "properties": {}, "relations": {"project": "p"}}]
    assert duplicate_identifiers(filled, merge=True) == {}
    assert duplicate_identifiers(filled) == {("env", "e"): 2}
    clash = [*filled, {"identifier": "e", "blueprint": "env", "properties": {"a": 2}, "relations": {}}]
    assert duplicate_identifiers(clash, merge=True) == {("env", "e"): 3}


def test_search_relation_resolution():
    blueprints = blueprints_by_id()
    teams = [{"identifier": "platform-team", "blueprint": "sentryTeam", "properties": {"projects": ["python-fastapi"]}, "relations": {}}]
    env = lambda value: {  # noqa: E731
        "identifier": "e", "blueprint": "sentryProjectEnvironment", "properties": {},
        "relations": {"team": {"combinator": "and", "rules": [{"property": "projects", "operator": "contains", "value": value}]}},
    }
    assert unresolved_relations([env("python-fastapi")], teams, blueprints) == []
    [problem] = unresolved_relations([env("other")], teams, blueprints)
    assert problem["relation"] == "team" and problem["target"] == "sentryTeam"
    # a relation into a blueprint we do not produce is not judged
    assert unresolved_relations([env("other")], [], blueprints) == []


# --- the bundled blueprints fit the bundled mapping ------------------------------------------------------------------
def test_default_mapping_entities_fit_bundled_blueprints():
    """Every blueprint, property and relation that the default mapping produces is declared by the bundled
    blueprints (`_user` as a Port-owned fragment), with the declared types."""
    blueprints = blueprints_by_id()
    values = raw_values()
    mapping = load_mapping()
    entities = []
    for kind, items in [("user", values["members"]), ("team", values["teams"]), ("project", values["project_details"]),
                        ("project-tag", values["project_tags"]["environment"]),
                        ("issue-tag", values["issue_tags"][UNRESOLVED]["environment"]),
                        ("release", values["releases"][RELEASES]), ("deploy", values["deploys"][RELEASES])]:
        entities += mapping.map_items(kind, items).entities
    types = {"string": str, "boolean": bool, "number": (int, float), "array": list}
    seen = set()
    for e in entities:
        bp = blueprints[e["blueprint"]]
        seen.add(e["blueprint"])
        for name, value in e["properties"].items():
            declared = bp["schema"]["properties"][name]
            assert value is None or isinstance(value, types[declared["type"]]), (e["blueprint"], name)
            if "enum" in declared:
                assert value in declared["enum"]
        for name, value in e["relations"].items():
            rel = bp["relations"][name]
            assert rel["target"] in blueprints
            if isinstance(value, list):
                assert rel["many"], (e["blueprint"], name)
            elif isinstance(value, str):
                assert not rel["many"], (e["blueprint"], name)
    assert seen == {"sentryUser", "_user", "sentryTeam", "sentryProject", "sentryProjectEnvironment", "sentryIssue",
                    "sentryRelease", "sentryDeploy"}
    fragment = blueprints["_user"]
    assert fragment["ownedByPort"] is True and "schema" not in fragment
    assert {b["identifier"] for b in load_default_blueprints()} >= {"sentryProject", "sentryComment"}
    assert blueprints["sentryIssue"]["relations"]["projectEnvironment"] == {
        "title": "Sentry Project Environment", "target": "sentryProjectEnvironment", "required": False, "many": False}
    assert "billing" in blueprints["sentryUser"]["schema"]["properties"]["orgRole"]["enum"]


def test_one_entity_asset_materializes_alone_on_a_fresh_instance():
    """From the UI: only port/entities_user (and its raw input) selected, the other entity assets never
    materialized. The relations check judges what exists instead of failing the run."""
    result = materialize(
        [*stubs(raw_values()), *entity_assets, entity_checks],
        selection=[AssetKey(["sentry", "members"]), ENTITY_ASSET_KEYS["user"]],
        resources={"mapping": MappingResource(), OPTIONAL_ENTITIES: optional_entities},
        raise_on_error=False,
    )
    assert result.success
    evaluations = checks_by_name(result)
    assert set(evaluations) == {("entities_user", n) for n in ("relations_resolve", "required_fields",
                                                               "unique_identifiers")}
    assert all(e.passed for e in evaluations.values())


def test_search_relations_are_judged_as_port_evaluates_them():
    """One implementation of Port's rules (port/query.py): `=` against a list property matches a member, and a
    rule never matches a missing value by equality with null; the relations check used to disagree on both."""
    blueprints = blueprints_by_id()
    teams = [{"identifier": "platform-team", "blueprint": "sentryTeam", "title": None,
              "properties": {"projects": ["python-fastapi", "go-api"]}, "relations": {}}]

    def env(prop: str, op: str, value):
        return {"identifier": "e", "blueprint": "sentryProjectEnvironment", "properties": {},
                "relations": {"team": {"combinator": "and", "rules": [{"property": prop, "operator": op, "value": value}]}}}

    assert unresolved_relations([env("projects", "=", "go-api")], teams, blueprints) == []
    assert unresolved_relations([env("projects", "in", ["go-api", "x"])], teams, blueprints) == []
    [problem] = unresolved_relations([env("$title", "=", "")], teams, blueprints)
    assert problem["relation"] == "team"
