"""The automation as it runs in production: a real `dagster-daemon run` over the code location, its own
DAGSTER_HOME, the webhook receiver as the `sentry-port webhooks serve` subprocess, the refresh from the CLI, and
the Sentry and Port emulators on loopback.

refresh (CLI) → publish_on_new_entities launches publish_to_port → entities in Port; a signed webhook →
sentry_webhook_sensor launches sentry_webhook_sync → the resolved issue leaves Port; an edited mapping file →
port_mapping_sensor launches sentry_port_sync. Every sensor and schedule tick the daemon recorded must have
succeeded or skipped: one failed tick fails the test.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef
from dagster._core.scheduler.instigation import TickStatus

from sentry_port_assets.emulators.port import create_port_emulator
from sentry_port_assets.emulators.sentry_data import demo_dataset
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.webhooks.receiver import sign
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.test_end_to_end import PORT_USER, expected_entities

CLIENT_ID, CLIENT_SECRET = "daemon-client", "daemon-secret-never-logged-31"
SENTRY_TOKEN = "sntrys_daemon_token_never_logged_19"
WEBHOOK_SECRET = "daemon-webhook-secret"
SENSORS = ("publish_on_new_entities", "port_mapping_sensor", "sentry_webhook_sensor", "sentry_release_sensor")
TIMEOUT = 240.0
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Deployment:
    home: Path
    env: dict[str, str]
    instance: DagsterInstance
    catalog: LocalCatalog
    sentry: RunningSentry
    mapping: Path
    receiver_url: str
    daemon: subprocess.Popen[bytes]
    logs: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dagster", *args], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=600)

    def ticks(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for state in self.instance.all_instigator_state():
            out[state.instigator_name] = list(self.instance.get_ticks(state.instigator_origin_id,
                                                                      state.selector_id, limit=1000))
        return out

    def assert_healthy(self) -> None:
        """No failed tick, and the daemon still running."""
        for name, ticks in self.ticks().items():
            failed = [t for t in ticks if t.status == TickStatus.FAILURE]
            assert not failed, f"{name} tick failed under the daemon: {failed[0].error.to_string()[:3000]}"
        assert self.daemon.poll() is None, f"dagster-daemon exited: {self.logs.read_text()[-3000:]}"

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        """Polls the instance (and the daemon's health) until `probe` returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            self.assert_healthy()
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; ticks: "
                                     f"{ {n: [t.status.value for t in ts[:5]] for n, ts in self.ticks().items()} }")
            time.sleep(0.5)

    def finished_run(self, job: str, **tags: str) -> Any:
        """The newest finished run of `job` (with these tags), failing the test if it did not succeed."""
        records = self.instance.get_run_records(RunsFilter(job_name=job, tags=tags or None), limit=1)
        if not records or records[0].dagster_run.status not in FINISHED:
            return None
        run = records[0].dagster_run
        assert run.status == DagsterRunStatus.SUCCESS, f"{job} run {run.run_id} ended {run.status.value}"
        return run

    def held(self) -> dict[str, set[str]]:
        return {bp: {e["identifier"] for e in self.catalog.entities(bp)} for bp in expected_entities(
            self.sentry.state.dataset)}


