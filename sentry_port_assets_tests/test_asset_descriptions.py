"""What the assets say about themselves when the code location loads, as Dagster's own integrations describe theirs:
an entity asset's blueprint (`dagster/table_name`) and columns (`dagster/column_schema`) from the mapping and the
bundled blueprints, links to Port and Sentry, the raw assets' Sentry endpoints, kinds, owners, tags and groups; and a
snapshot of every asset's definition metadata keys, so that none goes missing unnoticed."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from dagster import AssetKey, AssetSpec, Definitions, EnvVar
from dagster.components.testing import create_defs_folder_sandbox

from sentry_port_assets.component import SentryPortComponent
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.mapping.blueprints import blueprints_by_id
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource

ENTITY_ASSETS = {"user": "entities_user", "team": "entities_team", "project": "entities_project",
                 "project-tag": "entities_project_tag", "issue-tag": "entities_issue_tag",
                 "release": "entities_release", "deploy": "entities_deploy", "monitor": "entities_monitor",
                 "alert-rule": "entities_alert_rule"}
UNMAPPED = ("entities_issue",)  # kinds the bundled mapping has no resource for
# Every asset's definition metadata keys (the snapshot): change it only with the README's description of them.
METADATA_KEYS: dict[str, set[str]] = {
    **{f"sentry/{name}": {"sentry_endpoint", "sentry_api_docs", "sentry_organization"}
       for name in ("members", "teams", "projects", "project_tags", "issues", "issue_tags", "releases", "deploys",
                    "project_details", "monitors", "alert_rules")},
    **{f"port/{name}": {"dagster/table_name", "dagster/column_schema", "port_data_model", "sentry_organization",
                        "mapping"} for name in ENTITY_ASSETS.values()},
    **{f"port/{name}": {"port_data_model", "sentry_organization", "mapping"} for name in UNMAPPED},
    "port/catalog": {"port_data_model"},
}
OWNERS, TAGS = ["team:platform", "dana@example.com"], {"domain": "observability"}


def instance(base_url: str = "https://api.getport.io", **more: Any) -> Definitions:
    return build_sentry_port_defs(
        sentry=SentryResource(host="https://sentry.io", organization="acme", token=EnvVar("ACME_SENTRY_TOKEN")),
        mapping=MappingResource(),
        port=PortResource(base_url=base_url, client_id=EnvVar("PORT_CLIENT_ID"),
                          client_secret=EnvVar("PORT_CLIENT_SECRET")),
        **more)


@pytest.fixture(scope="module")
def graph() -> Any:
    return instance(owners=OWNERS, tags=TAGS).resolve_asset_graph()


def node(graph: Any, name: str) -> Any:
    return graph.get(AssetKey(name.split("/")))


def expected_columns(kind: str) -> dict[str, tuple[str, str]]:
    """{column: (type, description)} read from the bundled mapping YAML and blueprints, not from our code."""
    resources = [r for r in yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())["resources"] if r["kind"] == kind]
    blueprints = blueprints_by_id()
    several = len({r["port"]["entity"]["mappings"]["blueprint"] for r in resources}) > 1
    out: dict[str, tuple[str, list[str]]] = {}
    for resource in resources:
        mappings = resource["port"]["entity"]["mappings"]
        bp = json.loads(mappings["blueprint"])
        definition = blueprints[bp]
        fields = {"blueprint": ("string", mappings["blueprint"]), "identifier": ("string", mappings["identifier"])}
        if "title" in mappings:
            fields["title"] = ("string", mappings["title"])
        for name, expression in (mappings.get("properties") or {}).items():
            schema = definition["schema"]["properties"][name]
            detail = schema.get("format") or ("enum" if schema.get("enum") else None)
            fields[f"properties.{name}"] = (f"{schema['type']} ({detail})" if detail else schema["type"], expression)
        for name, expression in (mappings.get("relations") or {}).items():
            relation = definition["relations"][name]
            type_ = f"relation to {relation['target']}" + (" (many)" if relation.get("many") else "")
            if isinstance(expression, dict):  # the bundled mapping's one search relation: one rule
                type_ += ", by search"
                [rule] = expression["rules"]
                expression = (f"search: {json.loads(rule['property'])} {json.loads(rule['operator'])} "
                              f"{rule['value']}")
            fields[f"relations.{name}"] = (type_, expression)
        for column, (type_, expression) in fields.items():
            seen = out.setdefault(column, (type_, []))
            seen[1].append(f"{bp}: {expression}" if several else expression)
    return {column: (type_, "; ".join(descriptions)) for column, (type_, descriptions) in out.items()}


@pytest.mark.parametrize("kind", list(ENTITY_ASSETS))
def test_entity_assets_carry_their_blueprint_and_columns(graph: Any, kind: str) -> None:
    meta = node(graph, f"port/{ENTITY_ASSETS[kind]}").metadata
    columns = {c.name: (c.type, c.description) for c in meta["dagster/column_schema"].columns}
    assert columns == expected_columns(kind)
    resources = [r for r in yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())["resources"] if r["kind"] == kind]
    assert meta["dagster/table_name"] == ", ".join(
        dict.fromkeys(json.loads(r["port"]["entity"]["mappings"]["blueprint"]) for r in resources))


def test_required_fields_are_not_nullable(graph: Any) -> None:
    schema = node(graph, "port/entities_issue_tag").metadata["dagster/column_schema"]
    nullable = {c.name: c.constraints.nullable for c in schema.columns}
    assert nullable["identifier"] is False and nullable["blueprint"] is False
    assert nullable["properties.link"] is True


def test_links_owners_tags_and_kinds_on_every_asset(graph: Any) -> None:
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(METADATA_KEYS)
    for name in keys:
        asset = node(graph, name)
        assert set(asset.metadata) == METADATA_KEYS[name], name
        assert asset.owners == OWNERS and TAGS.items() <= asset.tags.items(), name
        expected_kinds = {"sentry"} if name.startswith("sentry/") else (
            {"port"} if name == "port/catalog" else {"port", "jq"})
        assert asset.kinds == expected_kinds, name
        if "port_data_model" in asset.metadata:
            assert asset.metadata["port_data_model"].value == "https://app.getport.io/settings/data-model"
        if "sentry_organization" in asset.metadata:
            assert asset.metadata["sentry_organization"].value == "https://sentry.io/organizations/acme/"
    members = node(graph, "sentry/members").metadata
    assert members["sentry_endpoint"].value == "GET /api/0/organizations/{org}/members/"
    assert members["sentry_api_docs"].value.startswith("https://docs.sentry.io/api/")


def test_the_us_region_and_an_explicit_app_url() -> None:
    us = instance("https://api.us.getport.io").resolve_asset_graph()
    assert node(us, "port/catalog").metadata["port_data_model"].value == "https://app.us.getport.io/settings/data-model"
    own = build_sentry_port_defs(
        sentry=SentryResource(host="https://sentry.example.com", organization="acme", token="t"),
        mapping=MappingResource(),
        port=PortResource(base_url="http://127.0.0.1:9", client_id="i", client_secret="s",
                          app_url="https://port.example.com/")).resolve_asset_graph()
    meta = node(own, "port/entities_team").metadata
    assert meta["port_data_model"].value == "https://port.example.com/settings/data-model"
    assert meta["sentry_organization"].value == "https://sentry.example.com/organizations/acme/"


def test_the_local_catalog_links_no_port(graph: Any) -> None:
    local = build_sentry_port_defs(sentry=SentryResource(organization="acme", token="t"), mapping=MappingResource(),
                                   port=PortResource(local_catalog="/tmp/never.sqlite")).resolve_asset_graph()
    assert "port_data_model" not in node(local, "port/entities_team").metadata


def test_kinds_the_mapping_does_not_map_say_so_and_are_in_no_job() -> None:
    defs = instance()
    graph, repo = defs.resolve_asset_graph(), defs.get_repository_def()
    in_jobs = {k.to_user_string() for job in ("sentry_port_sync", "sentry_refresh")
               for k in repo.get_job(job).asset_layer.executable_asset_keys}
    for name in UNMAPPED:
        assert f"port/{name}" not in in_jobs
        assert node(graph, f"port/{name}").description.startswith("**Not synced**: the mapping (")
    assert {f"port/{name}" for name in ENTITY_ASSETS.values()} <= in_jobs


def test_one_group_and_a_translation_for_every_asset() -> None:
    def translate(spec: AssetSpec) -> AssetSpec:
        return spec.replace_attributes(description=f"[acme] {spec.description}")

    graph = instance(group_name="sentry_acme", translate=translate).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert graph.get(key).group_name == "sentry_acme"
        assert graph.get(key).description.startswith("[acme] ")
    with pytest.raises(ValueError, match="keys are the jobs' and sensors' contract"):
        instance(translate=lambda spec: spec.replace_attributes(key=AssetKey(["elsewhere"])))


# -- the component ------------------------------------------------------------------------------------------------------

SECRET = "sntryu_the_value_itself_never_shown_7d1"


def component_defs(attributes: dict[str, Any], **file: Any) -> Any:
    """The component's Definitions from a defs.yaml with `attributes` (and other top-level keys of the file)."""
    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(SentryPortComponent, defs_path="acme", defs_yaml_contents={
            "type": "sentry_port_assets.SentryPortComponent", "attributes": {"key_prefix": "acme", **attributes},
            **file})
        with sandbox.build_all_defs() as defs:
            return defs.resolve_asset_graph(), defs.resources


