"""Releases and deploys: what three resyncs cost read incrementally and read in full every time, side by side.

    python benchmarks/bench_releases.py [--releases 2000] [--deploys 10000] [--latency-ms 20]

The emulator serves an organization of 20 projects with `--releases` releases over the last 60 days and their
deploys (the last per project and environment: what Sentry lists) topped up to `--deploys`, under Sentry's limits
for a user token (the release list 40 a second, deploys in the shared default bucket) and `--latency-ms` per answer.
Each resync runs what `sentry/releases` and `sentry/deploys` run (the same functions, with the state the assets keep
between runs). The runs:

1. first: nothing kept, everything read;
2. second, nothing changed: target: at most 3 release-list requests and no deploy request;
3. third, after 1% new releases (each deployed), a rollback (an old release deployed again) and an archived one:
   target: release-list pages <= 3 + the new releases' share, deploy requests <= the releases that moved + 1.

Then the same three runs reading everything every time. A run's requests are the emulator's count.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from sentry_port_assets.assets.fetch_state import FetchState
from sentry_port_assets.emulators.sentry_api import EmulatorConfig, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.sentry import fetch
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.releases import ReleaseFilter

LIST, DEPLOYS = "/organizations/{org}/releases/", "/organizations/{org}/releases/{version}/deploys/"
ONE = "/organizations/{org}/releases/{version}/"
EXTRA_ENVIRONMENTS = ("canary", "qa", "perf", "eu-production", "us-production")
FILTER = ReleaseFilter()


def organization(releases: int, deploys: int) -> Any:
    data = build_org(projects=20, issues=20, teams=5, members=20, many_values=0,
                     releases_per_project=max(1, releases // 20))
    store = data.releases
    listed = sum(len(rows) for rows in store.last_deploys.values())
    now = datetime.now(timezone.utc)
    for env in EXTRA_ENVIRONMENTS:  # more environments, as a large organization has, until the deploys add up
        for release in sorted(store.releases.values(), key=lambda r: r.date_created):
            if listed >= deploys:
                return data
            finished = min(release.date_created + timedelta(hours=5), now)
            store.deploy(release.version, env, finished, name=f"to {env}")
            listed += len(release.projects)
    return data


async def resync(url: str, org: str, kept: tuple[Any, Any] | None) -> tuple[tuple[Any, Any], int, int]:
    """One resync of releases and deploys; returns what it keeps and how many releases and deploys it holds."""
    async with SentryClient(url, org, "bench") as client:
        projects = await client.list_projects()
        releases_state = FetchState(None if kept is None else kept[0], kept is None, "first")
        releases = await fetch.read_releases(client, {"filters": (FILTER,), "health": frozenset()}, projects,
                                             fetch.Vanished(), releases_state)
        deploys_state = FetchState(None if kept is None else kept[1], kept is None, "first")
        deploys = await fetch.read_deploys(client, {"filters": (FILTER,)}, releases, fetch.Vanished(), deploys_state)
    return (releases_state.kept, deploys_state.kept), len(releases[FILTER.key]), len(deploys[FILTER.key])


def change(data: Any) -> None:
    """1% new releases, each deployed; an old release deployed again; a release archived."""
    store = data.releases
    now = datetime.now(timezone.utc)
    projects = data.org_projects()
    newest = sorted(store.releases.values(), key=lambda r: r.date_created)
    for n in range(max(1, len(store.releases) // 100)):
        project = projects[n % len(projects)]
        release = store.create(f"{project['slug']}@9.{n}.0", [project["id"]], now - timedelta(minutes=30 - n % 30))
        store.deploy(release.version, "staging", now - timedelta(minutes=10))
    old = newest[len(newest) // 3]
    store.deploy(old.version, "production", now - timedelta(minutes=5))
    store.archive(newest[len(newest) // 2].version)


def three_runs(releases: int, deploys: int, latency: float, incremental: bool) -> list[dict[str, Any]]:
    data = organization(releases, deploys)
    app = create_sentry_emulator(data, EmulatorConfig(token="bench", latency_seconds=latency))
    state = app.state.sentry
    out: list[dict[str, Any]] = []
    kept: tuple[Any, Any] | None = None
    with ServerThread(app) as server:
        for run in ("first", "second, no change", "third, 1% changed"):
            if run.startswith("third"):
                change(data)
            before = {e: s.requests for e, s in state.endpoints.items()}
            started = time.monotonic()
            left, held_releases, held_deploys = asyncio.run(resync(server.url, data.slug, kept))
            wall = time.monotonic() - started
            kept = left if incremental else None
            delta = {e: s.requests - before.get(e, 0) for e, s in state.endpoints.items()}
            out.append({"run": run, "list": delta.get(LIST, 0), "deploys": delta.get(DEPLOYS, 0),
                        "one": delta.get(ONE, 0), "wall": wall, "releases": held_releases,
                        "deploy_rows": held_deploys, "429": state.total_429})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=2000)
    parser.add_argument("--deploys", type=int, default=10000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    print(f"org: 20 projects, ~{args.releases} releases, ~{args.deploys} deploys (the last per project and "
          f"environment); release list 40/s, {args.latency_ms:.0f} ms latency")
    incremental = three_runs(args.releases, args.deploys, latency, True)
    everything = three_runs(args.releases, args.deploys, latency, False)
    print(f"  {'run':<20}{'releases':>9}{'deploys':>9} | {'incremental: list':>18}{'one':>5}{'deploys':>9}{'wall s':>8}"
          f" | {'read all: list':>15}{'deploys':>9}{'wall s':>8} | {'requests x':>10}{'time x':>8}  target")
    changed = max(1, args.releases // 100)
    for inc, full in zip(incremental, everything):
        assert (inc["releases"], inc["deploy_rows"]) == (full["releases"], full["deploy_rows"]), (inc, full)
        ours = inc["list"] + inc["one"] + inc["deploys"]
        theirs = full["list"] + full["deploys"]
        if inc["run"] == "first":
            target, met = "-", None
        elif inc["run"].startswith("second"):
            target, met = "list <= 3, no deploys", inc["list"] <= 3 and inc["deploys"] == 0
        else:
            bound = changed + 2
            target = f"list <= {3 + -(-changed // 100)}, deploys <= {bound}"
            met = inc["list"] <= 3 + -(-changed // 100) and inc["deploys"] <= bound
        mark = "" if met is None else (" MET" if met else " MISSED")
        print(f"  {inc['run']:<20}{inc['releases']:>9}{inc['deploy_rows']:>9} | {inc['list']:>18}{inc['one']:>5}"
              f"{inc['deploys']:>9}{inc['wall']:>8.2f} | {full['list']:>15}{full['deploys']:>9}{full['wall']:>8.2f} | "
              f"{theirs / ours:>10.1f}{full['wall'] / inc['wall']:>8.1f}  {target}{mark}")


if __name__ == "__main__":
    main()
