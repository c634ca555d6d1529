"""`build_sentry_port_defs`: the standalone code location is one instance of it, and several instances with their
own key prefixes and resources merge into one code location without a clash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, Definitions, EnvVar
from dagster.components.testing import create_defs_folder_sandbox

from sentry_port_assets.definitions import defs
from sentry_port_assets.component import SentryPortComponent
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.names import Names
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.demo import DemoPortResource, DemoSentryResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.emulators.sentry_data import SentryDataset, build_org
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.test_end_to_end import PORT_USER, expected_entities


def instance(prefix: str) -> Definitions:
    return build_sentry_port_defs(
        key_prefix=prefix,
        sentry=SentryResource(host="https://sentry.example.com", organization=prefix, token="t"),
        mapping=MappingResource(),
        port=PortResource(local_catalog=f"/tmp/{prefix}.sqlite", integration_identifier=f"sentry-{prefix}"))


def test_the_standalone_location_keeps_its_names() -> None:
    repo = defs.get_repository_def()
    assert {"sentry_port_sync", "sentry_refresh", "publish_to_port", "sentry_webhook_sync"} <= set(repo.job_names)
    assert {s.name for s in repo.sensor_defs} == {"port_mapping_sensor", "publish_on_new_entities",
                                                   "sentry_webhook_sensor", "sentry_release_sensor"}
    assert {s.name for s in repo.schedule_defs} == {"sentry_resync_schedule"}
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "port/catalog" in keys and "sentry/members" in keys


def test_two_instances_merge_into_one_code_location() -> None:
    merged = Definitions.merge(instance("acme"), instance("globex"))
    repo = merged.get_repository_def()
    graph = merged.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for prefix in ("acme", "globex"):
        assert {f"{prefix}/sentry/members", f"{prefix}/port/entities_issue_tag", f"{prefix}/port/catalog"} <= keys
        assert {f"{prefix}__sentry_port_sync", f"{prefix}__sentry_webhook_sync"} <= set(repo.job_names)
        assert f"{prefix}__port_mapping_sensor" in {s.name for s in repo.sensor_defs}
        catalog = graph.get(Names(prefix).key("port", "catalog"))
        assert {p.to_user_string() for p in catalog.parent_keys} == {
            f"{prefix}/port/entities_{k}" for k in ("user", "team", "project", "project_tag", "issue", "issue_tag",
                                                    "release", "deploy", "monitor", "alert_rule")}
        job = repo.get_job(f"{prefix}__sentry_port_sync")
        unmapped = {f"{prefix}/port/entities_issue"}  # the kind the mapping lacks
        assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
            k for k in keys if k.startswith(f"{prefix}/")} - unmapped
    assert len(keys) == 44
    assert {"acme_sentry", "globex_sentry", "acme_port", "globex_port"} <= set(merged.resources)


def test_a_demo_instance_uses_the_demo_resources() -> None:
    demo = build_sentry_port_defs(key_prefix="demo", sentry=DemoSentryResource(), mapping=MappingResource(),
                                  port=DemoPortResource())
    assert isinstance(demo.resources["demo_sentry"], DemoSentryResource)


def test_two_components_in_a_defs_folder_build_two_prefixed_instances(tmp_path) -> None:
    """The component as `dg scaffold defs` places it: two `defs.yaml` files in a project's defs folder."""
    with create_defs_folder_sandbox() as sandbox:
        for prefix in ("acme", "globex"):
            sandbox.scaffold_component(SentryPortComponent, defs_path=f"sentry_{prefix}", defs_yaml_contents={
                "type": "sentry_port_assets.SentryPortComponent",
                "attributes": {"key_prefix": prefix, "sentry_organization": prefix,
                               "sentry_token_env": f"{prefix.upper()}_SENTRY_TOKEN",
                               "port_client_id_env": "PORT_CLIENT_ID", "port_client_secret_env": "PORT_CLIENT_SECRET",
                               "resync_minutes": 30, "webhooks": prefix == "acme",
                               **({"webhook_installation": "54a3e698"} if prefix == "acme" else {})}})
        with sandbox.build_all_defs() as built:
            repo = built.get_repository_def()
            assert {"acme__sentry_port_sync", "globex__sentry_port_sync", "acme__sentry_webhook_sync"} <= set(
                repo.job_names)
            assert "globex__sentry_webhook_sync" not in repo.job_names
            assert "of installation 54a3e698" in repo.get_sensor_def("acme__sentry_webhook_sensor").description
            assert {s.cron_schedule for s in repo.schedule_defs} == {"*/30 * * * *"}
            sentry = built.resources["acme_sentry"]
            assert sentry.token == EnvVar("ACME_SENTRY_TOKEN") and sentry.organization == "acme"
            assert built.resources["globex_port"].integration_identifier == "sentry-globex"


def test_a_component_refuses_demo_data_into_a_real_port(tmp_path) -> None:
    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(SentryPortComponent, defs_path="demo", defs_yaml_contents={
            "type": "sentry_port_assets.SentryPortComponent",
            "attributes": {"port_client_id_env": "PORT_CLIENT_ID", "port_client_secret_env": "PORT_CLIENT_SECRET"}})
        with pytest.raises(Exception) as refused:
            with sandbox.build_all_defs():
                pass
    text = str(refused.value) + str(refused.value.__cause__ or "")
    assert "demo data must never reach a real Port" in text, text


PREFIXED = Path(__file__).resolve().parents[1] / "sentry_port_assets" / "defaults" / "examples" / \
    "mapping-organization-prefix.yaml"


