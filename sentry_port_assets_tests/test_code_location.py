"""Every sensor and schedule evaluated the way the daemon evaluates them: through Dagster's own code-location
loading (a gRPC code server over `-m sentry_port_assets`, as `dagster sensor preview` and `dagster-daemon` do),
with the resources the definitions declare, not resources built by hand in the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget

REPO = Path(__file__).resolve().parents[1]
SENSORS = {"publish_on_new_entities", "port_mapping_sensor", "sentry_webhook_sensor", "sentry_release_sensor"}
SCHEDULES = {"sentry_resync_schedule"}


@pytest.fixture
def code_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DagsterInstance, object]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in list(os.environ):  # the embedded default: no credentials, no overrides
        if name.startswith(("SENTRY_", "PORT_", "OCEAN__")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with DagsterInstance.get() as instance:
        target = ModuleTarget(module_name="sentry_port_assets", attribute=None, working_directory=str(REPO),
                              location_name="sentry_port_assets")
        with WorkspaceProcessContext(instance, target) as workspace:
            location = workspace.create_request_context().get_code_location("sentry_port_assets")
            yield instance, location


def test_every_sensor_and_schedule_evaluates_through_the_code_server(code_location) -> None:
    instance, location = code_location
    [repo] = location.get_repositories().values()
    assert {s.name for s in repo.get_sensors()} == SENSORS
    assert {s.name for s in repo.get_schedules()} == SCHEDULES

    for sensor in repo.get_sensors():
        # raises DagsterUserCodeProcessError when the evaluation fails in the code server, as a daemon tick would
        data = location.get_sensor_execution_data(instance, repo.handle, sensor.name, None, None, None,
                                                  log_key=None, last_sensor_start_time=None)
        assert data.run_requests or data.skip_message, sensor.name

    for schedule in repo.get_schedules():
        data = location.get_schedule_execution_data(instance, repo.handle, schedule.name, None, log_key=None)
        assert [r.job_name or schedule.job_name for r in data.run_requests] == ["sentry_port_sync"], schedule.name
