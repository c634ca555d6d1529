"""The seed's sample payloads through Ocean's default mapping (`defaults/examples/mapping-ocean-default.yaml`, which
the bundled default extends, every resource unchanged) and through each per-kind example configuration give
the seed's "Mapping Result" entities (identifier, title, blueprint, properties, relations; Port-side fields such
as createdAt, and the `icon`/`team` Port fills in from the blueprint, do not apply).

Where the seed contradicts itself, each test says which reading it takes and why (also in docs/mapping.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, load_mapping, parse_mapping

SAMPLES = json.loads((Path(__file__).resolve().parent.parent / "sentry_port_assets/sentry/seed_samples.json").read_text())
COMPARED = ("identifier", "title", "blueprint", "properties", "relations")

# --- the seed's "Mapping Result" entities, copied from the seed (Port-side fields left out) ---------------------
SEED_USER = {
    "identifier": "developer@getport.io",
    "title": "Michael",
    "blueprint": "sentryUser",
    "properties": {
        "username": "developer@getport.io",
        "isActive": True,
        "dateJoined": "2022-01-18T22:38:13.946094Z",
        "lastLogin": "2024-11-10T23:25:31.826834Z",
        "orgRole": "owner",
        "inviteStatus": "approved",
    },
    "relations": {},
}
SEED_TEAM = {
    "identifier": "platform-team",
    "title": "Developer Experience",
    "blueprint": "sentryTeam",
    "properties": {
        "dateCreated": "2022-11-16T13:25:53.617157Z",
        "memberCount": 1,
        "roles": "contributor",
        "projects": ["admin-service", "oauth-service"],
    },
    "relations": {"members": ["danny@domain.io"]},
}
SEED_PROJECT = {
    "identifier": "python-fastapi",
    "title": "python-fastapi",
    "blueprint": "sentryProject",
    "properties": {
        "dateCreated": "2023-03-31T06:18:37.290732Z",
        "platform": "python-fastapi",
        "status": "active",
        "link": "https://test-org.sentry.io/projects/python-fastapi",
    },
    "relations": {},
}
SEED_ISSUE = {
    "identifier": "4605173695",
    "title": "ZeroDivisionError: division by zero",
    "blueprint": "sentryIssue",
    "properties": {
        "link": "https://test-org.sentry.io/issues/4605173695/",
        "status": "unresolved",
        "isUnhandled": True,
    },
    # the seed writes `"project": "python-fastapi"` (and forgets a comma); see test_issue_example
    "relations": {"project": "python-fastapi", "assignedTo": "danny@domain.io"},
}
SEED_PROJECT_ENV = {
    "identifier": "python-fastapi-production",
    "title": "python-fastapi-production",
    "blueprint": "sentryProjectEnvironment",
    "properties": {
        "dateCreated": "2023-03-31T06:18:37.290732Z",
        "platform": "python-fastapi",
        "status": "active",
        "link": "https://test-org.sentry.io/projects/python-fastapi",
    },
    "relations": {"team": ["platform-team"]},
}

# --- the seed's per-kind example configurations, copied verbatim except where a comment says otherwise ---------
USER_EXAMPLE = """
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: user
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .email
          title: .user.name
          blueprint: '"sentryUser"'
          properties:
            username: .user.username
            isActive: .user.isActive
            dateJoined: .user.dateJoined
            lastLogin: .user.lastLogin
            orgRole: .orgRole
            inviteStatus: .inviteStatus
"""
TEAM_EXAMPLE = """
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: team
    selector:
      query: 'true'
      includeMembers: true
    port:
      entity:
        mappings:
          identifier: .slug
          title: .name
          blueprint: '"sentryTeam"'
          properties:
            dateCreated: .dateCreated
            memberCount: .memberCount
            roles: .teamRole
            projects: .projects | map (.slug)
          relations:
            members: if .__members != null then .__members | map(.user.email) | map(select(. != null)) else [] end
"""
PROJECT_EXAMPLE = """
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: project
    selector:
      query: "true"
    port:
      entity:
        mappings:
          identifier: .slug
          title: .name
          blueprint: '"sentryProject"'
          properties:
            dateCreated: .dateCreated
            platform: .platform
            status: .status
            link: .organization.links.organizationUrl + "/projects/" + .name
"""
# The seed's issue example is not valid YAML: `selector:` is indented under `- kind: issue` ("mapping values are
# not allowed here"). Reading taken: the obvious intent, with `selector`/`port` aligned with `kind`.
ISSUE_EXAMPLE_AS_PUBLISHED = """
resources:
  - kind: issue
      selector:
        query: "true"
"""
ISSUE_EXAMPLE = """
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: issue
    selector:
      query: "true"
    port:
      entity:
        mappings:
          identifier: ".id"
          title: ".title"
          blueprint: '"sentryIssue"'
          properties:
            link: ".permalink"
            status: ".status"
            isUnhandled: ".isUnhandled"
          relations:
            projectEnvironment: ".project.slug"
            assignedTo: .assignedTo.email
