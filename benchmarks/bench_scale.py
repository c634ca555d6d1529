"""The whole resync of a big organization on one machine: `dagster job execute -j sentry_port_sync` (the CLI, as CI
runs it) against the project's Sentry and Port emulators with rate limits off, at several sizes in one run.

    python benchmarks/bench_scale.py [--issues 10000 50000 200000]

For each size it prints the wall time, the time per issue, the peak memory of the job (the largest process of the
run: Dagster runs each step in a process of its own), the entities in Port, the slowest steps, and which steps
the longest any step went without a log line. Targets: time per issue flat within 1.3x from the smallest size to the
largest, peak memory <= 1.5 GiB, and no step silent for over a minute (progress lines in every phase).

The emulators run in a process of their own (`--serve`), so their memory and CPU are not the job's; the data is the
emulator's generated organization (20 projects, up to 3 environments each, every status) mapped by the bundled
default mapping with `sentryQuery: ''` (every issue synced).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE

CLIENT_ID, CLIENT_SECRET, TOKEN = "bench-id", "bench-secret", "bench-token"
PORT_USER = {"identifier": "_user", "title": "User", "relations": {},
             "schema": {"properties": {"port_role": {"type": "string"}, "status": {"type": "string"}}, "required": []}}
GOAL_FLAT, GOAL_MIB = 1.3, 1536


def serve(issues: int, directory: Path) -> None:
    """The emulators for `issues` issues; writes their addresses to directory/urls.json, then serves until killed."""
    from sentry_port_assets.emulators.port import create_port_emulator
    from sentry_port_assets.emulators.sentry_api import EmulatorConfig, create_sentry_emulator
    from sentry_port_assets.emulators.sentry_data import build_org
    from sentry_port_assets.emulators.serve import ServerThread
    from sentry_port_assets.port.catalog import LocalCatalog

    dataset = build_org(projects=20, issues=issues, teams=5, members=40, many_values=0)
    sentry = ServerThread(create_sentry_emulator(dataset, EmulatorConfig(token=TOKEN, limits={},
                                                                         snapshot_lists=True))).start()
    catalog = LocalCatalog(directory / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    port = ServerThread(create_port_emulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)).start()
    (directory / "urls.json").write_text(json.dumps({"sentry": sentry.url, "port": port.url,
                                                     "organization": dataset.slug}))
    while True:
        time.sleep(3600)


def every_status_mapping(directory: Path) -> str:
    data = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    for r in data["resources"]:
        if r["kind"] in ("issue", "issue-tag"):
            r["selector"]["sentryQuery"] = ""
    path = directory / "mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


class PeakSampler:
    """The processes under `root`, sampled every 0.2 s: the largest one's RSS at each moment (the job runs its steps
    in one process: the in-process executor), to tell which step its peak falls in."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.series: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _children(self) -> dict[int, int]:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        return parents

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            parents = self._children()
            family = {self.root}
            for _ in range(6):  # the wrapper, the CLI, the executor, its step processes
                family |= {pid for pid, parent in parents.items() if parent in family}
            largest = 0.0
            for pid in family:
                try:
                    rss = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                except OSError:
                    continue
                largest = max(largest, int(rss.group(1)) / 1024 if rss else 0.0)
            self.series.append((time.time(), largest))

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.series


