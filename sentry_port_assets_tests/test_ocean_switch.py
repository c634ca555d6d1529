"""Switching from Port's Ocean Sentry integration: every entity Ocean wrote carries its `$datasource`
(`port-ocean/sentry/<version>/<identifier>/exporter`, port_ocean/clients/port/authentication.py), so a resync of ours
found them unchanged, never rewrote them and never deleted them: an issue resolved after the switch stayed in the
catalog for ever. With PORT_ADOPT_INTEGRATION naming Ocean's integration, what it wrote is ours: rewritten under our
name at the next publish (even unchanged), and deleted when stale under the same rules as our own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from sentry_port_assets.config import ConfigError, read_settings
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.client import PortClient
from sentry_port_assets.port.datasource import ocean_writer
from sentry_port_assets.resources import build_resources
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.job_runs import execute, job_env, latest_publish

OCEAN = "my-sentry"
OCEAN_WRITER = f"port-ocean/sentry/0.1.190/{OCEAN}/exporter"
OTHER_OCEAN_WRITER = "port-ocean/sentry/0.1.190/other-sentry/exporter"
WRITTEN = ("_user", "sentryUser", "sentryTeam", "sentryProjectEnvironment", "sentryIssue")
ENTITY_FIELDS = ("identifier", "title", "icon", "team", "properties", "relations")


def as_ocean_wrote_it(source: LocalCatalog, port_url: str) -> int:
    """What Ocean's resync leaves in Port for this organization: the same blueprints and entities (Ocean's mapping
    is the one we accept unchanged), written over HTTP with Ocean's User-Agent, which Port records as `$datasource`."""
    async def go() -> int:
        count = 0
        async with PortClient(fx.CLIENT_ID, fx.CLIENT_SECRET, port_url, user_agent=OCEAN_WRITER) as client:
            blueprints = {bp["identifier"]: bp for bp in source.list_blueprints()}
            user = blueprints.pop("_user")
            await client.ensure_blueprints(list(blueprints.values()),
                                           [{"identifier": "_user", "relations": user.get("relations") or {}}])
            for blueprint in WRITTEN:
                entities = [{k: e[k] for k in ENTITY_FIELDS if k in e} for e in source.entities(blueprint)]
                results = await client.upsert_entities(blueprint, entities, merge=True, create_missing_related=True)
                assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
                count += len(results)
        return count
    return asyncio.run(go())



def test_adopting_oceans_integration_rewrites_its_entities_and_deletes_what_is_stale(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    home = tmp_path / "home"
    home.mkdir()

    # What Ocean produced for this organization, before the switch.
    reference = tmp_path / "ocean-run.sqlite"
    local = job_env(home, sentry, "http://127.0.0.1:9", PORT_LOCAL_CATALOG=str(reference))
    for name in ("PORT_BASE_URL", "PORT_CLIENT_ID", "PORT_CLIENT_SECRET"):
        local.pop(name)
    execute("sentry_port_sync", local, tmp_path)

    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(fx.PORT_USER)
    with fx.serve_port(catalog) as (port_url, port_state), LocalCatalog(reference) as source:
        written = as_ocean_wrote_it(source, port_url)
        # beside it: an entity made in Port's UI, and one of another Ocean Sentry integration
        catalog.upsert_entities("sentryIssue", [{"identifier": "made-in-the-ui", "title": "kept", "properties": {}}])
        catalog.upsert_entities("sentryIssue", [{"identifier": "other-ocean-1", "title": "kept", "properties": {}}],
                                datasource=OTHER_OCEAN_WRITER)

        # After the switch an issue is resolved in Sentry: its entities must leave Port.
        resolved = next(i for i in data.issues if i["status"] == "unresolved")
        resolved.update(status="resolved", substatus=None)
        gone = {e["identifier"] for e in catalog.entities("sentryIssue") if e["identifier"].startswith(f"{resolved['id']}-")}
        assert gone

        env = job_env(home, sentry, port_url)
        execute("sentry_port_sync", env, tmp_path)
        held = {e["identifier"] for e in catalog.entities("sentryIssue")}
        assert gone <= held, "without adoption Ocean's entities are someone else's: kept, as before"
        assert set(catalog.writers("sentryIssue").values()) >= {OCEAN_WRITER}

        run = execute("sentry_port_sync", {**env, "PORT_ADOPT_INTEGRATION": OCEAN}, tmp_path)
        held = {e["identifier"] for e in catalog.entities("sentryIssue")}
        assert not gone & held, "the issue resolved after the switch left Port"
        assert {"made-in-the-ui", "other-ocean-1"} <= held, "nothing Ocean's integration did not write was touched"
        writers = {bp: catalog.writers(bp) for bp in WRITTEN}
        assert not [(bp, i) for bp, ws in writers.items() for i, w in ws.items() if w == OCEAN_WRITER], \
            "every entity Ocean wrote is rewritten under our name"
        assert writers["sentryIssue"]["other-ocean-1"] == OTHER_OCEAN_WRITER
        meta = latest_publish(home)
        assert meta["adopted"] >= written - len(gone) - len(writers["_user"]) and meta["deleted"] == len(gone)
        assert "rewritten as this integration's" in run.stdout + run.stderr

        meta_again = execute("sentry_port_sync", {**env, "PORT_ADOPT_INTEGRATION": OCEAN}, tmp_path) and \
            latest_publish(home)
        assert meta_again["upserts_sent"] == 0 and meta_again["adopted"] == 0, "once adopted, an unchanged rerun writes nothing"
    catalog.close()


def test_adoption_needs_port_and_a_plain_identifier(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("SENTRY_TOKEN", "t")
    settings_env.setenv("SENTRY_ORGANIZATION", "acme")
    settings_env.setenv("PORT_ADOPT_INTEGRATION", OCEAN)
    with pytest.raises(ConfigError, match="PORT_ADOPT_INTEGRATION='my-sentry' is set without Port credentials"):
        read_settings()
    settings_env.setenv("PORT_CLIENT_ID", "id")
    settings_env.setenv("PORT_CLIENT_SECRET", "secret")
    assert read_settings().adopt_integration == OCEAN
    assert build_resources(read_settings())["port"].datasource.adopted == ocean_writer(OCEAN)
    settings_env.setenv("PORT_ADOPT_INTEGRATION", "port-ocean/sentry")
    with pytest.raises(ConfigError, match="cannot name the Ocean integration to adopt"):
        read_settings()
