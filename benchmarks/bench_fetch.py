"""Fetch benchmark: our rate-limit governor vs Ocean's strategy, side by side, against the Sentry emulator.

A synthetic org (20 projects, 300 issues, 3 environments, environment tags) behind the emulator on loopback,
under Sentry's real limits for a user token (emulators/sentry_api.py SENTRY_LIMITS, from Sentry's source: issue tag
values 150 per 60 s with 10 concurrent, project tag values 10 per second, members 40 per second, every other
endpoint in one shared default bucket) and 20 ms latency. Both runs fetch what the default mapping needs (issues
with the empty Sentry query, so all of them are read). Prints requests, 429s, wall seconds and the floor: the
least time the limits allow for the requests each run made. A third run reads the environment tag values with
`tagValues: by-environment` (one issue list per project and environment).

    python benchmarks/bench_fetch.py            # about four minutes: 300 issue tag requests are two windows
    python benchmarks/bench_fetch.py --issues 1000
    python benchmarks/bench_fetch.py --cost 1000,10000   # only the client's cost per request, limits off

The cost section (also printed after the runs above) fetches the issue tag values of two organizations with the
emulator's limits off and no latency, as a self-hosted Sentry without rate-limit headers would answer, and prints
requests per second and the client's CPU per request (the event loop thread's CPU time: the emulator runs in another
thread). The target: per-request CPU flat across sizes (ratio <= 1.5) and >= 300 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter
from typing import Any

import httpx

from sentry_port_assets.emulators.sentry_api import EmulatorConfig, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.sentry.client import SentryClient, _Transient
from sentry_port_assets.sentry.errors import SentryRequestError
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags, fetch_issues, fetch_project_tags, fetch_teams
from sentry_port_assets.sentry.ratelimit import RESET_MARGIN_SECONDS, RateLimitHeaders
from sentry_port_assets.sentry.selection import IssueFilter

LATENCY = 0.02

# Which endpoint waits on which: the floor of a chain is the sum of its stages' floors.
PROJECTS = ["/organizations/{org}/", "/organizations/{org}/projects/"]
CHAINS = [
    ["/organizations/{org}/members/"],
    ["/organizations/{org}/teams/", "/teams/{org}/{team}/members/"],
    [*PROJECTS, "/projects/{org}/{project}/tags/{key}/values/"],
    [*PROJECTS, "/organizations/{org}/issues/", "/organizations/{org}/issues/{issue}/tags/{key}/values/"],
]


class OceanStyleClient(SentryClient):
    """Ocean's strategy: a fixed 5 requests at a time, one rate-limit counter for every endpoint, headers about
    concurrency ignored, no wait when `remaining` hits 0 (only after a 429, until the last `Reset` seen)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = asyncio.Semaphore(5)
        self._reset: float | None = None

    async def _send(self, endpoint: str, url: str, params: dict[str, Any] | None) -> tuple[httpx.Response, Any]:
        async with self._slots:  # the slot is held through the wait: the kindest reading of Ocean's loop
            while True:
                self.stats.requests += 1
                response = await self._http.get(url, params=params)
                headers = RateLimitHeaders.parse(response.headers)
                if headers.reset is not None:
                    self._reset = headers.reset  # one global counter, whichever endpoint answered last
                if response.status_code != 429:
                    break
                self.stats.rate_limited += 1
                # The same small margin past `Reset` as ours, so the comparison is of strategy, not of clocks.
                await asyncio.sleep(max((self._reset or time.time() + 1) + RESET_MARGIN_SECONDS - time.time(), 0))
        if response.status_code >= 500:
            raise SentryRequestError(f"HTTP {response.status_code}")  # Ocean does not retry a 500
        self._raise_for_client_error(response, endpoint)
        try:
            return response, response.json()
        except ValueError as exc:
            raise _Transient(str(exc)) from None


