"""One mapping snapshot per run: every asset of a run maps with the content the run first read, records its
sha256, and the publish refuses deletes when the entities and the publish disagree on the mapping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, build_sensor_context, materialize

from sentry_port_assets.assets.catalog import CATALOG_KEY, INPUT_KEYS, port_catalog
from sentry_port_assets.assets.entities import ENTITY_ASSET_KEYS, entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.cli import main as cli_main
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, canonical_json, load_mapping, sha256_of
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MAPPING_SHA_TAG, MappingResource
from sentry_port_assets.sensors.publish import publish_on_new_entities
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import ENTITY_INPUTS, RunningSentry

REFRESH = [*raw_assets, *entity_assets]


def resources(sentry: RunningSentry, mapping: Path, catalog: Path) -> dict[str, Any]:
    return {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                     max_retries=1, backoff_seconds=0.01),
            "mapping": MappingResource(path=str(mapping)), "port": PortResource(local_catalog=str(catalog)),
            **ENTITY_INPUTS}


def edited(text: str, title: str) -> str:
    data = yaml.safe_load(text)
    for resource in data["resources"]:
        if resource["kind"] == "team":
            resource["port"]["entity"]["mappings"]["title"] = f'"{title}"'
    return yaml.safe_dump(data)


def recorded_shas(instance: DagsterInstance) -> dict[str, str]:
    shas = {}
    for key in [*INPUT_KEYS, CATALOG_KEY]:
        event = instance.get_latest_materialization_event(key)
        if event is not None and event.asset_materialization is not None:
            shas[key.to_user_string()] = event.asset_materialization.metadata["mapping_sha256"].value
    return shas


def test_a_mapping_edited_mid_run_does_not_split_the_run(sentry_emulator: Callable[..., RunningSentry],
                                                          tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(DEFAULT_MAPPING_FILE.read_text())
    first_sha = load_mapping(mapping).sha256

    def edit_once(endpoint: str, _: dict[str, list[str]]) -> None:
        # The issues are listed after the organization's step has read the mapping: a user saves an edit then.
        if endpoint == "/organizations/{org}/issues/" and "EDITED" not in mapping.read_text():
            mapping.write_text(edited(mapping.read_text(), "EDITED"))

    sentry = sentry_emulator(before_answer=edit_once)
    instance = DagsterInstance.ephemeral()
    result = materialize([*REFRESH, port_catalog], resources=resources(sentry, mapping, tmp_path / "c.sqlite"),
                         instance=instance)
    assert result.success
    assert "EDITED" in mapping.read_text(), "the edit happened during the run"
    teams = result.asset_value(ENTITY_ASSET_KEYS["team"])
    assert teams and all(e.get("title") != "EDITED" for e in teams), "every asset mapped with the run's snapshot"
    shas = recorded_shas(instance)
    assert len(shas) == 22 and set(shas.values()) == {first_sha}
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[MAPPING_SHA_TAG] == first_sha
    publish = result.asset_materializations_for_node("port__catalog")[0].metadata
    assert not str(publish["deletes"].value).startswith("skipped"), publish["deletes"].value

    # The next run reads the edit.
    again = materialize(REFRESH, resources=resources(sentry, mapping, tmp_path / "c.sqlite"), instance=instance)
    assert {e["title"] for e in again.asset_value(ENTITY_ASSET_KEYS["team"])} == {"EDITED"}


def test_the_publish_refuses_deletes_when_the_mapping_changed_since_the_entities(
        sentry_emulator: Callable[..., RunningSentry], tmp_path: Path) -> None:
    sentry = sentry_emulator()
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(DEFAULT_MAPPING_FILE.read_text())
    catalog = tmp_path / "c.sqlite"
    instance = DagsterInstance.ephemeral()
    assert materialize([*REFRESH, port_catalog], resources=resources(sentry, mapping, catalog),
                       instance=instance).success
    gone = next(i for i in sentry.state.dataset.issues if i["status"] == "unresolved")
    sentry.state.dataset.remove_issue(gone["id"])
    assert materialize(REFRESH, resources=resources(sentry, mapping, catalog), instance=instance).success
    entities_sha = load_mapping(mapping).sha256
    mapping.write_text(edited(mapping.read_text(), "LATER"))
    with build_sensor_context(instance=instance) as context:
        tick = publish_on_new_entities.evaluate_tick(context)
    [request] = tick.run_requests or []
    assert request.tags[MAPPING_SHA_TAG] == entities_sha

    # publish_to_port launched by hand after the edit: the publish would map its policy with another mapping
    manual = materialize([*REFRESH, port_catalog], resources=resources(sentry, mapping, catalog), instance=instance,
                         selection=[CATALOG_KEY])
    deletes = manual.asset_materializations_for_node("port__catalog")[0].metadata["deletes"].value
    assert deletes.startswith("skipped") and "mapping changed" in deletes, deletes
    with LocalCatalog(catalog) as held:
        assert [e for e in held.entities("sentryIssue") if e["identifier"].startswith(f"{gone['id']}-")]

    # the publish sensor's run carries the entities' snapshot: it publishes with exactly that mapping, deletes and all
    published = materialize([*REFRESH, port_catalog], resources=resources(sentry, mapping, catalog), instance=instance,
                            selection=[CATALOG_KEY], tags=request.tags)
    meta = published.asset_materializations_for_node("port__catalog")[0].metadata
    assert meta["deletes"].value == "performed", meta["deletes"].value
    assert meta["mapping_sha256"].value == entities_sha
    with LocalCatalog(catalog) as held:
        assert not [e for e in held.entities("sentryIssue") if e["identifier"].startswith(f"{gone['id']}-")]


def test_map_without_a_mapping_uses_the_jobs_source(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """`sentry-port map` reads PORT_INTEGRATION_IDENTIFIER's config from Port, as the job does."""
    for name in ("PORT_MAPPING_FILE", "OCEAN__PORT__CLIENT_ID", "OCEAN__PORT__CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config = {"resources": [{"kind": "team", "selector": {"query": "true"},
                             "port": {"entity": {"mappings": {"identifier": ".slug", "blueprint": '"remote_team"'}}}}]}
    raw = tmp_path / "raw.json"
    raw.write_text('{"team": [{"slug": "platform", "name": "Platform"}]}')
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    with fx.serve_port(catalog) as (url, emulator):
        emulator.set_integration_config("my-sentry", config)
        monkeypatch.setenv("PORT_INTEGRATION_IDENTIFIER", "my-sentry")
        monkeypatch.setenv("PORT_BASE_URL", url)
        monkeypatch.setenv("PORT_CLIENT_ID", fx.CLIENT_ID)
        monkeypatch.setenv("PORT_CLIENT_SECRET", fx.CLIENT_SECRET)
        assert cli_main(["map", "--raw", str(raw)]) == 0
        out, err = capsys.readouterr()
        assert '"remote_team"' in out and "Port integration my-sentry" in err
        assert sha256_of(canonical_json(config).encode())[:12] in err
        assert fx.CLIENT_SECRET not in out + err

        monkeypatch.delenv("PORT_CLIENT_SECRET")
        assert cli_main(["map", "--raw", str(raw)]) == 2
        err = capsys.readouterr().err
        assert "PORT_CLIENT_SECRET" in err and "PORT_INTEGRATION_IDENTIFIER" in err
    catalog.close()
