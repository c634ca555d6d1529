"""Project health, owners, repositories and monitors: what `sentry/project_details` costs, against asking per project.

    python benchmarks/bench_project_health.py [--projects 200] [--latency-ms 20]

The emulator serves an organization of `--projects` projects under Sentry's limits for a user token (stats_v2 20 a
second, enforced; everything else in the shared default bucket) with `--latency-ms` per answer. Side by side in one
run:

1. `sentry/project_details` as the asset runs it (the same function, with the state it keeps): the first resync,
   then a second with nothing changed (target: no ownership or code-mapping request; stats, sessions and monitors
   are a handful of requests for the whole organization);
2. the per-project way: each project's error counts (two windows), crash-free rates, ownership rules and code
   mappings asked for that project alone, every resync, through the same client (so the same limits and retries).

A run's requests are the emulator's count; times are wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from sentry_port_assets.assets.fetch_state import FetchState
from sentry_port_assets.emulators.sentry_api import EmulatorConfig, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.sentry import fetch
from sentry_port_assets.sentry.client import SentryClient, gather_limited


async def ours(url: str, org: str, kept: Any) -> tuple[Any, int]:
    async with SentryClient(url, org, "bench") as client:
        projects = await client.list_projects()
        state = FetchState(kept, kept is None, "first")
        value = await fetch.read_project_details(client, {}, projects, fetch.Vanished(), state)
    return state.kept, len(value)


async def per_project(url: str, org: str) -> int:
    async with SentryClient(url, org, "bench") as client:
        projects = await client.list_projects()
        base = f"/organizations/{org}"

        async def one(project: dict[str, Any]) -> None:
            pid = project["id"]
            for period in ("24h", "7d"):
                await client._get_json("/organizations/{org}/stats_v2/", f"{base}/stats_v2/", {
                    "field": "sum(quantity)", "groupBy": ["project", "outcome"], "category": "error", "statsPeriod": period,
                    "project": pid})
            await client._get_json("/organizations/{org}/sessions/", f"{base}/sessions/", {
                "field": ["crash_free_rate(session)", "crash_free_rate(user)"], "statsPeriod": "24h",
                "includeSeries": 0, "project": pid})
            await client.get_ownership(project["slug"])
            await client._list("/organizations/{org}/code-mappings/", f"{base}/code-mappings/", {"project": pid})

        await gather_limited(one(p) for p in projects)
        await client.list_repos()
        await client.list_monitors()
    return len(projects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    data = build_org(projects=args.projects, issues=20, teams=5, members=20, many_values=0, releases_per_project=1)
    app = create_sentry_emulator(data, EmulatorConfig(token="bench", latency_seconds=args.latency_ms / 1000))
    state = app.state.sentry
    rows: list[tuple[str, int, float]] = []
    with ServerThread(app) as server:
        def run(label: str, call: Any) -> Any:
            before, started = state.total_requests, time.perf_counter()
            result = asyncio.run(call)
            rows.append((label, state.total_requests - before, time.perf_counter() - started))
            return result

        kept, count = run("project_details, first resync", ours(server.url, data.slug, None))
        assert count == args.projects, count
        run("project_details, nothing changed", ours(server.url, data.slug, kept))
        run("per project, every resync", per_project(server.url, data.slug))
    print(f"{args.projects} projects, {args.latency_ms:g} ms per answer, Sentry's user-token limits")
    print(f"{'run':<36} {'requests':>9} {'seconds':>8}")
    for label, requests, seconds in rows:
        print(f"{label:<36} {requests:>9} {seconds:>8.2f}")
    (_, first, first_s), (_, again, again_s), (_, naive, naive_s) = rows
    print(f"per project / ours, first resync:   {naive / first:.1f}x the requests, {naive_s / first_s:.1f}x the time")
    print(f"per project / ours, nothing changed: {naive / again:.1f}x the requests, {naive_s / again_s:.1f}x the time")


if __name__ == "__main__":
    main()