def org_instance(prefix: str, sentry: RunningSentry, port_url: str, mapping: Path, **webhooks: Any) -> Definitions:
    """One organization's instance against the emulators; `webhooks`: `build_sentry_port_defs`' webhook settings."""
    return build_sentry_port_defs(
        key_prefix=prefix, **webhooks,
        sentry=SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token, max_retries=1,
                              backoff_seconds=0.01),
        mapping=MappingResource(path=str(mapping)),
        port=PortResource(base_url=port_url, client_id=fx.CLIENT_ID, client_secret=fx.CLIENT_SECRET,
                          integration_identifier=f"sentry-{prefix}"))


def prefixed(org: str, data: SentryDataset) -> dict[str, set[str]]:
    expected = expected_entities(data)
    return {bp: ids if bp == "_user" else {f"{org}-{i}" for i in ids} for bp, ids in expected.items()}


def own(entities: dict[str, set[str]]) -> dict[str, set[str]]:
    return {bp: ids for bp, ids in entities.items() if bp != "_user"}


def test_two_organizations_into_one_port_each_deletes_only_its_own(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    acme_data, globex_data = build_org("acme"), build_org("globex", seed=8)
    acme, globex = sentry_emulator(acme_data), sentry_emulator(globex_data)
    mappings = {}
    for org in ("acme", "globex"):
        mappings[org] = tmp_path / f"{org}.yaml"
        mappings[org].write_text(PREFIXED.read_text().replace("acme-", f"{org}-"))
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    instance = DagsterInstance.ephemeral()

    def held(org: str) -> dict[str, set[str]]:
        return {bp: {e["identifier"] for e in catalog.entities(bp)
                     if bp == "_user" or e["identifier"].startswith(f"{org}-")} for bp in expected_entities(acme_data)}

    def snapshot(org: str) -> dict[str, Any]:
        return {(bp, e["identifier"]): e for bp in ("sentryIssue", "sentryTeam", "sentryUser",
                                                    "sentryProjectEnvironment")
                for e in catalog.entities(bp) if e["identifier"].startswith(f"{org}-")}

    with fx.serve_port(catalog) as (url, _):
        merged = Definitions.merge(org_instance("acme", acme, url, mappings["acme"]),
                                   org_instance("globex", globex, url, mappings["globex"]))
        for org in ("acme", "globex"):
            assert merged.resolve_job_def(f"{org}__sentry_port_sync").execute_in_process(instance=instance).success
        for org, data in (("acme", acme_data), ("globex", globex_data)):
            assert own(held(org)) == own(prefixed(org, data))
        # Port users are shared: one per email, whichever organizations the person is in
        assert held("acme")["_user"] == prefixed("acme", acme_data)["_user"] | prefixed("globex", globex_data)["_user"]
        globex_before = snapshot("globex")

        gone = next(i for i in acme_data.issues if i["status"] == "unresolved")
        acme_data.remove_issue(gone["id"])
        assert merged.resolve_job_def("acme__sentry_port_sync").execute_in_process(instance=instance).success
        assert not [i for i in held("acme")["sentryIssue"] if i.startswith(f"acme-{gone['id']}-")]
        assert own(held("acme")) == own(prefixed("acme", acme_data))
        assert snapshot("globex") == globex_before, "a resync of one organization never touches the other's"
    catalog.close()


def test_the_scaffolder_writes_a_defs_yaml_that_builds() -> None:
    """`dg scaffold defs … --organization Acme-EU` (the scaffolder Dagster's `dg` calls; test_packaging.py runs the
    command itself): every attribute a team sets, a valid prefix from the slug; without --organization, the demo."""
    with create_defs_folder_sandbox() as sandbox:
        real = sandbox.scaffold_component(SentryPortComponent, defs_path="sentry_acme",
                                          scaffold_params={"organization": "Acme-EU"})
        text = (real / "defs.yaml").read_text()
        for line in ("key_prefix: acme_eu", "sentry_organization: Acme-EU", "sentry_token_env: ACME_EU_SENTRY_TOKEN",
                     "port_client_secret_env: PORT_CLIENT_SECRET", "port_identity: sentry-Acme-EU"):
            assert line in text, text
        sandbox.scaffold_component(SentryPortComponent, defs_path="2nd-try")
        with sandbox.build_all_defs() as built:
            repo = built.get_repository_def()
            assert {"acme_eu__sentry_port_sync", "sentry_2nd_try__sentry_port_sync"} <= set(repo.job_names)
            assert built.resources["acme_eu_sentry"].token == EnvVar("ACME_EU_SENTRY_TOKEN")
            assert isinstance(built.resources["sentry_2nd_try_sentry"], DemoSentryResource)


def test_a_component_takes_a_resync_cron_and_names_a_bad_interval() -> None:
    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(SentryPortComponent, defs_path="weekdays", defs_yaml_contents={
            "type": "sentry_port_assets.SentryPortComponent",
            "attributes": {"key_prefix": "weekdays", "resync_cron": "0 6 * * 1-5"}})
        with sandbox.build_all_defs() as built:
            assert [s.cron_schedule for s in built.get_repository_def().schedule_defs] == ["0 6 * * 1-5"]
    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(SentryPortComponent, defs_path="odd", defs_yaml_contents={
            "type": "sentry_port_assets.SentryPortComponent", "attributes": {"key_prefix": "odd", "resync_minutes": 7}})
        with pytest.raises(Exception) as refused:
            with sandbox.build_all_defs():
                pass
    text = str(refused.value) + str(refused.value.__cause__ or "")
    assert "resync_minutes: 7 cannot be expressed as a cron schedule" in text and "resync_cron" in text, text