@pytest.fixture
def deployment(tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> Iterator[Deployment]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mapping = tmp_path / "mapping.yaml"
    shutil.copy(DEFAULT_MAPPING_FILE, mapping)
    sentry = sentry_emulator(demo_dataset(), token=SENTRY_TOKEN)
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    port_app = create_port_emulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    receiver_port = _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SENTRY_", "PORT_", "OCEAN__"))}
    logs = tmp_path / "daemon.log"
    with ServerThread(port_app) as port, open(logs, "wb") as log:
        env.update({
            "DAGSTER_HOME": str(home), "SENTRY_HOST": sentry.url, "SENTRY_ORGANIZATION": sentry.organization,
            "SENTRY_TOKEN": SENTRY_TOKEN, "PORT_BASE_URL": port.url, "PORT_CLIENT_ID": CLIENT_ID,
            "PORT_CLIENT_SECRET": CLIENT_SECRET, "PORT_MAPPING_FILE": str(mapping),
            "SENTRY_WEBHOOK_SECRET": WEBHOOK_SECRET, "SENTRY_WEBHOOK_INBOX": str(tmp_path / "inbox.sqlite"),
            "SENTRY_PORT_RESYNC_MINUTES": "1",  # so the schedule ticks while the test runs
        })
        receiver = subprocess.Popen(
            [sys.executable, "-m", "sentry_port_assets.cli", "webhooks", "serve", "--port", str(receiver_port)],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
        daemon = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-m", "sentry_port_assets"],
                                  cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        try:
            url = f"http://127.0.0.1:{receiver_port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and receiver.poll() is None, logs.read_text()[-3000:]
                time.sleep(0.2)
            yield Deployment(home, env, instance, catalog, sentry, mapping, url, daemon, logs)
        finally:
            for process in (daemon, receiver):
                process.terminate()
            for process in (daemon, receiver):
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            instance.dispose()


def test_sensors_and_schedule_run_the_whole_loop_under_a_real_daemon(deployment: Deployment) -> None:
    d = deployment
    data = d.sentry.state.dataset
    # The schedule (every minute here) runs sentry_port_sync, which publishes what it maps: while it ticks, the
    # refresh below could be superseded before the publish sensor sees it. It is started again at the end.
    stopped = d.cli("schedule", "stop", "sentry_resync_schedule", "-m", "sentry_port_assets")
    assert stopped.returncode == 0, stopped.stdout[-2000:] + stopped.stderr[-2000:]

    # The daemon evaluates every sensor; the mapping sensor's first tick records the mapping it will compare with.
    # A tick is recorded when its evaluation starts: wait until each has finished, or a slow first evaluation of the
    # mapping sensor could read the edited file below as its baseline and never launch.
    d.wait_for("a finished first tick of every sensor", lambda: all(
        any(t.status != TickStatus.STARTED for t in d.ticks().get(name, [])) for name in SENSORS))
    edited = d.mapping.read_text().replace("title: .name\n", 'title: .name + " (Sentry)"\n')
    assert edited != d.mapping.read_text()
    d.mapping.write_text(edited)

    refresh = d.cli("job", "execute", "-m", "sentry_port_assets", "-j", "sentry_refresh")
    assert refresh.returncode == 0, refresh.stdout[-3000:] + refresh.stderr[-3000:]
    d.wait_for("publish_to_port launched by publish_on_new_entities",
               lambda: d.finished_run("publish_to_port"))
    assert d.held() == expected_entities(data)

    # A signed webhook: the issue was resolved in Sentry, so it leaves Port (the default query is is:unresolved).
    issue = next(i for i in data.issues if i["status"] == "unresolved")
    issue.update(status="resolved", substatus=None)
    body = json.dumps({"action": "resolved", "installation": {"uuid": "5a1e"},
                       "data": {"issue": copy.deepcopy(issue), "resolution_type": "resolved"},
                       "actor": {"type": "application", "id": "sentry", "name": "Sentry"}}).encode()
    answer = httpx.post(f"{d.receiver_url}/webhooks/sentry", content=body, headers={
        "Content-Type": "application/json", "Sentry-Hook-Resource": "issue", "Request-ID": "daemon-1",
        "Sentry-Hook-Signature": sign(WEBHOOK_SECRET, body), "Sentry-Hook-Timestamp": str(int(time.time()))})
    assert answer.status_code == 202, answer.text
    d.wait_for("sentry_webhook_sync launched by sentry_webhook_sensor",
               lambda: d.finished_run("sentry_webhook_sync"))
    assert not [e for e in d.held()["sentryIssue"] if e.startswith(f"{issue['id']}-")]

    # A deploy recorded in Sentry, which sends no webhook for it: sentry_release_sensor sees it on its next poll
    # (every minute) and sentry_release_sync brings it to Port, within 90 s.
    release = sorted(data.releases.releases.values(), key=lambda r: r.date_created)[-1]
    deploy = data.releases.deploy(release.version, "production", datetime.now(timezone.utc), name="daemon")
    recorded = time.monotonic()
    d.wait_for("the deploy in Port", lambda: deploy.id in {e["identifier"] for e in d.catalog.entities("sentryDeploy")},
               timeout=90)
    print(f"\ndeploy recorded in Sentry -> in Port: {time.monotonic() - recorded:.1f} s")
    d.wait_for("sentry_release_sync launched by sentry_release_sensor", lambda: d.finished_run("sentry_release_sync"))

    d.wait_for("sentry_port_sync launched by port_mapping_sensor",
               lambda: d.finished_run("sentry_port_sync", **{"sentry_port/reason": "mapping changed"}))
    d.wait_for("the refreshes to settle", lambda: not d.instance.get_run_records(
        RunsFilter(statuses=[s for s in DagsterRunStatus if s not in FINISHED])))
    assert d.held() == expected_entities(data)
    assert {e["title"] for e in d.catalog.entities("sentryTeam")} == {f"{t['name']} (Sentry)" for t in data.teams}

    before = len(d.ticks().get("sentry_resync_schedule", []))
    started = d.cli("schedule", "start", "sentry_resync_schedule", "-m", "sentry_port_assets")
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    d.wait_for("a tick of sentry_resync_schedule",
               lambda: len(d.ticks().get("sentry_resync_schedule", [])) > before, timeout=90)
    d.assert_healthy()
