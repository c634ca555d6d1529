"""The production topology on loopback, run from the recipe itself: every service of `deploy/docker-compose.yaml`
(a real PostgreSQL server, the code location's gRPC server, `dagster-webserver`, `dagster-daemon` and the webhook
receiver) is started with the command and the environment the recipe gives it, each its own process, on a Dagster
instance configured by `deploy/dagster.yaml` (PostgreSQL storage, the run queue, the pool). Only hosts, ports and
`/opt/dagster/home` are moved to loopback and a temporary folder, and the console scripts run from this interpreter.

The test drives it as a user would: it launches `sentry_port_sync` through the webserver's GraphQL API, posts a burst
of 200 signed webhooks for issues created in Sentry (restarting the receiver in the middle of the burst), waits for
the sensors, and checks the Port emulator's final state, every event's arrival, and every run's status. It prints the
wall time and how long an event took from POST to Port entity (p50/p95).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sentry_port_assets.emulators.port import create_port_emulator
from sentry_port_assets.emulators.sentry_data import SentryDataset, build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets.webhooks.receiver import sign
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.postgres import PostgresServer
from sentry_port_assets_tests.test_end_to_end import PORT_USER, expected_entities

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CONTAINER_HOME = "/opt/dagster/home"
# The recipe's console scripts, run from this interpreter (the same packages the image installs).
SCRIPTS = {
    "dagster": [sys.executable, "-m", "dagster"],
    "dagster-webserver": [sys.executable, "-m", "dagster_webserver"],
    "dagster-daemon": [sys.executable, "-m", "dagster._daemon"],
    "sentry-port": [sys.executable, "-m", "sentry_port_assets.cli"],
}
SECRETS = {"POSTGRES_PASSWORD": "", "SENTRY_TOKEN": "sntrys_topology_token_never_logged",
           "PORT_CLIENT_ID": "topology-client", "PORT_CLIENT_SECRET": "topology-secret-never-logged",
           "SENTRY_WEBHOOK_SECRET": "topology-webhook-secret"}
BURST = 200
TIMEOUT = 300.0
WORKER = "sentry_webhook_worker"
P50_BOUND, P95_BOUND = 5.0, 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


def substitute(value: str, variables: dict[str, str]) -> str:
    """Compose's `${VAR}` and `${VAR:-default}`."""
    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        found = variables.get(name)
        return found if found else (default or "")
    return re.sub(r"\$\{([A-Z_]+)(:-([^}]*))?\}", one, value)


@dataclass
class Topology:
    home: Path
    ports: dict[str, int]
    variables: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def localize(self, text: str) -> str:
        """A recipe's host names, ports and paths on loopback."""
        text = text.replace(CONTAINER_HOME, str(self.home))
        for service, port in self.ports.items():
            text = text.replace(f"{service}:{DEFAULT_PORTS[service]}", f"127.0.0.1:{port}")
        return text

    def command(self, service: str) -> list[str]:
        spec = compose()["services"][service]
        argv = list(spec["command"])
        argv = [*SCRIPTS[argv[0]], *argv[1:]]
        out = []
        for arg in argv:
            arg = "127.0.0.1" if arg == "0.0.0.0" else arg
            arg = str(self.ports[service]) if arg == str(DEFAULT_PORTS.get(service)) else arg
            out.append(self.localize(arg))
        return out

    def environment(self, service: str) -> dict[str, str]:
        spec = compose()["services"][service].get("environment") or {}
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
        return {**base, **{k: self.localize(substitute(str(v), self.variables)) for k, v in spec.items()}}

    def start(self, service: str) -> None:
        log = open(self.logs / f"{service}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[service] = subprocess.Popen(self.command(service), cwd=self.home, env=self.environment(service),
                                                   stdout=log, stderr=subprocess.STDOUT)

    def stop(self, service: str) -> None:
        process = self.processes.pop(service)
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.logs.glob("*.log"))

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited while waiting for {what}:\n{self.log_tail()}"
            try:
                found = probe()
            except (httpx.TransportError, subprocess.SubprocessError, OSError):
                found = None
            if found:
                return found
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log_tail()}"
            time.sleep(0.25)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.post(f"{self.url('webserver')}/graphql", json={"query": query, "variables": variables or {}},
                            timeout=60)
        assert answer.is_success, f"{answer.status_code}: {answer.text[:3000]}"
        body = answer.json()
        assert "errors" not in body, body
        return body["data"]


