"""port_mapping_sensor: a changed mapping (file content, or Port's integration config) launches sentry_port_sync."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from sentry_port_assets.assets.entities import entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets

from sentry_port_assets.mapping.loader import MappingConfigError
from sentry_port_assets.mapping.loader import canonical_json
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.sensors.mapping import port_mapping_sensor
from sentry_port_assets.resources.demo import DemoSentryResource
from sentry_port_assets_tests import port_fixtures as fx

USER = """\
- kind: user
  selector: {query: 'true'}
  port:
    entity:
      mappings:
        identifier: .email
        title: .name
        blueprint: '"sentryUser"'
        properties: {username: .user.username}
"""
TEAM = """\
- kind: team
  selector: {query: 'true'}
  port:
    entity:
      mappings:
        identifier: .slug
        blueprint: '"sentryTeam"'
"""
BAD_JQ = """\
- kind: team
  selector: {query: 'true'}
  port:
    entity:
      mappings:
        identifier: .slug | nosuchfunction(
        blueprint: '"sentryTeam"'
"""


def remote_config(*kinds: str) -> dict[str, Any]:
    return {
        "deleteDependentEntities": True,
        "createMissingRelatedEntities": True,
        "enableMergeEntity": True,
        "resources": [
            {"kind": k, "selector": {"query": "true"},
             "port": {"entity": {"mappings": {"identifier": ".slug", "blueprint": f'"remote_{k}"'}}}}
            for k in kinds
        ],
    }


class Evaluator:
    """Evaluates the sensor the way the daemon does (evaluate_tick), carrying the cursor between ticks."""

    def __init__(self, instance: DagsterInstance, resource: MappingResource) -> None:
        self.instance = instance
        self.resource = resource
        self.cursor: str | None = None

    def tick(self):
        # As the daemon does: the resources (the mapping nests the Port resource) live for the tick.
        with build_sensor_context(instance=self.instance, cursor=self.cursor,
                                  resources={"mapping": self.resource}) as context:
            data = port_mapping_sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as inst:
        yield inst


def write(path: Path, *resources: str) -> str:
    path.write_text("resources:\n" + "".join(resources), encoding="utf-8")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recorded(cursor: str | None) -> str | None:
    return json.loads(cursor)["sha256"] if cursor else None


# -- the mapping file ----------------------------------------------------------------------------------------

def test_first_evaluation_records_without_launching_then_unchanged_skips(tmp_path, instance):
    path = tmp_path / "mapping.yaml"
    digest = write(path, USER)
    sensor = Evaluator(instance, MappingResource(path=str(path)))

    first = sensor.tick()
    assert first.run_requests == []
    assert recorded(first.cursor) == digest
    assert "first evaluation" in (first.skip_message or "")

    second = sensor.tick()
    assert second.run_requests == []
    assert recorded(second.cursor) == digest
    assert "unchanged" in (second.skip_message or "") and str(path) in second.skip_message


def test_edit_launches_sentry_port_sync_once(tmp_path, instance):
    path = tmp_path / "mapping.yaml"
    old = write(path, USER)
    sensor = Evaluator(instance, MappingResource(path=str(path)))
    sensor.tick()

    new = write(path, USER, TEAM)
    launched = sensor.tick()
    assert len(launched.run_requests) == 1
    request = launched.run_requests[0]
    assert request.run_key is not None and request.run_key.startswith(new)
    assert request.job_name in (None, "sentry_port_sync")
    assert port_mapping_sensor.job_name == "sentry_port_sync"
    assert request.tags["sentry_port/reason"] == "mapping changed"
    assert request.tags["sentry_port/mapping_sha256"] == new
    assert request.tags["sentry_port/previous_mapping_sha256"] == old
    assert request.tags["sentry_port/mapping_source"] == str(path)
    assert recorded(launched.cursor) == new

    again = sensor.tick()
    assert again.run_requests == []
    assert "unchanged" in (again.skip_message or "")


def test_same_tick_retried_from_the_same_cursor_gives_the_same_run_key(tmp_path, instance):
    path = tmp_path / "mapping.yaml"
    write(path, USER)
    sensor = Evaluator(instance, MappingResource(path=str(path)))
    sensor.tick()
    write(path, TEAM)
    cursor = sensor.cursor
    first = sensor.tick()
    sensor.cursor = cursor  # the daemon lost the tick's cursor and evaluates again
    retried = sensor.tick()
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in retried.run_requests]
    assert len(first.run_requests) == 1


def test_revert_launches_again_with_a_new_run_key(tmp_path, instance):
    path = tmp_path / "mapping.yaml"
    write(path, USER)
    sensor = Evaluator(instance, MappingResource(path=str(path)))
    sensor.tick()
    keys = []
    for resources in ((USER, TEAM), (USER,), (USER, TEAM)):
        write(path, *resources)
        data = sensor.tick()
        assert len(data.run_requests) == 1, resources
        keys.append(data.run_requests[0].run_key)
    # Dagster never launches a run key twice for one sensor: A -> B -> A -> B must still launch three times
    assert len(set(keys)) == 3
    assert keys[0].split(":")[0] == keys[2].split(":")[0]


def test_broken_edit_skips_keeps_cursor_and_fixing_it_launches(tmp_path, instance):
    path = tmp_path / "mapping.yaml"
    good = write(path, USER)
    sensor = Evaluator(instance, MappingResource(path=str(path)))
    sensor.tick()
    cursor = sensor.cursor

    write(path, USER, BAD_JQ)
    broken = sensor.tick()
    assert broken.run_requests == []
    message = broken.skip_message or ""
    assert str(path) in message
    assert "nosuchfunction" in message  # the expression that does not compile
    assert "does not load" in message
    assert broken.cursor == cursor and recorded(broken.cursor) == good

    fixed = write(path, USER, TEAM)
    data = sensor.tick()
    assert len(data.run_requests) == 1
    assert data.run_requests[0].tags["sentry_port/mapping_sha256"] == fixed
    assert data.run_requests[0].tags["sentry_port/previous_mapping_sha256"] == good


def test_unreadable_or_invalid_yaml_skips_naming_the_file(tmp_path, instance):
    path = tmp_path / "mapping.yaml"
    good = write(path, USER)
    sensor = Evaluator(instance, MappingResource(path=str(path)))
    sensor.tick()

    path.unlink()
    gone = sensor.tick()
    assert gone.run_requests == [] and recorded(gone.cursor) == good
    assert str(path) in (gone.skip_message or "") and "PORT_MAPPING_FILE" in gone.skip_message

    path.write_text("resources: [\n", encoding="utf-8")
    bad_yaml = sensor.tick()
    assert bad_yaml.run_requests == [] and recorded(bad_yaml.cursor) == good
    assert str(path) in (bad_yaml.skip_message or "") and "YAML" in bad_yaml.skip_message


def test_first_evaluation_of_a_broken_file_records_nothing(tmp_path, instance):
    path = tmp_path / "mapping.yaml"
    write(path, BAD_JQ)
    sensor = Evaluator(instance, MappingResource(path=str(path)))
    data = sensor.tick()
    assert data.run_requests == [] and data.cursor is None
    assert "nosuchfunction" in (data.skip_message or "")
    good = write(path, TEAM)
    data = sensor.tick()
    assert data.run_requests == [] and recorded(data.cursor) == good


def test_bundled_default_is_the_source_without_a_path(instance):
    resource = MappingResource()
    data = Evaluator(instance, resource).tick()
    assert recorded(data.cursor) == resource.snapshot().sha256
    assert "defaults/mapping.yaml" in (data.skip_message or "")


# -- Port's integration config --------------------------------------------------------------------------------

@pytest.fixture
def port(tmp_path):
    catalog = LocalCatalog(tmp_path / "catalog.sqlite")
    with fx.serve_port(catalog) as (url, emulator):
        yield url, emulator
    catalog.close()


def remote(url: str, identifier: str = "my-sentry", **overrides: Any) -> MappingResource:
    port: dict[str, Any] = dict(base_url=url, client_id=fx.CLIENT_ID, client_secret=fx.CLIENT_SECRET)
    port.update(overrides)
    return MappingResource(integration_identifier=identifier, port=PortResource(**port))


def test_remote_config_change_launches_and_load_returns_the_remote_mapping(port, instance):
    url, emulator = port
    emulator.set_integration_config("my-sentry", remote_config("team"), updated_at="2025-01-01T00:00:00.000Z")
    resource = remote(url)
    sensor = Evaluator(instance, resource)

    first = sensor.tick()
    assert first.run_requests == [] and "first evaluation" in (first.skip_message or "")
    state = json.loads(first.cursor)
    assert state["sha256"] == hashlib.sha256(canonical_json(remote_config("team")).encode()).hexdigest()
    assert state["updatedAt"] == "2025-01-01T00:00:00.000Z"
    assert sensor.tick().run_requests == []

    mapping = resource.load()
    assert [(r.kind, r.port.entity.mappings.blueprint) for r in mapping.config.resources] == [("team", '"remote_team"')]
    assert mapping.config.delete_dependent_entities is True
    assert resource.source == "Port integration my-sentry"

    changed = remote_config("team", "user")
    emulator.set_integration_config("my-sentry", changed, updated_at="2025-01-02T00:00:00.000Z")
    data = sensor.tick()
    assert len(data.run_requests) == 1
    request = data.run_requests[0]
    digest = hashlib.sha256(canonical_json(changed).encode()).hexdigest()
    assert request.run_key.startswith(digest)
    assert request.tags["sentry_port/mapping_source"] == "Port integration my-sentry"
    assert request.tags["sentry_port/integration_updated_at"] == "2025-01-02T00:00:00.000Z"
    # One run keeps the config it first read (all its assets map alike); the next run reads the new one.
    assert [r.kind for r in resource.load().resources] == ["team"]
    next_run = remote(url)
    assert [r.kind for r in next_run.load().resources] == ["team", "user"]
    assert next_run.load() is remote(url).load()  # compiled once per content

    # saved again unchanged: only updatedAt moves, nothing launches, the cursor follows
    emulator.set_integration_config("my-sentry", json.loads(json.dumps(changed)), updated_at="2025-01-03T00:00:00.000Z")
    resaved = sensor.tick()
    assert resaved.run_requests == []
    assert json.loads(resaved.cursor)["updatedAt"] == "2025-01-03T00:00:00.000Z"
    assert "unchanged" in (resaved.skip_message or "")

    for text in (sensor.cursor, json.dumps(request.tags), first.skip_message, resaved.skip_message):
        assert fx.CLIENT_SECRET not in (text or "")
    assert emulator.stats.requests["integration_get"] >= 6


def test_remote_broken_config_skips_and_keeps_the_cursor(port, instance):
    url, emulator = port
    emulator.set_integration_config("my-sentry", remote_config("team"))
    sensor = Evaluator(instance, remote(url))
    sensor.tick()
    cursor = sensor.cursor

    broken = remote_config("team")
    broken["resources"][0]["port"]["entity"]["mappings"]["identifier"] = ".slug | nosuchfunction("
    emulator.set_integration_config("my-sentry", broken)
    data = sensor.tick()
    assert data.run_requests == [] and data.cursor == cursor
    assert "Port integration my-sentry" in (data.skip_message or "") and "nosuchfunction" in data.skip_message


def test_remote_unknown_integration_skips_naming_the_variable(port, instance):
    url, _ = port
    data = Evaluator(instance, remote(url, identifier="nope")).tick()
    assert data.run_requests == [] and data.cursor is None
    message = data.skip_message or ""
    assert "Port integration nope" in message and "404" in message and "PORT_INTEGRATION_IDENTIFIER" in message
    assert fx.CLIENT_SECRET not in message


def test_remote_without_credentials_is_a_clear_error(instance):
    resource = MappingResource(integration_identifier="my-sentry", port=PortResource(client_id="someone"))
    with pytest.raises(MappingConfigError) as err:
        resource.load()
    message = str(err.value)
    for name in ("PORT_INTEGRATION_IDENTIFIER", "PORT_CLIENT_ID", "PORT_CLIENT_SECRET"):
        assert name in message
    with pytest.raises(Exception, match="PORT_CLIENT_SECRET"):
        Evaluator(instance, resource).tick()


# -- wiring ---------------------------------------------------------------------------------------------------

def test_resource_wiring_from_the_environment(monkeypatch):
    from dagster import EnvVar

    from sentry_port_assets.resources import build_resources

    monkeypatch.setenv("PORT_INTEGRATION_IDENTIFIER", "my-sentry")
    monkeypatch.setenv("PORT_CLIENT_ID", "id-value")
    monkeypatch.setenv("PORT_CLIENT_SECRET", "secret-value")
    monkeypatch.setenv("PORT_BASE_URL", "https://api.us.getport.io")
    monkeypatch.setenv("SENTRY_TOKEN", "token")
    monkeypatch.setenv("SENTRY_ORGANIZATION", "acme")
    mapping = build_resources()["mapping"]
    assert mapping.integration_identifier == "my-sentry"
    # the Port resource itself, nested: one place holds the credentials
    assert mapping.port is build_resources()["port"] or mapping.port == build_resources()["port"]
    assert mapping.port.base_url == "https://api.us.getport.io"
    assert mapping.port.client_secret == EnvVar("PORT_CLIENT_SECRET")  # a reference, never the value
    assert mapping.port.client_id == EnvVar("PORT_CLIENT_ID")


def test_sensor_is_registered_with_the_mapping_resource():
    from sentry_port_assets import sensors
    from sentry_port_assets.definitions import defs

    assert "port_mapping_sensor" in sensors.__all__
    sensor = defs.resolve_sensor_def("port_mapping_sensor")
    assert sensor.name == sensors.port_mapping_sensor.name
    assert sensor.job_name == "sentry_port_sync"
    assert sensor.minimum_interval_seconds == 60
    assert sensor.default_status.value == "RUNNING"
    assert "mapping" in sensor.required_resource_keys


def test_a_run_reads_ports_config_once_and_maps_every_asset_with_it(port):
    url, emulator = port
    emulator.set_integration_config("my-sentry", remote_config("team", "user"))
    result = materialize([*raw_assets, *entity_assets], resources={"sentry": DemoSentryResource(), "mapping": remote(url)})
    assert result.success
    assert emulator.stats.requests["integration_get"] == 1
    team = result.asset_value(AssetKey(["port", "entities_team"]))
    assert team and {e["blueprint"] for e in team} == {"remote_team"}


def test_a_mapping_file_and_a_port_integration_together_are_an_error(port):
    url, _ = port
    with pytest.raises(MappingConfigError, match="both PORT_MAPPING_FILE .* and PORT_INTEGRATION_IDENTIFIER"):
        MappingResource(path="/some/mapping.yaml", integration_identifier="my-sentry",
                        port=PortResource(base_url=url, client_id=fx.CLIENT_ID, client_secret=fx.CLIENT_SECRET)).load()
