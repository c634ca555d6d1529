"""Incremental resyncs: what three resyncs cost with the issue-tag cache and without it, side by side.

    python benchmarks/bench_incremental.py [--issues 2000] [--speedup 30]

The emulator answers with Sentry's real limits for a user token (issue tag values 150 per window, 10 at once; the
issue list in the shared default bucket) and 20 ms latency, with every window `--speedup` times shorter than
Sentry's 60 s (so 2,000 issues take seconds, not 13 minutes; requests per window are Sentry's). The runs:

1. first (full): every issue's environment tag values; target wall <= 1.1 x the floor the tag-values limit sets;
2. second, nothing changed: target 0 tag requests, wall <= 1.2 x the issue-list floor;
3. third, after 1% of the issues got an event: target requests <= issue-list pages + changed issues + 5%.

Then the same three runs without the cache (every run a full fetch). Each run fetches what `sentry/issues` and
`sentry/issue_tags` fetch for the default mapping (issues with the empty Sentry query, environment tag values), with
the same code the assets run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

from sentry_port_assets.assets import tag_cache
from sentry_port_assets.emulators.sentry_api import SENTRY_LIMITS, EmulatorConfig, RateLimit, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags, fetch_issues
from sentry_port_assets.sentry.selection import IssueFilter

LATENCY = 0.02
TAGS = "/organizations/{org}/issues/{issue}/tags/{key}/values/"
LIST = "/organizations/{org}/issues/"
EVERYTHING = IssueFilter("")


def scaled_limits(speedup: int) -> dict[str, RateLimit]:
    return {endpoint: RateLimit(limit.limit, max(1, round(limit.window / speedup)) if limit.window >= 60 else
                                limit.window, limit.concurrent)
            for endpoint, limit in SENTRY_LIMITS["user"].items()}


async def resync(url: str, org: str, cache: tag_cache.TagCache | None) -> tuple[tag_cache.TagCache, int]:
    """One resync's fetch; returns the cache it leaves and how many tag values it reused."""
    async with SentryClient(url, org, "bench") as client:
        projects = await client.list_projects()
        issues = await fetch_issues(client, projects, [EVERYTHING])
        reused: dict[tuple[str, str], list[dict[str, Any]]] = {}

        def reuse(wanted: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
            reused.update(cache.reusable(wanted) if cache else {})
            return reused

        rows = await fetch_issue_tags(client, issues, {EVERYTHING: ["environment"]}, Vanished(), frozenset(), reuse)
    return tag_cache.rebuilt(rows, time.time()), len(reused)


def three_runs(issues: int, speedup: int, cached: bool) -> list[dict[str, Any]]:
    data = build_org(projects=20, issues=issues, teams=5, members=40, many_values=0)
    limits = scaled_limits(speedup)
    app = create_sentry_emulator(data, EmulatorConfig(token="bench", latency_seconds=LATENCY, limits=limits))
    state = app.state.sentry
    out: list[dict[str, Any]] = []
    cache: tag_cache.TagCache | None = None
    with ServerThread(app) as server:
        for run in ("first (full)", "second, no change", "third, 1% got events"):
            if run.startswith("third"):
                for issue in data.issues[:max(1, len(data.issues) // 100)]:
                    data.record_event(issue["id"])
            before = {e: s.requests for e, s in state.endpoints.items()}
            started = time.monotonic()
            left, reused = asyncio.run(resync(server.url, data.slug, cache if cached else None))
            wall = time.monotonic() - started
            cache = left
            delta = {e: s.requests - before.get(e, 0) for e, s in state.endpoints.items()}
            tag_requests, list_requests = delta.get(TAGS, 0), delta.get(LIST, 0)
            tags = limits[TAGS]
            tag_floor = max(math.ceil(tag_requests / tags.limit) - 1, 0) * tags.window + LATENCY if tag_requests else 0
            # the issue list: one page per project, 8 in flight (the default bucket has no concurrency cap)
            list_floor = math.ceil(list_requests / 8) * LATENCY + 2 * LATENCY  # + organization and projects
            out.append({"run": run, "tag_requests": tag_requests, "list_requests": list_requests,
                        "other": sum(delta.values()) - tag_requests - list_requests, "reused": reused,
                        "wall": wall, "tag_floor": tag_floor, "list_floor": list_floor, "429": state.total_429})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--speedup", type=int, default=30, help="Sentry's 60 s windows are this many times shorter")
    args = parser.parse_args()
    tags = scaled_limits(args.speedup)[TAGS]
    print(f"org: {args.issues} issues in 20 projects, 3 environments; issue tag values {tags.limit} per {tags.window} s "
          f"window ({args.speedup}x shorter than Sentry's 60 s), {tags.concurrent} at once; {LATENCY * 1000:.0f} ms latency")
    changed = max(1, args.issues // 100)
    for cached in (True, False):
        print("with the issue-tag cache:" if cached else "without the cache (every resync a full fetch):")
        print(f"  {'run':<24}{'tag req':>8}{'list req':>9}{'reused':>8}{'wall s':>9}{'floor s':>9}{'ratio':>7}  target")
        for r in three_runs(args.issues, args.speedup, cached):
            if r["run"].startswith("first") or not cached:
                floor, target = r["tag_floor"], "<= 1.1 x tag-values floor" if r["run"].startswith("first") else "-"
                verdict = r["wall"] / floor <= 1.1 if floor and r["run"].startswith("first") else None
            elif r["run"].startswith("second"):
                floor, target = r["list_floor"], "0 tag requests, <= 1.2 x issue-list floor"
                verdict = r["tag_requests"] == 0 and r["wall"] / floor <= 1.2
            else:
                floor = r["list_floor"] + r["tag_floor"]
                bound = r["list_requests"] + changed + math.ceil(0.05 * (r["list_requests"] + changed))
                target = f"requests <= {bound}"
                verdict = r["tag_requests"] + r["list_requests"] <= bound
            ratio = f"{r['wall'] / floor:.2f}" if floor else "-"
            mark = "" if verdict is None else (" MET" if verdict else " MISSED")
            print(f"  {r['run']:<24}{r['tag_requests']:>8}{r['list_requests']:>9}{r['reused']:>8}{r['wall']:>9.2f}"
                  f"{floor:>9.2f}{ratio:>7}  {target}{mark}")


if __name__ == "__main__":
    main()
