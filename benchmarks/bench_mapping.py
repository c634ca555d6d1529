"""Mapping speed: the engine (one jq program per resource) vs Ocean's way (every jq leaf run on its own).

    python benchmarks/bench_mapping.py [--issues 50000] [--naive-sample 2000] [--workers N]

Data: the default mapping over synthetic raw rows built from the seed's sample payloads: 50,000 issue-tag rows
(1 to 3 environments each) plus members, teams (with __members) and project-tag rows. The engine maps all of
it; the naive evaluator (field by field, like Ocean's JQ entity processor, without its per-item process pool
overhead, so the comparison flatters Ocean) maps a sample of the same mix and is extrapolated; the output says
so. Both results are checked to be identical on the sample. Peak memory: max RSS of this process and of the
forked mapping workers (resource.getrusage).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sentry_port_assets.mapping.engine import MappingResult, _default_workers  # noqa: E402
from sentry_port_assets.mapping.loader import load_mapping  # noqa: E402

SAMPLES = json.loads((ROOT / "sentry_port_assets/sentry/seed_samples.json").read_text())
ENVIRONMENTS = ["production", "staging", "development", "qa", "canary"]


def synthetic(issues: int, seed: int = 7) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    members = []
    for i in range(max(50, issues // 25)):
        m = copy.deepcopy(SAMPLES["User"])
        m["id"] = str(10_000_000 + i)
        m["email"] = m["user"]["email"] = m["user"]["username"] = f"user{i}@example.io"
        m["user"]["name"] = f"User {i}"
        m["orgRole"] = rng.choice(["member", "admin", "owner", "manager", "billing"])
        members.append(m)
    teams = []
    for i in range(max(5, issues // 250)):
        t = copy.deepcopy(SAMPLES["Team"])
        t["id"], t["slug"], t["name"] = str(1_000_000 + i), f"team-{i}", f"Team {i}"
        t["__members"] = [{**SAMPLES["Team"]["__members"][0], "user": {"email": rng.choice(members)["email"]}}
                          for _ in range(rng.randint(1, 8))]
        teams.append(t)
    projects = []
    for i in range(max(10, issues // 100)):
        p = copy.deepcopy(SAMPLES["Project"])
        p["id"], p["slug"], p["name"] = str(4_500_000_000 + i), f"project-{i}", f"project-{i}"
        projects.append(p)
    project_tags = []
    for p in projects:
        for env in rng.sample(ENVIRONMENTS, rng.randint(1, 3)):
            project_tags.append({**p, "__tags": {"key": "environment", "name": env, "value": env, "count": rng.randint(1, 999),
                                                 "lastSeen": "2024-03-04T17:17:33Z", "firstSeen": "2024-03-04T17:14:22Z"}})
    issue_rows = []
    for i in range(issues):
        it = copy.deepcopy(SAMPLES["Issue"])
        project = rng.choice(projects)
        it["id"] = str(4_600_000_000 + i)
        it["shortId"] = f"{project['slug'].upper()}-{i}"
        it["title"] = f"ZeroDivisionError: division by zero #{i}"
        it["permalink"] = f"https://test-org.sentry.io/issues/{it['id']}/"
        it["status"] = rng.choice(["unresolved", "resolved", "ignored"])
        it["isUnhandled"] = rng.random() < 0.5
        it["project"] = {"id": project["id"], "name": project["name"], "slug": project["slug"], "platform": "python"}
        it["assignedTo"] = None if rng.random() < 0.3 else {"email": rng.choice(members)["email"], "id": "1", "name": "x"}
        it["__tags"] = [{"key": "environment", "name": env, "value": env, "count": rng.randint(1, 99),
                         "lastSeen": "2024-03-04T17:17:33Z", "firstSeen": "2024-03-04T17:14:22Z"}
                        for env in rng.sample(ENVIRONMENTS, rng.randint(1, 3))]
        issue_rows.append(it)
    return {"user": members, "team": teams, "project-tag": project_tags, "issue-tag": issue_rows}


def run_engine(mapping, data, workers: int) -> tuple[MappingResult, float]:
    result = MappingResult()
    start = time.perf_counter()
    for compiled in mapping.resources:
        result.extend(compiled.map(data.get(compiled.kind, []), workers=workers))
    return result, time.perf_counter() - start


def run_naive(mapping, data) -> tuple[MappingResult, float]:
    result = MappingResult()
    start = time.perf_counter()
    for compiled in mapping.resources:
        result.extend(compiled.map_naive(data.get(compiled.kind, [])))
    return result, time.perf_counter() - start


def sample(data: dict[str, list[dict]], fraction: float) -> dict[str, list[dict]]:
    return {k: v[: max(1, round(len(v) * fraction))] for k, v in data.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issues", type=int, default=50_000)
    parser.add_argument("--naive-sample", type=int, default=2_000, help="issue rows the naive way maps (same mix)")
    parser.add_argument("--workers", type=int, default=None, help="engine worker processes (default: CPU count)")
    args = parser.parse_args()
    workers = args.workers or _default_workers()

    mapping = load_mapping()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the run "
          f"(other processes compete with the 2-process figure)")
    t0 = time.perf_counter()
    data = synthetic(args.issues)
    print(f"data: {', '.join(f'{len(v):,} {k} rows' for k, v in data.items())} (built in {time.perf_counter() - t0:.1f}s)")

    serial, serial_s = run_engine(mapping, data, workers=1)
    engine, engine_s = run_engine(mapping, data, workers=workers)
    assert engine.entities == serial.entities, "parallel and serial mapping differ"
    n = len(engine.entities)
    print(f"engine ({workers} worker process{'es' if workers > 1 else ''}): {n:,} entities in {engine_s:.2f}s = "
          f"{n / engine_s:,.0f} entities/s")
    print(f"engine (1 process):     {n:,} entities in {serial_s:.2f}s = {n / serial_s:,.0f} entities/s")
    print(f"  misconfigured fields: {[(m.field, m.count) for m in engine.misconfigurations]}, dropped: {engine.dropped}")

    fraction = min(1.0, args.naive_sample / max(1, args.issues))
    small = sample(data, fraction)
    naive, naive_s = run_naive(mapping, small)
    check, _ = run_engine(mapping, small, workers=1)
    assert check.entities == naive.entities, "engine and field-by-field evaluation differ"
    naive_rate = len(naive.entities) / naive_s
    print(f"naive field-by-field (Ocean's way): {len(naive.entities):,} entities in {naive_s:.2f}s = {naive_rate:,.0f} "
          f"entities/s (measured on a {fraction:.1%} sample of the same mix; extrapolated to all {n:,} entities: "
          f"{n / naive_rate:,.0f}s); identical entities on the sample")
    print(f"speed-up: {n / engine_s / naive_rate:.1f}x with {workers} process(es), "
          f"{n / serial_s / naive_rate:.1f}x in one process")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory (max RSS): {own:,.0f} MiB this process (input data included), {children:,.0f} MiB largest worker")
    target = n / engine_s >= 20_000 and n / engine_s / naive_rate >= 5
    print(f"target (>= 20,000 entities/s and >= 5x naive): {'met' if target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