"""
PROJECT_ENV_EXAMPLE = """
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: project-tag
    selector:
      query: "true"
      tag: "environment"
    port:
      entity:
        mappings:
          identifier: .slug + "-" + .__tags.name
          title: .name + "-" + .__tags.name
          blueprint: '"sentryProject"'
          properties:
            dateCreated: .dateCreated
            platform: .platform
            status: .status
            link: .organization.links.organizationUrl + "/projects/" + .name
          relations:
            team:
              combinator: '"and"'
              rules:
                - property: '"projects"'
                  operator: '"contains"'
                  value: .slug
  - kind: issue-tag
    selector:
      query: "true"
      tag: "environment"
    port:
      entity:
        mappings:
          identifier: .id
          title: .title
          blueprint: '"sentryIssue"'
          properties:
            link: .permalink
            status: .status
            isUnhandled: .isUnhandled
          relations:
            projectEnvironment: '[(.project.slug as $slug | .__tags[] | "\\($slug)-\\(.name)")]'
            assignedTo: .assignedTo.email
"""


def compared(entity: dict) -> dict:
    return {k: entity.get(k) for k in COMPARED}


def one(mapping, kind: str, items: list, blueprint: str | None = None) -> dict:
    result = mapping.map_items(kind, items)
    assert result.errors == []
    entities = [e for e in result.entities if blueprint is None or e["blueprint"] == blueprint]
    assert len(entities) == 1, entities
    return entities[0]


def example(text: str):
    return parse_mapping(yaml.safe_load(text), "seed example")


OCEAN_DEFAULT = DEFAULT_MAPPING_FILE.parent / "examples" / "mapping-ocean-default.yaml"


@pytest.fixture(scope="module")
def default():
    """Ocean's default mapping, as Port's documentation gives it."""
    return load_mapping(str(OCEAN_DEFAULT))


def test_the_bundled_default_is_oceans_with_every_resource_unchanged_then_more():
    ocean = yaml.safe_load(OCEAN_DEFAULT.read_text())
    bundled = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    assert {k: v for k, v in bundled.items() if k != "resources"} == {k: v for k, v in ocean.items() if k != "resources"}
    assert bundled["resources"][:len(ocean["resources"])] == ocean["resources"]
    assert [r["kind"] for r in bundled["resources"][len(ocean["resources"]):]] == [
        "project", "project", "project-tag", "release", "deploy", "monitor", "alert-rule"]
    # its project resource is the seed's Project example's, so the seed's project result too
    extended = load_mapping()
    assert compared(extended.resources[len(ocean["resources"])].map([SAMPLES["Project"]]).entities[0]) == SEED_PROJECT


def issue_with_environments(*names: str) -> dict:
    issue = copy.deepcopy(SAMPLES["Issue"])
    issue["__tags"] = [{"key": "environment", "name": n, "value": n, "count": 1} for n in names]
    return issue


# --- user ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", ["default", "example"])
def test_user(default, config):
    mapping = default if config == "default" else example(USER_EXAMPLE)
    entity = one(mapping, "user", [SAMPLES["User"]], "sentryUser")
    assert compared(entity) == SEED_USER
    # the seed's result shows icon "Sentry" and team []: Port fills those from the blueprint; the mapping sets
    # neither, and Ocean sends only what the mapping sets
    assert "icon" not in entity and "team" not in entity


def test_user_links_ports_own_user_blueprint(default):
    """The default mapping's second user resource (not in the seed's results): Port's `_user` gets the relation."""
    entity = one(default, "user", [SAMPLES["User"]], "_user")
    assert compared(entity) == {
        "identifier": "developer@getport.io",
        "title": None,
        "blueprint": "_user",
        "properties": {},
        "relations": {"sentry_user": "developer@getport.io"},
    }
    assert "title" not in entity  # not mapped, so not sent: Port keeps the user's own name


# --- team ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", ["default", "example"])
def test_team(default, config):
    """Reading taken: the mapping is applied to the seed's Team PAYLOAD, whose `dateCreated` (2021-11-16) and
    `memberCount` (43) differ from the seed's result (2022-11-16, 1): the result was made from another payload.
    Everything else must equal the seed's result."""
    mapping = default if config == "default" else example(TEAM_EXAMPLE)
    entity = one(mapping, "team", [SAMPLES["Team"]])
    expected = copy.deepcopy(SEED_TEAM)
    expected["properties"]["dateCreated"] = SAMPLES["Team"]["dateCreated"]
    expected["properties"]["memberCount"] = SAMPLES["Team"]["memberCount"]
    assert (SAMPLES["Team"]["dateCreated"], SAMPLES["Team"]["memberCount"]) == ("2021-11-16T13:25:53.617157Z", 43)
    assert compared(entity) == expected


def test_team_without_members_gets_empty_relation(default):
    team = {k: v for k, v in SAMPLES["Team"].items() if k != "__members"}
    assert one(default, "team", [team])["relations"] == {"members": []}


# --- project -------------------------------------------------------------------------------------------------
def test_project_example():
    """Ocean's default mapping has no `project` resource; the seed's Project example gives the seed's result."""
    assert compared(one(example(PROJECT_EXAMPLE), "project", [SAMPLES["Project"]])) == SEED_PROJECT


