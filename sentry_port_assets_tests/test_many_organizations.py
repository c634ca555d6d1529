"""Many organizations in one deployment, as production runs them: one code location with an instance per
organization, deploy/dagster.yaml on PostgreSQL (the run queue, the `sentry_port_writes` pool of 1), a real
`dagster-daemon` launching each run in a process of its own (the default run launcher; the Kubernetes run launcher
of the Helm recipe starts a pod instead, with the same `dagster api execute_run` inside). Two organizations' resyncs
run at the same time, each reading only what it wrote itself (a pod has only its own disk), and never write to Port at
once."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef

from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry, stop
from sentry_port_assets_tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]
ORGS = ("acme", "globex")
TIMEOUT = 300.0
CODE = '''
from dagster import Definitions, EnvVar
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource


def organization(prefix: str, host: str, slug: str, mapping: str, port: str) -> Definitions:
    return build_sentry_port_defs(
        key_prefix=prefix,
        sentry=SentryResource(host=host, organization=slug, token=EnvVar(prefix.upper() + "_SENTRY_TOKEN")),
        mapping=MappingResource(path=mapping),
        port=PortResource(base_url=port, client_id=EnvVar("PORT_CLIENT_ID"),
                          client_secret=EnvVar("PORT_CLIENT_SECRET"), integration_identifier="sentry-" + prefix))


defs = Definitions.merge(ORGANIZATIONS)
'''


def _intervals(instance: DagsterInstance, run_id: str, org: str) -> dict[str, tuple[float, float]]:
    """Each step of the run: (start, end), from the run's event log. Asserts that every input a step loaded was
    written by a step of the same run, or is an entity asset nothing ever materialized (the kinds the mapping does
    not map, which the publish reads as absent): a run in a pod of its own (the Kubernetes run launcher) has only
    its own files."""
    started: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    loaded: list[tuple[str, str | None]] = []
    for event in instance.all_logs(run_id):
        kind = event.dagster_event.event_type_value if event.dagster_event else None
        if kind == "STEP_START" and event.step_key:
            started[event.step_key] = event.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            spans[event.step_key] = (started[event.step_key], event.timestamp)
        elif kind == "LOADED_INPUT" and event.dagster_event is not None:
            data = event.dagster_event.event_specific_data
            loaded.append((str(event.step_key), data.upstream_step_key or data.input_name))
    outside = [(step, source) for step, source in loaded if source not in spans and
               instance.get_latest_materialization_event(AssetKey([org, "port", source])) is not None]
    assert loaded and not outside, f"inputs from outside the run: {outside}"
    return spans


def test_two_organizations_resync_at_once_and_write_to_port_one_at_a_time(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry], postgres: PostgresServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An issue-list request of one organization waits (20 s at most, under the client's 30 s timeout) for one of
    # the other's to be waiting too; `met` holds those that found the other there: both runs were reading Sentry at
    # the same moment. A request that waited in vain goes on, and the next one tries again.
    waiting: set[str] = set()
    met: set[str] = set()

    def meeting(org: str) -> Callable[[str, dict[str, str]], Awaitable[None]]:
        other = next(o for o in ORGS if o != org)

        async def hold(endpoint: str, params: dict[str, str]) -> None:
            if endpoint != "/organizations/{org}/issues/" or org in met:
                return
            waiting.add(org)
            deadline = time.monotonic() + 20
            while other not in waiting and other not in met and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if other in waiting or other in met:
                met.add(org)
            waiting.discard(org)
        return hold

    sentries = {org: sentry_emulator(build_org(org, issues=200, seed=3 + n), token=f"{org}-token",
                                     hold=meeting(org)) for n, org in enumerate(ORGS)}
    mappings = {}
    for org in ORGS:
        mappings[org] = tmp_path / f"{org}.yaml"
        mappings[org].write_text((REPO / "sentry_port_assets" / "defaults" / "examples" / "mapping-organization-prefix.yaml")
                                 .read_text().replace("acme-", f"{org}-"))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(fx.PORT_USER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    database = postgres.database().replace("postgresql://", "postgresql+psycopg2://")  # as the recipes set it
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", database)  # this process reads the instance too
    with fx.serve_port(catalog) as (port_url, _):
        instances = ", ".join(f"organization({org!r}, {sentries[org].url!r}, {org!r}, {str(mappings[org])!r}, "
                              f"{port_url!r})" for org in ORGS)
        (tmp_path / "orgs.py").write_text(CODE.replace("ORGANIZATIONS", instances))
        env.update(DAGSTER_HOME=str(home), DAGSTER_POSTGRES_URL=database, PORT_BASE_URL=port_url,
                   PORT_CLIENT_ID=fx.CLIENT_ID, PORT_CLIENT_SECRET=fx.CLIENT_SECRET,
                   **{f"{org.upper()}_SENTRY_TOKEN": f"{org}-token" for org in ORGS})
        target = ["-f", str(tmp_path / "orgs.py"), "-d", str(tmp_path)]
        log = open(tmp_path / "daemon.log", "wb")
        for org in ORGS:  # queued through the instance's run coordinator; the daemon launches them
            launched = subprocess.run([sys.executable, "-m", "dagster", "job", "launch", *target, "-j",
                                       f"{org}__sentry_port_sync"], cwd=home, env=env, capture_output=True,
                                      text=True, timeout=120)
            assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
        daemon = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", *target], cwd=home, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        try:
            deadline = time.monotonic() + TIMEOUT
            while True:
                runs = instance.get_runs()
                if len(runs) == 2 and all(r.is_finished for r in runs):
                    break
                assert time.monotonic() < deadline and daemon.poll() is None, \
                    (tmp_path / "daemon.log").read_text()[-3000:]
                time.sleep(1)
            assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), [(r.job_name, r.status) for r in runs]
            spans = {r.job_name.split("__")[0]: _intervals(instance, r.run_id, r.job_name.split("__")[0])
                     for r in runs}
        finally:
            stop(daemon)
            log.close()
            instance.dispose()

    # Both organizations were being read from Sentry at the same moment: separate runs, side by side.
    assert met == set(ORGS), "the two resyncs never read Sentry at the same time"
    # Every step that writes to Port (the pool's steps) of one run ended before the other's began.
    writes = [(org, span) for org, steps in spans.items() for k, span in steps.items() if k.endswith("port__catalog")]
    assert {org for org, _ in writes} == set(ORGS), spans
    (_, (s1, e1)), (_, (s2, e2)) = sorted(writes, key=lambda w: w[1][0])
    assert e1 <= s2, f"two writers to Port at once: {writes}"
    # Each organization's entities are in Port, under its own prefix.
    for org in ORGS:
        assert any(e["identifier"].startswith(f"{org}-") for e in catalog.entities("sentryIssue"))
    catalog.close()