def test_a_component_takes_owners_tags_a_group_and_post_processing(monkeypatch: pytest.MonkeyPatch) -> None:
    graph, _ = component_defs({"owners": ["team:platform"], "tags": {"domain": "observability"},
                               "group_name": "sentry_acme"},
                              post_processing={"assets": [{"target": "kind:jq", "attributes": {"tags": {"tier": "1"}}}]})
    for key in graph.get_all_asset_keys():
        asset = graph.get(key)
        assert asset.owners == ["team:platform"] and asset.tags["domain"] == "observability"
        assert asset.group_name == "sentry_acme"
        assert ("tier" in asset.tags) == ("jq" in asset.kinds), key


def test_component_secrets_take_dagsters_env_template_as_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_SENTRY_TOKEN", SECRET)
    _, resources = component_defs({"sentry_organization": "acme", "sentry_token": "{{ env.ACME_SENTRY_TOKEN }}",
                                   "port_client_id": "{{ env('ACME_PORT_ID') }}",
                                   "port_client_secret": "{{ env.ACME_PORT_SECRET }}"})
    token = resources["acme_sentry"].token
    assert isinstance(token, EnvVar) and token.env_var_name == "ACME_SENTRY_TOKEN", "a reference, not the value"
    assert resources["acme_port"].client_id.env_var_name == "ACME_PORT_ID"
    assert SECRET not in repr(resources["acme_sentry"])


def test_a_literal_secret_in_a_component_is_refused_without_being_repeated() -> None:
    with pytest.raises(Exception) as refused:
        component_defs({"sentry_organization": "acme", "sentry_token": SECRET})
    text = str(refused.value) + str(refused.value.__cause__ or "")
    assert "sentry_token" in text and "{{ env.NAME }}" in text and SECRET not in text
    with pytest.raises(Exception) as both:
        component_defs({"sentry_organization": "acme", "sentry_token": "{{ env.A }}", "sentry_token_env": "B"})
    assert "set sentry_token_env or sentry_token, not both" in str(both.value) + str(both.value.__cause__ or "")