def test_default_mapping_has_no_project_resource(default):
    assert default.map_items("project", [SAMPLES["Project"]]).entities == []


# --- project environment (project-tag) -----------------------------------------------------------------------
def test_project_environment_default(default):
    """Readings taken:
    - the default mapping maps no `team` relation; the seed's result shows `relations.team = ["platform-team"]`,
      which only the per-kind example maps (as a search relation that Port resolves): default gives `{}`;
    - the seed's project-environment payload belongs to organization `pages-org`, while the result's link says
      `test-org`: the link is computed from the payload, so `https://pages-org.sentry.io/...`.
    Everything else equals the seed's result."""
    entity = one(default, "project-tag", [SAMPLES["Project environment"]])
    expected = copy.deepcopy(SEED_PROJECT_ENV)
    expected["relations"] = {}
    expected["properties"]["link"] = "https://pages-org.sentry.io/projects/python-fastapi"
    assert compared(entity) == expected


def test_project_environment_example():
    """Readings taken: the per-kind example writes blueprint `sentryProject` (the seed's blueprint id bug), so its
    entity has blueprint `sentryProject`; its `team` relation is a search query, sent as is (Port resolves it to
    `["platform-team"]`, the seed's result); the link is computed from the payload (see above)."""
    mapping = example(PROJECT_ENV_EXAMPLE)
    entity = one(mapping, "project-tag", [SAMPLES["Project environment"]])
    expected = copy.deepcopy(SEED_PROJECT_ENV)
    expected["blueprint"] = "sentryProject"
    expected["properties"]["link"] = "https://pages-org.sentry.io/projects/python-fastapi"
    expected["relations"] = {
        "team": {
            "combinator": "and",
            "rules": [{"property": "projects", "operator": "contains", "value": "python-fastapi"}],
        }
    }
    assert compared(entity) == expected


# --- issue ---------------------------------------------------------------------------------------------------
def test_issue_example_as_published_is_rejected():
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(ISSUE_EXAMPLE_AS_PUBLISHED)


def test_issue_example():
    """The seed's Issue result is the per-kind `issue` example's output (identifier `.id`, no environment).
    Reading taken: relation names come from the mapping (`projectEnvironment`, `assignedTo`); the result's
    `"project"` key is a typo of the documentation (its JSON is invalid anyway: a missing comma)."""
    entity = one(example(ISSUE_EXAMPLE), "issue", [SAMPLES["Issue"]])
    expected = copy.deepcopy(SEED_ISSUE)
    expected["relations"] = {"projectEnvironment": "python-fastapi", "assignedTo": "danny@domain.io"}
    assert compared(entity) == expected


def test_issue_default_mapping_one_entity_per_environment(default):
    """The default mapping maps `issue-tag` rows (the issue plus its environment values in `__tags`) with
    `itemsToParse: .__tags`: one entity per issue and environment. The seed's Issue payload has no `__tags`;
    given `production` and `staging`, each entity is the seed's result with the environment appended."""
    result = default.map_items("issue-tag", [issue_with_environments("production", "staging")])
    assert result.errors == [] and result.misconfigurations == [] and result.dropped == 0
    got = [compared(e) for e in result.entities]
    expected = []
    for env in ("production", "staging"):
        expected.append(
            {
                "identifier": f"4605173695-{env}",
                "title": f"ZeroDivisionError: division by zero - {env}",
                "blueprint": "sentryIssue",
                "properties": {
                    "link": f"https://test-org.sentry.io/issues/4605173695/?environment={env}",
                    "status": "unresolved",
                    "isUnhandled": True,
                },
                "relations": {
                    "projectEnvironment": f"python-fastapi-{env}",
                    "assignee": {
                        "combinator": "and",
                        "rules": [{"operator": "=", "property": "$identifier", "value": "danny@domain.io"}],
                    },
                },
            }
        )
    assert got == expected


def test_issue_tag_example_relates_all_environments():
    """The per-kind example's issue-tag resource (no itemsToParse): one entity per issue, relating every
    environment; otherwise the seed's Issue result."""
    mapping = example(PROJECT_ENV_EXAMPLE)
    entity = one(mapping, "issue-tag", [issue_with_environments("production", "staging")])
    expected = copy.deepcopy(SEED_ISSUE)
    expected["relations"] = {
        "projectEnvironment": ["python-fastapi-production", "python-fastapi-staging"],
        "assignedTo": "danny@domain.io",
    }
    assert compared(entity) == expected


def test_unassigned_issue_is_a_null_in_the_data_not_a_misconfiguration(default):
    issue = issue_with_environments("production")
    issue["assignedTo"] = None
    result = default.map_items("issue-tag", [issue])
    assert len(result.entities) == 1
    assert result.entities[0]["relations"]["assignee"]["rules"][0]["value"] is None
    assert result.misconfigurations == []
    [m] = result.nulls
    assert (m.field, m.expression, m.count, m.example_item_id) == (
        "relations.assignee.rules[0].value",
        ".assignedTo.email",
        1,
        "4605173695",
    )