DEFAULT_PORTS = {"codeserver": 4000, "webserver": 3000, "receiver": 8000, "postgres": 5432}

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
LOCATION = """
query { workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
RELOAD = """
mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }"""
RUNS = """
query { runsOrError(limit: 100) { ... on Runs { results { runId jobName status tags { key value } } } } }"""


def location_loaded(topology: Topology) -> bool:
    """Whether the webserver has loaded the code location. A webserver that asked the code server before it was
    serving keeps that load error (it does not retry by itself): it is told to reload, as the UI's button does."""
    [entry] = topology.graphql(LOCATION)["workspaceOrError"]["locationEntries"]
    loaded = (entry["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
    if not loaded:
        topology.graphql(RELOAD, {"name": entry["name"]})
    return loaded


def holdback(data: SentryDataset, count: int) -> list[dict[str, Any]]:
    """Takes `count` unresolved issues out of Sentry (they are created during the test, each with a webhook)."""
    held = [i for i in data.issues if i["status"] == "unresolved"][-count:]
    assert len(held) == count, f"the dataset has only {len(held)} unresolved issues"
    ids = {i["id"] for i in held}
    data.issues = [i for i in data.issues if i["id"] not in ids]
    return held


@pytest.fixture
def topology(tmp_path: Path, postgres: PostgresServer) -> Iterator[Topology]:
    home = tmp_path / "home"
    home.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    # The recipe's PostgreSQL: its role, its database, and its init script (the inbox's database).
    psql = [str(postgres.bin / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-q"]
    subprocess.run([*psql, "-c", "DO $$ BEGIN CREATE ROLE dagster LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object "
                    "THEN NULL; END $$;"], check=True, capture_output=True, timeout=60)
    for statement in ("DROP DATABASE IF EXISTS sentry_port_inbox", "DROP DATABASE IF EXISTS dagster",
                      "CREATE DATABASE dagster OWNER dagster"):
        subprocess.run([*psql, "-c", statement], check=True, capture_output=True, timeout=60)
    subprocess.run([*psql, "-f", str(DEPLOY / "postgres-init.sql")], check=True, capture_output=True, timeout=60)
    ports = {"codeserver": free_port(), "webserver": free_port(), "receiver": free_port(), "postgres": postgres.port}
    topo = Topology(home, ports, {}, logs)
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    (home / "workspace.yaml").write_text(topo.localize((DEPLOY / "workspace.yaml").read_text()).replace(
        "host: codeserver", "host: 127.0.0.1").replace(f"port: {DEFAULT_PORTS['codeserver']}",
                                                       f"port: {ports['codeserver']}"))
    yield topo
    for service in list(topo.processes):
        topo.stop(service)


def test_the_production_topology_end_to_end(topology: Topology, sentry_emulator: Callable[..., RunningSentry],
                                            tmp_path: Path) -> None:
    started = time.monotonic()
    data = build_org(issues=BURST * 2 + 60)
    reserve = holdback(data, BURST)
    sentry = sentry_emulator(data, token=SECRETS["SENTRY_TOKEN"], limits={})
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    port_app = create_port_emulator(catalog, client_id=SECRETS["PORT_CLIENT_ID"],
                                    client_secret=SECRETS["PORT_CLIENT_SECRET"])
    with ServerThread(port_app) as port:
        topology.variables.update(SECRETS, SENTRY_HOST=sentry.url, SENTRY_ORGANIZATION=sentry.organization,
                                  PORT_BASE_URL=port.url,
                                  SENTRY_WEBHOOK_WORKER=os.environ.get("TOPOLOGY_WEBHOOK_WORKER", "true"))
        for service in ("codeserver", "webserver", "daemon", "receiver"):
            topology.start(service)
        topology.wait("the code server", lambda: subprocess.run(
            [*SCRIPTS["dagster"], "api", "grpc-health-check", "-p", str(topology.ports["codeserver"])],
            capture_output=True, timeout=30).returncode == 0)
        topology.wait("the webserver", lambda: httpx.get(f"{topology.url('webserver')}/server_info").is_success)
        topology.wait("the receiver", lambda: httpx.get(f"{topology.url('receiver')}/healthz").is_success)
        topology.wait("the code location in the webserver", lambda: location_loaded(topology))

        # A user launches the sync from the UI (the same GraphQL call the launchpad makes).
        launched = topology.graphql(LAUNCH, {"params": {
            "selector": {"repositoryLocationName": "sentry_port_assets", "repositoryName": "__repository__",
                         "jobName": "sentry_port_sync"}, "runConfigData": {}}})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def run_status(wanted: str) -> bool:
            runs = topology.graphql(RUNS)["runsOrError"]["results"]
            status = next(r["status"] for r in runs if r["runId"] == run_id)
            assert status not in ("FAILURE", "CANCELED"), f"sentry_port_sync {status}:\n{topology.log_tail()}"
            return status == wanted

        topology.wait("sentry_port_sync through the queue and the daemon", lambda: run_status("SUCCESS"))
        held = {bp: {e["identifier"] for e in catalog.entities(bp)} for bp in expected_entities(data)}
        assert held == expected_entities(data)

        # A resync in flight while a burst of 200 issues is created in Sentry, each with its webhook; the receiver
        # restarts in the middle of the burst.
        resync = topology.graphql(LAUNCH, {"params": {
            "selector": {"repositoryLocationName": "sentry_port_assets", "repositoryName": "__repository__",
                         "jobName": "sentry_port_sync"}, "runConfigData": {}}})["launchRun"]
        assert resync["__typename"] == "LaunchRunSuccess", resync
        posted: dict[str, float] = {}
        statuses: dict[str, int] = {}
        refused = 0
        # Arrivals are watched while the burst is posted, so each event's time is its own, not the burst's end.
        arrived: dict[str, float] = {}
        burst_over = threading.Event()

        def watch() -> None:
            while not burst_over.is_set() or len(arrived) < len(posted):
                present = {e["identifier"].split("-")[0] for e in catalog.entities("sentryIssue")}
                now = time.monotonic()
                for issue_id in list(posted):
                    if issue_id not in arrived and issue_id in present:
                        arrived[issue_id] = now
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for n, issue in enumerate(reserve):
            now = time.time()
            issue.update(firstSeen=_iso(now), lastSeen=_iso(now))
            data.issues.append(issue)
            body = json.dumps({"action": "created", "installation": {"uuid": "5a1e"},
                               "data": {"issue": copy.deepcopy(issue)},
                               "actor": {"type": "application", "id": "sentry", "name": "Sentry"}}).encode()
            headers = {"Content-Type": "application/json", "Sentry-Hook-Resource": "issue",
                       "Request-ID": f"burst-{n}", "Sentry-Hook-Signature": sign(SECRETS["SENTRY_WEBHOOK_SECRET"], body)}
            if n == BURST // 2:
                topology.stop("receiver")
                topology.start("receiver")
            while True:  # a sender that retries what was not acknowledged (a load balancer's retry, say)
                try:
                    headers["Sentry-Hook-Timestamp"] = str(int(time.time()))
                    answer = httpx.post(f"{topology.url('receiver')}/webhooks/sentry", content=body, headers=headers,
                                        timeout=10)
                    if answer.status_code == 202:
                        statuses[answer.json().get("status")] = statuses.get(answer.json().get("status"), 0) + 1
                        break
                    assert answer.status_code >= 500, answer.text
                except httpx.TransportError:
                    pass
                refused += 1
                time.sleep(0.1)
            posted[issue["id"]] = time.monotonic()

        burst_over.set()
        topology.wait("every burst issue in Port", lambda: len(arrived) == len(posted))
        watcher.join(timeout=10)

        def settled() -> bool:
            runs = topology.graphql(RUNS)["runsOrError"]["results"]
            return all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs if r["jobName"] != WORKER)

        topology.wait("every run to finish (the resync and its publish; the worker's replay)", settled)
        held = {bp: {e["identifier"] for e in catalog.entities(bp)} for bp in expected_entities(data)}
        assert held == expected_entities(data)

        with Inbox(topology.localize(substitute(compose()["x-inbox"]["SENTRY_WEBHOOK_INBOX"],
                                                topology.variables))) as inbox:
            topology.wait("every event marked done", lambda: inbox.count_pending() == 0, timeout=60)
            burst = [e for e in inbox.received_since(datetime.fromtimestamp(0, timezone.utc), 10_000) if e.request_id.startswith("burst-")]
            assert len(burst) == BURST and inbox.count_dead() == 0, (
                statuses, inbox.last_id(), sorted(set(f"burst-{n}" for n in range(BURST)) - {e.request_id for e in burst})[:20],
                [(e.request_id, e.received_at.isoformat()) for e in burst[-3:]])

        runs = topology.graphql(RUNS)["runsOrError"]["results"]
        worker = topology.variables["SENTRY_WEBHOOK_WORKER"] == "true"
        # the webhook worker (SENTRY_WEBHOOK_WORKER, on in the recipe) is still running, waiting for the next event
        assert [r["status"] for r in runs if r["jobName"] == WORKER] == (["STARTED"] if worker else []), [
            (r["jobName"], r["status"]) for r in runs]
        assert all(r["status"] == "SUCCESS" for r in runs if r["jobName"] != WORKER), [
            (r["jobName"], r["status"]) for r in runs]
        assert {r["jobName"] for r in runs} >= {"sentry_port_sync", WORKER if worker else "sentry_webhook_sync"}
        for secret in ("SENTRY_TOKEN", "PORT_CLIENT_SECRET", "SENTRY_WEBHOOK_SECRET"):
            assert SECRETS[secret] not in topology.log_tail()

    latencies = sorted(arrived[i] - posted[i] for i in posted)
    if os.environ.get("TOPOLOGY_DEBUG"):
        print("\nby event:", " ".join(f"{arrived[i] - posted[i]:.1f}" for i in posted))
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))]
    webhook_runs = sum(1 for r in runs if r["jobName"] == "sentry_webhook_sync")
    # The targets (p95 <= 5 s, p50 <= 3 s on this 2-core machine) are measured side by side with the batch runs in
    # benchmarks/bench_webhook_latency.py; here, beside the other tests on shared cores, a bound that the worker meets
    # with room and the batch runs (p50 9.4 s, p95 29.6 s measured alone) do not.
    if topology.variables["SENTRY_WEBHOOK_WORKER"] == "true":
        assert p95 <= P95_BOUND and p50 <= P50_BOUND, (p50, p95)
    print(f"\ntopology: wall {time.monotonic() - started:.1f} s; {BURST} events ({refused} posts refused while the "
          f"receiver restarted, all resent and acknowledged), {webhook_runs} webhook runs; POST -> Port entity "
          f"p50 {p50:.1f} s, p95 {p95:.1f} s")


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + ".000000Z"
