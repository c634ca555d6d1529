"""Loading a mapping file: everything wrong with it fails at load time, before any Sentry request, and the error
names what to fix (file, resource index, kind, field path, expression, jq's own message)."""

from __future__ import annotations

import textwrap

import pytest

from sentry_port_assets.mapping.engine import MappingConfigError
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, load_mapping
from sentry_port_assets.resources.mapping import MappingResource

GOOD_USER = """
  - kind: user
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .email
          blueprint: '"sentryUser"'
"""


def write(tmp_path, body: str):
    path = tmp_path / "mapping.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def load_error(tmp_path, body: str) -> str:
    path = write(tmp_path, body)
    with pytest.raises(MappingConfigError) as info:
        load_mapping(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_default_mapping_is_the_seeds_and_compiles():
    mapping = load_mapping()
    assert [r.kind for r in mapping.resources] == ["user", "user", "project-tag", "issue-tag", "team",
                                                   "project", "project", "project-tag", "release", "deploy",
                                                   "monitor", "alert-rule"]
    assert (mapping.config.delete_dependent_entities, mapping.config.create_missing_related_entities, mapping.config.enable_merge_entity) == (True, True, True)
    assert len(mapping.resources) == 12 and mapping.sha256 == load_mapping().sha256
    assert mapping.uses("issue-tag") and not mapping.uses("issue")
    assert load_mapping(None).config == load_mapping(DEFAULT_MAPPING_FILE).config


def test_bad_yaml(tmp_path):
    message = load_error(tmp_path, "resources:\n  - kind: user\n      selector: {}\n")
    assert "not valid YAML" in message and "line 3" in message


def test_bad_jq_names_resource_kind_field_expression_and_jq_message(tmp_path):
    body = "resources:\n" + GOOD_USER + textwrap.indent(
        textwrap.dedent(
            """\
            - kind: team
              port:
                entity:
                  mappings:
                    identifier: .slug
                    blueprint: '"sentryTeam"'
                    properties:
                      projects: .projects | map(.slug
            """
        ),
        "  ",
    )
    message = load_error(tmp_path, body)
    assert "resources[1]" in message and "'team'" in message
    assert "port.entity.mappings.properties.projects" in message
    assert "'.projects | map(.slug'" in message
    assert "syntax error" in message  # jq's own words


def test_bad_jq_in_selector_and_items_to_parse(tmp_path):
    message = load_error(tmp_path, "resources:\n- kind: user\n  selector: {query: '.a =='}\n  port: {entity: {mappings: {identifier: .id, blueprint: '\"b\"'}}}\n")
    assert "resources[0]" in message and "selector.query" in message and "'.a =='" in message
    message = load_error(tmp_path, "resources:\n- kind: issue-tag\n  port: {itemsToParse: '.__tags[', entity: {mappings: {identifier: .id, blueprint: '\"b\"'}}}\n")
    assert "port.itemsToParse" in message and "issue-tag" in message


def test_bad_jq_deep_in_a_search_relation(tmp_path):
    message = load_error(
        tmp_path,
        """
        resources:
        - kind: issue
          port:
            entity:
              mappings:
                identifier: .id
                blueprint: '"sentryIssue"'
                relations:
                  assignee:
                    combinator: '"and"'
                    rules:
                    - operator: '"="'
                      property: '"$identifier"'
                      value: .assignedTo.email)
        """,
    )
    assert "relations.assignee.rules[0].value" in message and "'.assignedTo.email)'" in message


@pytest.mark.parametrize(
    "body,expected",
    [
        # a misspelt required key: the key it should have been is missing
        ("resources:\n- kind: user\n  port: {entity: {mappings: {identifer: .id, blueprint: '\"b\"'}}}\n", ["identifier", "Field required"]),
        # unknown kind
        ("resources:\n- kind: users\n  port: {entity: {mappings: {identifier: .id, blueprint: '\"b\"'}}}\n", ["resources[0].kind (kind 'users')", "unknown input should be", "'user'"]),
        # a leaf that is not a jq expression
        ("resources:\n- kind: user\n  port: {entity: {mappings: {identifier: .id, blueprint: '\"b\"', properties: {n: 5}}}}\n", ["resources[0]", "properties.n", "expected a jq expression"]),
        ("resources:\n- kind: user\n  port: {entity: {mappings: {identifier: '', blueprint: '\"b\"'}}}\n", ["identifier", "empty expression"]),
        # not a mapping at all
        ("- kind: user\n", ["must be a YAML mapping"]),
    ],
)
def test_invalid_files(tmp_path, body, expected):
    message = load_error(tmp_path, body)
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_unknown_keys_are_warnings_that_name_them_never_errors(tmp_path):
    """Port stores an integration's config with extra keys allowed and Ocean ignores keys it does not know."""
    path = write(tmp_path, """
deleteDependentEntites: true
resources:
- kind: user
  selectr: {query: 'true'}
  selector: {query: 'true', includeMembers: true, tag: environment, exportEnvVariables: [A]}
  port: {itemToParse: .x, entity: {mappings: {identifier: .id, blueprint: '"b"', iconn: '"x"'}}}
""")
    mapping = load_mapping(path)
    text = "\n".join(mapping.warnings)
    for fragment in ("deleteDependentEntites: unknown key", "resources[0].selectr: unknown key",
                     "resources[0].selector.includeMembers: does not apply to kind 'user'",
                     "resources[0].port.itemToParse: unknown key", "resources[0].port.entity.mappings.iconn"):
        assert fragment in text, (fragment, text)
    assert "exportEnvVariables" not in text and ".tag" not in text, "Ocean's own keys are not warnings"
    assert mapping.config.delete_dependent_entities is True, "Ocean's default"
    assert load_mapping().warnings == []


def test_missing_file_names_the_variable(tmp_path):
    with pytest.raises(MappingConfigError, match="PORT_MAPPING_FILE"):
        load_mapping(tmp_path / "nope.yaml")


def test_selector_names_do_not_collide(tmp_path):
    path = write(tmp_path, "resources:\n- kind: issue\n  selector: {query: 'true', sentryQuery: 'is:resolved', statsPeriod: 24h}\n  port: {entity: {mappings: {identifier: .id, blueprint: '\"b\"'}}}\n")
    selector = load_mapping(path).config.resources[0].selector
    assert (selector.query, selector.sentry_query, selector.stats_period) == ("true", "is:resolved", "24h")


def test_resource_caches_per_content(tmp_path):
    path = write(tmp_path, "resources:\n" + GOOD_USER)
    resource = MappingResource(path=str(path))
    first = resource.load()
    assert resource.load() is first
    assert MappingResource(path=str(path)).load() is first  # compiled once per content
    path.write_text(textwrap.dedent("resources:\n" + GOOD_USER + GOOD_USER))
    assert resource.load() is first, "one resource (one run) keeps the snapshot it first read"
    second = MappingResource(path=str(path)).load()
    assert second is not first and len(second.resources) == 2 and second.sha256 != first.sha256
    assert len(MappingResource().load().resources) == 12


def test_tag_values_by_environment_is_only_for_the_environment_tag(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("""
resources:
  - kind: issue-tag
    selector:
      tag: release
      tagValues: by-environment
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: '"sentryIssue"'
""")
    with pytest.raises(MappingConfigError, match="tagValues: by-environment works for tag 'environment' only"):
        load_mapping(path)


OCEAN_STYLE = """
createMissingRelatedEntities: true
deleteDependentEntities: true
resources:
  - kind: project
    selector: {query: 'true', tag: environment, exportEnvVariables: []}
    port:
      entity:
        mappings: {identifier: .slug, title: .name, blueprint: '"sentryProject"', properties: {platform: .platform}}
  - kind: project-tag
    selector: {query: "true", tag: "environment"}
    port:
      entity:
        mappings:
          identifier: .slug + "-" + .__tags.name
          blueprint: '"sentryProject"'
          relations:
            team: {combinator: '"and"', rules: [{property: '"projects"', operator: '"contains"', value: .slug}]}
  - kind: issue
    selector: {query: "true", tag: "environment", includeArchived: false}
    port:
      entity:
        mappings: {identifier: .id, title: .title, blueprint: '"sentryIssue"', relations: {assignedTo: .assignedTo.email}}
  - kind: issue-tag
    selector: {query: "true", tag: "environment", includeArchived: true}
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: '"sentryIssue"'
          relations:
            projectEnvironment: '[(.project.slug as $slug | .__tags[] | "\\\\($slug)-\\\\(.name)")]'
"""


def test_an_ocean_style_sentry_mapping_loads_unchanged_without_warnings(tmp_path):
    """The selector keys Ocean's Sentry integration defines (tag on every kind, includeArchived on issues, the base
    selector's exportEnvVariables) and the shapes its shipped mapping uses (a contains search relation, an array
    relation built from __tags) load as they are."""
    mapping = load_mapping(write(tmp_path, OCEAN_STYLE))
    assert mapping.warnings == []
    assert [r.selector.include_archived for r in mapping.config.resources if r.kind in ("issue", "issue-tag")] == [False, True]
    assert len(mapping.resources) == 4
