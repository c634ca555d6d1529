"""The publish asset's safety rules and the sensor that launches publish_to_port (in process, local catalog)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
    materialize,
)
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from sentry_port_assets_tests.conftest import ENTITY_INPUTS, table_text
from sentry_port_assets.assets.catalog import CATALOG_KEY, port_catalog
from sentry_port_assets.assets.entities import entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.port.datasource import DEFAULT_DATASOURCE
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.errors import PortConfigError
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sensors.publish import publish_on_new_entities
from sentry_port_assets.config import Settings
from sentry_port_assets.resources import build_resources
from sentry_port_assets.resources.demo import DemoSentryResource

ALL = [*raw_assets, *entity_assets, port_catalog]
REFRESH = [*raw_assets, *entity_assets]


def resources(catalog: Path, **port: Any) -> dict[str, Any]:
    return {"sentry": DemoSentryResource(), "mapping": MappingResource(),
            "port": PortResource(local_catalog=str(catalog), **port), **ENTITY_INPUTS}


def publish_metadata(result: Any) -> dict[str, Any]:
    [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key == CATALOG_KEY]
    return {k: v.value for k, v in mat.materialization.metadata.items()}


def test_demo_sync_fills_the_local_catalog_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    instance = DagsterInstance.ephemeral()
    first = publish_metadata(materialize(ALL, resources=resources(tmp_path / "c.sqlite"), instance=instance))
    assert first["failed"] == 0 and first["created"] > 0
    catalog = LocalCatalog(tmp_path / "c.sqlite")
    assert catalog.get_entity("sentryProjectEnvironment", "python-fastapi-production") is not None
    again = publish_metadata(materialize(ALL, resources=resources(tmp_path / "c.sqlite"), instance=instance))
    assert again["upserts_sent"] == 0 and again["created"] == again["updated"] == again["deleted"] == 0


def test_deletes_need_every_input_from_one_resync(tmp_path: Path) -> None:
    instance = DagsterInstance.ephemeral()
    res = resources(tmp_path / "c.sqlite")
    materialize(ALL, resources=res, instance=instance)
    catalog = LocalCatalog(tmp_path / "c.sqlite")
    catalog.upsert_entities("sentryIssue", [{"identifier": "stale-1", "title": "old", "properties": {},
                                             "relations": {}}], merge=False, datasource=DEFAULT_DATASOURCE.user_agent)
    # Only the user entities are refreshed: the other inputs come from the earlier run.
    materialize([*raw_assets, *entity_assets], selection=[AssetKey(["port", "entities_user"])], resources=res,
                instance=instance)
    partial = publish_metadata(materialize(ALL, selection=[CATALOG_KEY], resources=res, instance=instance))
    assert partial["deleted"] == 0
    assert "different runs" in partial["deletes"] and "port/entities_user" in partial["deletes"]
    assert catalog.get_entity("sentryIssue", "stale-1") is not None

    full = publish_metadata(materialize(ALL, resources=res, instance=instance))
    assert full["deleted"] == 1
    assert catalog.get_entity("sentryIssue", "stale-1") is None


def test_demo_data_never_reaches_a_real_port(tmp_path: Path) -> None:
    """The resources chosen for the demo (no SENTRY_TOKEN) refuse Port credentials, even ones a run's config adds
    from the launchpad (the settings refuse them at load: test_port_cli_and_secrets)."""
    res = {**build_resources(Settings(local_catalog=str(tmp_path / "c.sqlite"))), **ENTITY_INPUTS}
    assert isinstance(res["sentry"], DemoSentryResource) and res["port"].demo_source
    launchpad = {"resources": {"port": {"config": {"client_id": "id", "client_secret": "pw-9f3e1d",
                                                   "base_url": "http://127.0.0.1:9"}}}}
    result = materialize(ALL, resources=res, run_config=launchpad, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "demo data must never reach a real Port" in str(failure.event_specific_data.error)
    assert "pw-9f3e1d" not in str(failure.event_specific_data.error)


def evaluate(instance: DagsterInstance, cursor: str | None) -> SensorResult | SkipReason:
    return publish_on_new_entities(build_sensor_context(instance=instance, cursor=cursor))


def test_sensor_launches_once_per_new_set_of_entities(tmp_path: Path) -> None:
    instance = DagsterInstance.ephemeral()
    res = resources(tmp_path / "c.sqlite")
    skip = evaluate(instance, None)
    assert isinstance(skip, SkipReason)
    assert "no entity asset has been materialized" in (skip.skip_message or "")

    materialize(REFRESH, resources=res, instance=instance)
    first = evaluate(instance, None)
    assert isinstance(first, SensorResult)
    [request] = first.run_requests or []
    assert isinstance(request, RunRequest) and request.run_key

    repeat = evaluate(instance, first.cursor)
    assert isinstance(repeat, SkipReason) and "no new entity materializations" in (repeat.skip_message or "")

    materialize(REFRESH, resources=res, instance=instance)
    second = evaluate(instance, first.cursor)
    assert isinstance(second, SensorResult)
    [request2] = second.run_requests or []
    assert request2.run_key != request.run_key
    assert json.loads(second.cursor or "{}") != json.loads(first.cursor or "{}")


def test_sensor_waits_while_a_refresh_runs_and_skips_what_sync_already_published(tmp_path: Path) -> None:
    instance = DagsterInstance.ephemeral()
    res = resources(tmp_path / "c.sqlite")
    materialize(REFRESH, resources=res, instance=instance)
    instance.add_run(DagsterRun(job_name="sentry_refresh", status=DagsterRunStatus.STARTED))
    waiting = evaluate(instance, None)
    assert isinstance(waiting, SkipReason) and "still in progress" in (waiting.skip_message or "")

    other = DagsterInstance.ephemeral()
    materialize(ALL, resources=res, instance=other)  # sentry_port_sync: entities and publish in one run
    done = evaluate(other, None)
    assert isinstance(done, SensorResult) and not done.run_requests
    assert done.cursor


def test_port_resource_names_the_missing_credential(tmp_path: Path) -> None:
    with pytest.raises(PortConfigError, match="PORT_CLIENT_SECRET"):
        PortResource(client_id="only-id").target()


def test_entities_port_refuses_fail_the_publish_with_every_failure_listed(tmp_path: Path) -> None:
    catalog = LocalCatalog(tmp_path / "c.sqlite")
    # An existing blueprint requiring a property the mapping does not set: ensure never changes it, so the
    # issue entities are refused.
    catalog.create_blueprint({"identifier": "sentryIssue", "title": "Issue", "relations": {},
                              "schema": {"properties": {"severity": {"type": "string"}}, "required": ["severity"]}})
    result = materialize(ALL, resources=resources(tmp_path / "c.sqlite"), raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "port__catalog"
    data = failure.event_specific_data
    refused = data.user_failure_data.metadata
    assert catalog.count("sentryIssue") == 0
    assert refused["failed"].value > 0 and refused["failed"].value == refused["failures_total"].value
    assert "sentryIssue" in table_text(refused["failures"]) and "severity" in table_text(refused["failures"])
    assert "entities failed to publish" in data.user_failure_data.description
    assert catalog.count("sentryUser") > 0, "the other blueprints were still published"
