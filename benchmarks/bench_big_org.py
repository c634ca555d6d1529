"""A big organization's first resync under Sentry's limits: per-issue tag values against the plan the default mapping
gets (environments listed per project), side by side.

    python benchmarks/bench_big_org.py [--issues 100000] [--speedup 120] [--latency 0.02]

The organization: `--issues` issues in 20 projects with up to 3 environments each (the generator's). Both runs fetch
what `sentry/issues` and `sentry/issue_tags` fetch for the default mapping set to sync every status (`sentryQuery:
''`, so every issue is synced), with the code the assets run, against the emulator with Sentry's limits for a user
token:

1. the chosen plan (`FetchPlan.of(default mapping)`: by-environment), at Sentry's real limits and windows;
2. per-issue (`tagValues: per-issue`, Ocean's way), with every 60 s window `--speedup` times shorter (requests per
   window are Sentry's), since 100,000 requests at 150 a minute are 11 hours.

For each it prints the requests by endpoint, the wall measured, and the floor the requests imply at Sentry's real
limits for a user token (150 tag-value requests per 60 s) and an internal integration's (300). The goal: the chosen
plan's first resync of 100,000 issues in <= 15 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter
from typing import Any

from sentry_port_assets.assets.plan import FetchPlan
from sentry_port_assets.emulators.sentry_api import SENTRY_LIMITS, EmulatorConfig, RateLimit, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, parse_mapping, read_yaml
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags, fetch_issues

TAGS = "/organizations/{org}/issues/{issue}/tags/{key}/values/"
LIST = "/organizations/{org}/issues/"
GOAL_SECONDS = 15 * 60


def limits(speedup: int) -> dict[str, RateLimit]:
    return {endpoint: RateLimit(limit.limit, max(1, round(limit.window / speedup)) if limit.window >= 60 else
                                limit.window, limit.concurrent)
            for endpoint, limit in SENTRY_LIMITS["user"].items()}


def floor_seconds(requests: Counter[str], caller: str) -> float:
    """Least time Sentry's real limits allow for these requests, endpoint by endpoint (the slowest decides)."""
    floors = [0.0]
    for endpoint, n in requests.items():
        limit = SENTRY_LIMITS[caller].get(endpoint) or SENTRY_LIMITS[caller]["default"]
        floors.append(max(math.ceil(n / limit.limit) - 1, 0) * limit.window)
    return max(floors)


def run(dataset: Any, plan: FetchPlan, speedup: int, latency: float) -> dict[str, Any]:
    app = create_sentry_emulator(dataset, EmulatorConfig(token="bench", latency_seconds=latency,
                                                         limits=limits(speedup), snapshot_lists=True))
    state = app.state.sentry
    with ServerThread(app) as server:
        async def go() -> tuple[int, float]:
            async with SentryClient(server.url, dataset.slug, "bench") as client:
                started = time.monotonic()
                projects = await client.list_projects()
                issues = await fetch_issues(client, projects, plan.issue_filters)
                rows = await fetch_issue_tags(client, issues, plan.issue_tag_keys, Vanished(), plan.environments_by_list)
                wall = time.monotonic() - started
            return sum(len(r) for keys in rows.values() for r in keys.values()), wall

        rows, wall = asyncio.run(go())
    requests = Counter({e: s.requests - s.rate_limited - s.concurrency_limited for e, s in state.endpoints.items()})
    return {"rows": rows, "wall": wall, "requests": requests, "http_429": state.total_429,
            "floor_user": floor_seconds(requests, "user"), "floor_org": floor_seconds(requests, "org")}


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else \
        f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--speedup", type=int, default=120, help="how much shorter the per-issue run's windows are")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    args = parser.parse_args()
    data = read_yaml(DEFAULT_MAPPING_FILE.read_text(), str(DEFAULT_MAPPING_FILE))
    for resource in data["resources"]:
        if resource["kind"] in ("issue", "issue-tag"):
            resource["selector"]["sentryQuery"] = ""
    chosen = FetchPlan.of(parse_mapping(data))
    per_issue = FetchPlan(**{**chosen.__dict__, "environments_by_list": frozenset()})
    print(f"{args.issues:,} issues, 20 projects with up to 3 environments; the default mapping's plan: "
          + "; ".join(str(c) for c in chosen.tag_values))
    results = {}
    for label, plan, speedup in (("chosen plan (by-environment)", chosen, 1),
                                 ("per-issue (Ocean's way)", per_issue, args.speedup)):
        dataset = build_org(projects=20, issues=args.issues, teams=5, members=40, many_values=0)
        results[label] = r = run(dataset, plan, speedup, args.latency)
        scaled = "" if speedup == 1 else f" (windows {speedup}x shorter)"
        print(f"\n{label}: {r['rows']:,} issue rows, {sum(r['requests'].values()):,} requests, "
              f"{r['http_429']} x 429, wall {hours(r['wall'])}{scaled}")
        for endpoint, n in sorted(r["requests"].items(), key=lambda kv: -kv[1]):
            print(f"  {n:>8,}  {endpoint}")
        print(f"  floor at Sentry's real limits: {hours(r['floor_user'])} with a user token, "
              f"{hours(r['floor_org'])} with an internal integration's")
    listed, exact = results["chosen plan (by-environment)"], results["per-issue (Ocean's way)"]
    ratio = sum(exact["requests"].values()) / sum(listed["requests"].values())
    print(f"\nper-issue makes {ratio:.0f}x the requests; its floor is {hours(exact['floor_user'])} (user token) "
          f"against the chosen plan's measured {hours(listed['wall'])} at Sentry's real limits.")
    met = listed["wall"] <= GOAL_SECONDS and listed["rows"] == exact["rows"]
    print(f"goal: first resync of {args.issues:,} issues <= 15 min with the same rows: {'MET' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