async def fetch_default_mapping(client: SentryClient, by_environment: bool = False) -> dict[str, int]:
    everything = IssueFilter("")
    vanished = Vanished()

    async def people() -> tuple[int, int]:
        members, teams = await asyncio.gather(client.list_members(), fetch_teams(client, True, vanished))
        return len(members), len(teams)

    async def projects_and_issues() -> tuple[int, int, int]:
        projects = await client.list_projects()
        tags, issues = await asyncio.gather(fetch_project_tags(client, projects, ["environment"]),
                                            fetch_issues(client, projects, [everything]))
        issue_tags = await fetch_issue_tags(client, issues, {everything: ["environment"]}, vanished,
                                            frozenset({everything}) if by_environment else frozenset())
        return len(tags["environment"]), len(issues[everything.key]), len(issue_tags[everything.key]["environment"])

    (members, teams), (project_envs, issues, issue_rows) = await asyncio.gather(people(), projects_and_issues())
    return {"members": members, "teams": teams, "project_env_rows": project_envs, "issues": issues,
            "issue_tag_rows": issue_rows}


def floor_seconds(requests: Counter[str], first_admitted: dict[str, float], state: Any) -> float:
    """Least wall time the limits allow for these requests. Per endpoint: with n <= limit, the concurrency bound;
    past it, the rest of the window the endpoint's first request fell in, then one full window for each further
    batch of `limit`, then one latency. Endpoints that wait on each other add up along their chain. (Endpoints of
    the shared default bucket are bounded each on its own here: with Sentry's 999 per second that never binds.)"""

    def stage(endpoint: str) -> float:
        n = requests.get(endpoint, 0)
        if not n:
            return 0.0
        _, limit = state.bucket(endpoint)
        concurrency = math.ceil(n / (limit.concurrent or n)) * LATENCY
        if n <= limit.limit:
            return concurrency
        start = first_admitted[endpoint]
        rest_of_first_window = limit.window - (start % limit.window)
        return max(rest_of_first_window + (math.ceil(n / limit.limit) - 2) * limit.window + LATENCY, concurrency)

    return max(sum(stage(e) for e in chain) for chain in CHAINS)


def run(label: str, client_cls: type[SentryClient], dataset_args: dict[str, Any],
        by_environment: bool = False) -> dict[str, Any]:
    app = create_sentry_emulator(build_org(**dataset_args), EmulatorConfig(token="bench", latency_seconds=LATENCY))
    state = app.state.sentry
    with ServerThread(app) as server:
        async def go() -> tuple[dict[str, int], float]:
            async with client_cls(server.url, "test-org", "bench") as client:
                started = time.monotonic()
                counts = await fetch_default_mapping(client, by_environment)
                return counts, time.monotonic() - started

        counts, wall = asyncio.run(go())
    per_endpoint = Counter({e: s.requests for e, s in state.endpoints.items()})
    ok = Counter({e: s.requests - s.rate_limited - s.concurrency_limited for e, s in state.endpoints.items()})
    floor = floor_seconds(ok, {e: s.first_admitted for e, s in state.endpoints.items() if s.first_admitted}, state)
    return {"label": label, "counts": counts, "requests": sum(per_endpoint.values()), "http_429": state.total_429,
            "wall": wall, "floor": floor, "ratio": wall / floor if floor else float("nan"),
            "max_in_flight": max(s.max_in_flight for s in state.endpoints.values())}


def request_cost(issues: int) -> dict[str, float]:
    """Issue tag values of an organization of `issues` issues, against the emulator with limits off."""
    dataset = build_org(projects=20, issues=issues, teams=5, members=40, many_values=0)
    app = create_sentry_emulator(dataset, EmulatorConfig(token="bench", limits={}))
    with ServerThread(app) as server:
        async def go() -> tuple[int, float, float]:
            async with SentryClient(server.url, "test-org", "bench") as client:
                listed = await fetch_issues(client, dataset.org_projects(), [IssueFilter("")])
                issues_ = next(iter(listed.values()))
                cpu, wall = time.thread_time(), time.monotonic()
                everything = IssueFilter("")
                await fetch_issue_tags(client, {everything.key: issues_}, {everything: ["environment"]}, Vanished())
                return client.stats.requests, time.thread_time() - cpu, time.monotonic() - wall

        _, cpu, wall = asyncio.run(go())
        requests = app.state.sentry.endpoints["/organizations/{org}/issues/{issue}/tags/{key}/values/"].requests
    return {"issues": issues, "requests": requests, "cpu_ms": cpu / requests * 1000, "per_second": requests / wall}


