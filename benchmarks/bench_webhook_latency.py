"""How long a Sentry webhook takes to reach Port: a run per batch (SENTRY_WEBHOOK_WORKER=false) against the webhook
worker (true), on a SQLite Dagster instance and on a PostgreSQL one, side by side in one run.

    python benchmarks/bench_webhook_latency.py [--events 40] [--every 0.25]

Each of the four setups is what a user runs: a real `dagster-daemon` over the code location, `sentry-port webhooks
serve`, the Sentry and Port emulators on loopback. SQLite: the quick start's instance (the default run coordinator),
the inbox a SQLite file. PostgreSQL: `deploy/dagster.yaml` (PostgreSQL storage, the run queue, the pool), the inbox
in PostgreSQL, as the production recipes have it. After a first resync and a settling pause (the worker started by
its sensor, as it is long before any event in production), `--events` signed webhooks (each an issue resolved in
Sentry) are posted `--every` seconds apart; an event's latency is from its POST to the moment its entity left Port.
Needs PostgreSQL's server binaries for the PostgreSQL rows (skipped, and said so, without them).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from sentry_port_assets.emulators.port import create_port_emulator
from sentry_port_assets.emulators.sentry_api import EmulatorConfig, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.webhooks.receiver import sign

REPO = Path(__file__).resolve().parents[1]
PORT_USER = {"identifier": "_user", "title": "User", "schema": {"properties": {}, "required": []}, "relations": {}}
SECRET, TOKEN = "bench-webhook-secret", "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres() -> Any:
    """A throwaway PostgreSQL server (the tests' helper), or None where its binaries are missing."""
    if shutil.which("pg_ctl") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        return None
    sys.path.insert(0, str(REPO))
    from sentry_port_assets_tests.postgres import start_postgres
    return start_postgres()


def measure(worker: bool, pg: Any, events: int, every: float) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    home = folder / "home"
    home.mkdir()
    data = build_org(issues=events + 40, many_values=0)
    sentry_app = create_sentry_emulator(data, EmulatorConfig(token=TOKEN, limits={}))
    catalog = LocalCatalog(folder / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    port_app = create_port_emulator(catalog, client_id="bench", client_secret="bench-secret")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    if pg is None:
        (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
        inbox = str(folder / "inbox.sqlite")
    else:
        shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
        env["DAGSTER_POSTGRES_URL"] = pg.database().replace("postgresql://", "postgresql+psycopg2://")
        inbox = pg.database()
    receiver_port = free_port()
    with ServerThread(sentry_app) as sentry, ServerThread(port_app) as port, open(folder / "log", "wb") as log:
        env.update(DAGSTER_HOME=str(home), SENTRY_HOST=sentry.url, SENTRY_ORGANIZATION=data.slug, SENTRY_TOKEN=TOKEN,
                   PORT_BASE_URL=port.url, PORT_CLIENT_ID="bench", PORT_CLIENT_SECRET="bench-secret",
                   SENTRY_WEBHOOK_SECRET=SECRET, SENTRY_WEBHOOK_INBOX=inbox,
                   SENTRY_WEBHOOK_WORKER="true" if worker else "false", SENTRY_PORT_LOG_LEVEL="WARNING")
        sync = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j",
                               "sentry_port_sync"], cwd=home, env=env, capture_output=True, text=True)
        assert sync.returncode == 0, sync.stderr[-2000:]
        processes = [
            subprocess.Popen([sys.executable, "-m", "sentry_port_assets.cli", "webhooks", "serve", "--port",
                              str(receiver_port)], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT),
            subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-m", "sentry_port_assets"], cwd=home,
                             env=env, stdout=log, stderr=subprocess.STDOUT)]
        try:
            time.sleep(25)  # the daemon's first ticks; with the worker, its run is up
            issues = [i for i in data.issues if i["status"] == "unresolved"][:events]
            posted: dict[str, float] = {}
            gone: dict[str, float] = {}
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    held = {e["identifier"].split("-")[0] for e in catalog.entities("sentryIssue")}
                    now = time.monotonic()
                    for issue_id in list(posted):
                        if issue_id not in gone and issue_id not in held:
                            gone[issue_id] = now
                    time.sleep(0.05)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            for n, issue in enumerate(issues):
                issue.update(status="resolved", substatus=None)
                body = json.dumps({"action": "resolved", "installation": {"uuid": "5a1e"},
                                   "data": {"issue": copy.deepcopy(issue), "resolution_type": "resolved"},
                                   "actor": {"type": "application", "id": "sentry", "name": "Sentry"}}).encode()
                sent = time.monotonic()
                answer = httpx.post(f"http://127.0.0.1:{receiver_port}/webhooks/sentry", content=body, headers={
                    "Content-Type": "application/json", "Sentry-Hook-Resource": "issue", "Request-ID": f"b{n}",
                    "Sentry-Hook-Signature": sign(SECRET, body), "Sentry-Hook-Timestamp": str(int(time.time()))})
                assert answer.status_code == 202, answer.text
                posted[issue["id"]] = sent
                time.sleep(every)
            deadline = time.monotonic() + 180
            while len(gone) < len(posted) and time.monotonic() < deadline:
                time.sleep(0.2)
            done.set()
            return sorted(gone.get(i, float("inf")) - posted[i] for i in posted)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--every", type=float, default=0.25, help="seconds between two webhooks")
    args = parser.parse_args()
    pg = postgres()
    rows = []
    try:
        for instance in ("SQLite", "PostgreSQL"):
            if instance == "PostgreSQL" and pg is None:
                print("PostgreSQL: no server binaries (pg_ctl) here; rows skipped")
                continue
            for worker in (False, True):
                latencies = measure(worker, pg if instance == "PostgreSQL" else None, args.events, args.every)
                rows.append((instance, "worker" if worker else "run per batch", latencies))
    finally:
        if pg is not None:
            pg.stop()
    print(f"{args.events} webhooks, one every {args.every:g} s; POST -> entity in Port, seconds")
    print(f"{'instance':<11} {'mode':<14} {'p50':>6} {'p95':>6} {'max':>6}")
    for instance, mode, lat in rows:
        p95 = lat[int(0.95 * (len(lat) - 1))]
        print(f"{instance:<11} {mode:<14} {statistics.median(lat):>6.2f} {p95:>6.2f} {max(lat):>6.2f}")
    by = {(i, m): lat for i, m, lat in rows}
    for instance in ("SQLite", "PostgreSQL"):
        if (instance, "worker") in by:
            batch, worker = by[(instance, "run per batch")], by[(instance, "worker")]
            print(f"{instance}: the worker's p95 is {batch[int(0.95 * (len(batch) - 1))] / worker[int(0.95 * (len(worker) - 1))]:.1f}x "
                  f"lower, its p50 {statistics.median(batch) / statistics.median(worker):.1f}x")


if __name__ == "__main__":
    main()