def step_timings(home: Path) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """From the run's event log: each step's duration, its longest silence (the longest time between its start, its
    log lines and its end, in seconds: a step that says nothing for minutes looks hung)."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
        events = [e for e in instance.all_logs(run.run_id) if e.step_key]
    starts: dict[str, float] = {}
    last: dict[str, float] = {}
    took: dict[str, tuple[float, float]] = {}
    silence: dict[str, float] = defaultdict(float)
    for e in events:
        step, kind = e.step_key, e.dagster_event.event_type_value if e.dagster_event else None
        if kind == "STEP_START":
            starts[step] = last[step] = e.timestamp
            continue
        if step not in last:
            continue
        if kind is None or kind == "STEP_SUCCESS":
            silence[step] = max(silence[step], e.timestamp - last[step])
            last[step] = e.timestamp
        if kind == "STEP_SUCCESS":
            took[step] = (starts[step], e.timestamp)
    return took, dict(silence)


def one_size(issues: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(issues), tmp])
        try:
            while not (directory / "urls.json").exists():
                if server.poll() is not None:
                    raise RuntimeError("the emulators did not start")
                time.sleep(0.2)
            urls = json.loads((directory / "urls.json").read_text())
            home = directory / "home"
            home.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__"))}
            env.update(DAGSTER_HOME=str(home), SENTRY_HOST=urls["sentry"], SENTRY_TOKEN=TOKEN,
                       SENTRY_ORGANIZATION=urls["organization"], PORT_BASE_URL=urls["port"],
                       PORT_CLIENT_ID=CLIENT_ID, PORT_CLIENT_SECRET=CLIENT_SECRET,
                       PORT_MAPPING_FILE=every_status_mapping(directory))
            # The job runs under a small wrapper whose children's peak RSS is the job's own (getrusage).
            wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                       "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True); "
                       "sys.exit(r.returncode)")
            started = time.monotonic()
            process = subprocess.Popen([sys.executable, "-c", wrapper, sys.executable, "-m", "dagster", "job",
                                        "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"],
                                       env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            sampler = PeakSampler(process.pid)
            stdout, stderr = process.communicate()
            wall = time.monotonic() - started
            series = sampler.stop()
            job = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            if job.returncode != 0:
                raise RuntimeError(f"the job failed at {issues} issues:\n{job.stdout[-3000:]}\n{job.stderr[-3000:]}")
            entities = _entities_in(directory / "port.sqlite")
            spans, silence = step_timings(home)
        finally:
            server.kill()
            server.wait()
    peak = int(re.search(r"PEAK_KIB (\d+)", job.stdout).group(1)) / 1024  # type: ignore[union-attr]
    steps = {step: end - start for step, (start, end) in spans.items()}
    step_peaks = {step: max((rss for t, rss in series if start <= t <= end), default=0.0)
                  for step, (start, end) in spans.items()}
    return {"issues": issues, "wall": wall, "peak_mib": peak, "steps": steps, "silence": silence,
            "entities": entities, "step_peaks": step_peaks}


def _entities_in(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM entities").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issues", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--serve", nargs=2, metavar=("ISSUES", "DIRECTORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return
    results = []
    for n in args.issues:
        r = one_size(n)
        results.append(r)
        slow = sorted(r["steps"].items(), key=lambda kv: -kv[1])[:6]
        print(f"{n:>8,} issues: wall {r['wall']:7.1f} s, {r['wall'] / n * 1000:5.2f} ms per issue, peak "
              f"{r['peak_mib']:6.0f} MiB, {r['entities']:,} entities in Port", flush=True)
        print("          slowest steps: " + ", ".join(f"{s} {t:.1f} s" for s, t in slow), flush=True)
        big = sorted(r["step_peaks"].items(), key=lambda kv: -kv[1])[:4]
        print("          memory of the job while each step ran, highest: "
              + ", ".join(f"{s} {m:.0f} MiB" for s, m in big), flush=True)
        silent = {s: round(t) for s, t in r["silence"].items() if t > 60}
        print(f"          longest silence of a step: {max(r['silence'].values()):.1f} s; steps silent for over a "
              f"minute: {silent or 'none'}", flush=True)
    first, last = results[0], results[-1]
    flat = (last["wall"] / last["issues"]) / (first["wall"] / first["issues"])
    peak = max(r["peak_mib"] for r in results)
    silent = any(t > 60 for r in results for t in r["silence"].values())
    print(f"\ntime per issue at {last['issues']:,} vs {first['issues']:,}: {flat:.2f}x (target <= {GOAL_FLAT}); "
          f"peak memory {peak:.0f} MiB (target <= {GOAL_MIB}); no step silent for over a minute: {not silent}")
    print("goals: " + ("MET" if flat <= GOAL_FLAT and peak <= GOAL_MIB and not silent else "MISSED"))


if __name__ == "__main__":
    main()