def print_cost(sizes: list[int]) -> None:
    costs = [request_cost(n) for n in sizes]
    print("issue tag values, limits off (self-hosted without rate-limit headers):")
    for c in costs:
        print(f"  {c['issues']:>6} issues: {c['requests']:>6} requests, {c['per_second']:>6.0f} requests/s, "
              f"{c['cpu_ms']:.2f} ms client CPU per request")
    ratio = costs[-1]["cpu_ms"] / costs[0]["cpu_ms"]
    slowest = min(c["per_second"] for c in costs)
    print(f"  per-request CPU {sizes[-1]:,} vs {sizes[0]:,} issues: {ratio:.2f}x (target <= 1.5); slowest "
          f"{slowest:.0f} requests/s (target >= 300): {'MET' if ratio <= 1.5 and slowest >= 300 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--issues", type=int, default=300)
    parser.add_argument("--cost", default="1000,10000", help="issue counts for the cost section ('' to skip)")
    parser.add_argument("--cost-only", action="store_true", help="print only the cost section")
    args = parser.parse_args()
    sizes = [int(n) for n in args.cost.split(",") if n.strip()]
    if args.cost_only:
        print_cost(sizes)
        return
    dataset_args = {"projects": args.projects, "issues": args.issues, "teams": 5, "members": 40, "many_values": 0}
    print(f"emulator: Sentry's limits for a user token (issue tag values 150/60s, 10 concurrent; project tag values "
          f"10/s; members 40/s; a shared default bucket), {LATENCY * 1000:.0f} ms latency; org: {args.projects} "
          f"projects, {args.issues} issues, 3 environments")
    results = [run("sentry_port_assets", SentryClient, dataset_args),
               run("ocean strategy", OceanStyleClient, dataset_args),
               run("ours, by-environment", SentryClient, dataset_args, by_environment=True)]
    assert all(r["counts"] == results[0]["counts"] for r in results), "every strategy must fetch the same data"
    print(f"fetched: {results[0]['counts']}")
    print(f"{'strategy':<22}{'requests':>8}{'429s':>8}{'wall s':>9}{'floor s':>9}{'wall/floor':>12}{'max in flight':>15}")
    for r in results:
        # The by-environment run is a handful of requests: its time is round trips, not rate limits.
        floor, ratio = ("-", "-") if r is results[2] else (f"{r['floor']:.2f}", f"{r['ratio']:.3f}")
        print(f"{r['label']:<22}{r['requests']:>8}{r['http_429']:>8}{r['wall']:>9.2f}{floor:>9}{ratio:>12}"
              f"{r['max_in_flight']:>15}")
    ours, ocean, listed = results
    print(f"target wall <= 1.25 x floor: {'MET' if ours['ratio'] <= 1.25 else 'MISSED'} ({ours['ratio']:.3f}); "
          f"429s ours {ours['http_429']} vs ocean {ocean['http_429']}; ocean wall / ours {ocean['wall'] / ours['wall']:.2f}x")
    print(f"tagValues: by-environment (same rows): {listed['requests']} requests instead of {ours['requests']}, "
          f"{ours['wall'] / listed['wall']:.1f}x faster than per-issue tag values, {ocean['wall'] / listed['wall']:.1f}x "
          "faster than Ocean's strategy")
    if sizes:
        print_cost(sizes)


if __name__ == "__main__":
    main()
