"""Who an instance is in Port (`$datasource`): one per Sentry host and organization by default, so that two
Sentry servers with the same organization slug (a move from sentry.io to self-hosted, a staging beside a production
Sentry) never delete each other's entities; sentry.io keeps the name installs have always written under; and one
code location refuses two instances with the same identity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dagster import Definitions
from dagster.components.testing import create_defs_folder_sandbox

from sentry_port_assets.component import SentryPortComponent
from sentry_port_assets.config import ConfigError, default_port_identity, read_settings
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.job_runs import execute, job_env
from sentry_port_assets_tests.test_end_to_end import PORT_USER, expected_entities

ISSUES = "sentryIssue"


@pytest.mark.parametrize(("host", "identity"), [
    ("https://sentry.io", "sentry-acme"),              # what installs have always written under: kept
    ("https://us.sentry.io", "sentry-acme"),           # sentry.io's regions are one service, slugs unique across
    ("https://acme.sentry.io/", "sentry-acme"),
    ("https://sentry.example.com", "sentry-acme.sentry.example.com"),
    ("https://Sentry.Example.com:443/", "sentry-acme.sentry.example.com"),
    ("http://127.0.0.1:9000", "sentry-acme.127.0.0.1_9000"),
])
def test_the_default_identity_is_per_host_and_organization(host: str, identity: str) -> None:
    assert default_port_identity(None, "acme", host) == identity
    assert default_port_identity("my-integration", "acme", host) == "my-integration"


def test_the_settings_derive_the_identity_from_the_host_or_take_port_identity(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("SENTRY_TOKEN", "t")
    settings_env.setenv("SENTRY_ORGANIZATION", "acme")
    assert read_settings().port_identity == "sentry-acme"
    settings_env.setenv("SENTRY_HOST", "https://sentry.example.com")
    assert read_settings().port_identity == "sentry-acme.sentry.example.com"
    settings_env.setenv("PORT_IDENTITY", "sentry-acme")  # an install moved here that keeps owning what it wrote
    assert read_settings().port_identity == "sentry-acme"
    settings_env.setenv("PORT_IDENTITY", "sentry/acme")
    with pytest.raises(ConfigError, match=r"PORT_IDENTITY='sentry/acme' cannot name this instance in Port"):
        read_settings()


def _instance(prefix: str, identity: str) -> Definitions:
    return build_sentry_port_defs(
        key_prefix=prefix, sentry=SentryResource(host="https://sentry.example.com", organization="acme", token="t"),
        mapping=MappingResource(), port=PortResource(local_catalog="/tmp/unused.sqlite", integration_identifier=identity))


def test_one_code_location_refuses_two_instances_with_one_identity() -> None:
    Definitions.merge(_instance("prod", "sentry-acme"), _instance("staging", "sentry-acme.staging")).get_repository_def()
    with pytest.raises(Exception, match=r"port_identity__sentry_acme_"):
        Definitions.merge(_instance("prod", "sentry-acme"), _instance("staging", "sentry-acme"))


def test_two_components_for_one_slug_on_two_hosts_get_two_identities_and_one_identity_twice_is_refused() -> None:
    def component(folder: str, host: str, **more: str) -> dict[str, object]:
        return {"type": "sentry_port_assets.SentryPortComponent", "attributes": {
            "key_prefix": folder, "sentry_host": host, "sentry_organization": "acme",
            "sentry_token_env": f"{folder.upper()}_SENTRY_TOKEN", **more}}

    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(SentryPortComponent, defs_path="prod",
                                   defs_yaml_contents=component("prod", "https://sentry.io"))
        sandbox.scaffold_component(SentryPortComponent, defs_path="selfhosted",
                                   defs_yaml_contents=component("selfhosted", "https://sentry.example.com"))
        with sandbox.build_all_defs() as built:
            assert built.resources["prod_port"].integration_identifier == "sentry-acme"
            assert built.resources["selfhosted_port"].integration_identifier == "sentry-acme.sentry.example.com"
    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(SentryPortComponent, defs_path="prod",
                                   defs_yaml_contents=component("prod", "https://sentry.io"))
        sandbox.scaffold_component(SentryPortComponent, defs_path="again", defs_yaml_contents=component(
            "again", "https://sentry.example.com", port_identity="sentry-acme"))
        with pytest.raises(Exception) as refused:
            with sandbox.build_all_defs():
                pass
    assert "port_identity__sentry_acme_" in str(refused.value) + str(refused.value.__cause__ or "")


def test_one_slug_on_two_sentry_hosts_into_one_port_never_deletes_the_others_issues(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    """Two Sentry servers (two emulators: two host:port) hold organizations with the same slug and different issues,
    synced into one Port by two `dagster job execute` runs. Under one identity (today's `sentry-acme` for both),
    each resync deleted the other's issues as its own stale ones."""
    production, staging = build_org("acme"), build_org("acme", seed=8)
    only_staging = expected_entities(staging)[ISSUES] - expected_entities(production)[ISSUES]
    assert only_staging, "the two organizations must have issues of their own"
    sentries = {"production": sentry_emulator(production), "staging": sentry_emulator(staging)}
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    homes = {name: tmp_path / name for name in sentries}
    for home in homes.values():
        home.mkdir()
    with fx.serve_port(catalog) as (port_url, port_state):
        def sync(name: str) -> None:
            execute("sentry_port_sync", job_env(homes[name], sentries[name], port_url), homes[name])

        sync("production")
        sync("staging")
        assert only_staging <= {e["identifier"] for e in catalog.entities(ISSUES)}
        deleted = port_state.stats.entities_deleted
        sync("production")
        assert port_state.stats.entities_deleted == deleted, "production's resync deleted staging's entities"
        assert only_staging <= {e["identifier"] for e in catalog.entities(ISSUES)}
        # each wrote under its own identity: sentry-acme.<host>_<port> (the emulators are not on sentry.io)
        writers = catalog.writers(ISSUES)
        for name, sentry in sentries.items():
            host = sentry.url.split("//", 1)[1].replace(":", "_")
            assert any(f"/sentry-acme.{host}/" in (w or "") for w in writers.values()), (name, set(writers.values()))
    catalog.close()
