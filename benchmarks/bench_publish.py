"""Benchmark: publish 20,000 entities into the Port emulator under a per-second rate limit, then rerun unchanged.

    python benchmarks/bench_publish.py [--entities 20000] [--rate 50] [--concurrency 8]

Prints, for the first run: requests, wall seconds, the floor (the least time the limit allows for that many
requests: (ceil(requests / rate) - 1) windows) and the ratio wall / floor (target <= 1.25); for the no-change rerun:
requests sent and writes (target 0 writes); and for a no-change rerun with `enableMergeEntity: false` over a blueprint
with a calculation property: writes (target 0); for a switch from Ocean (PORT_ADOPT_INTEGRATION) over the same
entities written by Ocean: entities adopted, requests against the floor, and the next publish's writes (target 0).
Then, over the local catalog holding `--held` entities (default
100,000), the memory a no-change resync's read and compare takes (tracemalloc peak above the produced entities
already in memory) side by side with what holding every read entity at once takes (target: reconcile < 0.5 x that).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
import tracemalloc
from pathlib import Path

from sentry_port_assets.emulators.port import create_port_emulator
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.port.client import PortClient
from sentry_port_assets.port.datasource import DEFAULT_DATASOURCE, Datasource
from sentry_port_assets.port.policy import PublishPolicy
from sentry_port_assets.port.reconciler import reconcile
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.target import LocalCatalogTarget, PortApiTarget

CLIENT_ID, CLIENT_SECRET = "bench-id", "bench-secret"

BLUEPRINTS = [
    {
        "identifier": "benchTeam",
        "title": "Team",
        "schema": {"properties": {"slug": {"type": "string"}, "memberCount": {"type": "number"}}, "required": []},
    },
    {
        "identifier": "benchUser",
        "title": "User",
        "schema": {"properties": {"username": {"type": "string"}, "isActive": {"type": "boolean"}}, "required": []},
    },
    {
        "identifier": "benchIssue",
        "title": "Issue",
        "schema": {
            "properties": {"link": {"type": "string"}, "status": {"type": "string"}, "isUnhandled": {"type": "boolean"}},
            "required": [],
        },
        "relations": {
            "team": {"target": "benchTeam", "many": False, "required": False},
            "assignee": {"target": "benchUser", "many": False, "required": False},
        },
        # Port computes it and returns it with the entity unless told not to: it must never look like a change
        "calculationProperties": {"label": {"title": "Label", "type": "string",
                                            "calculation": '.identifier + " (" + .properties.status + ")"'}},
    },
]
USER_FRAGMENT = {"identifier": "_user", "relations": {"sentry_user": {"target": "benchUser", "many": False, "required": False}}}
OWNED = {"benchTeam", "benchUser", "benchIssue"}


def make_entities(total: int) -> list[dict]:
    teams = max(1, total // 40)
    users = max(1, total // 10)
    links = max(1, total // 40)
    issues = total - teams - users - links
    out: list[dict] = []
    for t in range(teams):
        out.append({"identifier": f"team-{t}", "title": f"Team {t}", "blueprint": "benchTeam", "properties": {"slug": f"team-{t}", "memberCount": 7}, "relations": {}})
    for u in range(users):
        out.append({"identifier": f"user{u}@example.com", "title": f"User {u}", "blueprint": "benchUser", "properties": {"username": f"user{u}", "isActive": u % 7 != 0}, "relations": {}})
    for u in range(links):
        out.append({"identifier": f"user{u}@example.com", "blueprint": "_user", "relations": {"sentry_user": f"user{u}@example.com"}})
    for i in range(issues):
        out.append({
            "identifier": f"{4000000 + i}-production",
            "title": f"TypeError: cannot read property of undefined ({i}) - production",
            "blueprint": "benchIssue",
            "properties": {"link": f"https://acme.sentry.io/issues/{4000000 + i}/?environment=production", "status": "unresolved", "isUnhandled": i % 3 == 0},
            "relations": {"team": f"team-{i % teams}", "assignee": f"user{i % users}@example.com" if i % 4 else None},
        })
    return out


async def publish(url: str, entities: list[dict], concurrency: int, merge: bool = True,
                  datasource: Datasource = DEFAULT_DATASOURCE, user_agent: str | None = None):
    client = PortClient(CLIENT_ID, CLIENT_SECRET, url, max_concurrency=concurrency,
                        user_agent=user_agent or datasource.user_agent)
    async with PortApiTarget(client, datasource) as target:
        report = await reconcile(
            target, entities, PublishPolicy(owned=frozenset(OWNED), merge=merge, blueprints=BLUEPRINTS,
                                            fragments=[USER_FRAGMENT], ensure_blueprints=True),
            allow_delete=True, blocked_reason=None,
        )
    return report, client.stats


def _peak_mb(work) -> float:
    """Peak traced memory (MB) of `work()` above what was allocated before it started."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 1e6


def read_memory(held: int) -> None:
    """A no-change resync over a target holding `held` entities: the reconciler's memory beside the read it replaced."""
    entities = make_entities(held)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = LocalCatalog(Path(tmp) / "catalog.sqlite")
        catalog.create_blueprint({"identifier": "_user", "title": "User", "schema": {"properties": {}, "required": []}})
        target = LocalCatalogTarget(catalog)

        async def resync():
            return await reconcile(
                target, entities, PublishPolicy(owned=frozenset(OWNED), blueprints=BLUEPRINTS,
                                                fragments=[USER_FRAGMENT], ensure_blueprints=True),
            )

        started = time.monotonic()
        first = asyncio.run(resync())
        assert first.to_metadata()["failed"] == 0
        load = time.monotonic() - started
        reports = []
        ours = _peak_mb(lambda: reports.append(asyncio.run(resync())))
        assert reports[0].upserts_sent == 0, reports[0].to_metadata()["per_blueprint"]

        async def read_all():
            return [await target.search_entities(bp) for bp in sorted(OWNED | {"_user"})]

        whole = _peak_mb(lambda: asyncio.run(read_all()))
        catalog.close()
    print(f"no-change resync over {held} held entities (local catalog, filled in {load:.0f} s):")
    print(f"  reconcile peak        {ours:.1f} MB above the produced entities")
    print(f"  every held entity     {whole:.1f} MB (what reading them all at once holds)")
    print(f"  ratio                 {ours / whole:.2f}  (target < 0.5)")


OCEAN = "my-sentry"


def adoption(entities: list[dict], rate: int, concurrency: int) -> None:
    """Switching from Ocean: Port holds what Ocean's integration wrote (its User-Agent), and the first publish with
    PORT_ADOPT_INTEGRATION rewrites all of it under our name; the next one writes nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_port_emulator(Path(tmp) / "port.sqlite", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                   rate_limit=rate, window_seconds=1.0)
        stats = app.state.port.stats
        app.state.port.catalog.create_blueprint({"identifier": "_user", "title": "User", "schema": {"properties": {}, "required": []}})
        adopting = Datasource("sentry-acme", adopt=OCEAN)
        with ServerThread(app) as server:
            asyncio.run(publish(server.url, entities, concurrency, user_agent=f"port-ocean/sentry/0.1.190/{OCEAN}/exporter"))
            before = stats.total_requests - stats.http_429
            started = time.monotonic()
            report, _ = asyncio.run(publish(server.url, entities, concurrency, datasource=adopting))
            wall = time.monotonic() - started
            requests = stats.total_requests - stats.http_429 - before
            floor = (math.ceil(requests / rate) - 1) * 1.0
            before_writes = stats.writes
            again, _ = asyncio.run(publish(server.url, entities, concurrency, datasource=adopting))
            print(f"switching from Ocean: {len(entities)} entities Ocean wrote, adopted (PORT_ADOPT_INTEGRATION)")
            print(f"  adopted       {report.adopted}  (every produced entity Ocean wrote, rewritten unchanged)")
            print(f"  requests      {requests}  wall {wall:.2f} s  floor {floor:.2f} s  ratio "
                  + (f"{wall / floor:.3f}" if floor else "n/a"))
            print(f"  next publish  {again.upserts_sent} upserts sent, {stats.writes - before_writes} writes  (target 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=50, help="requests per second the emulator allows")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--held", type=int, default=100_000, help="entities held for the memory figure (0: skip)")
    parser.add_argument("--no-adopt", dest="adopt", action="store_false", help="skip the switch-from-Ocean figure")
    args = parser.parse_args()

    entities = make_entities(args.entities)
    with tempfile.TemporaryDirectory() as tmp:
        app = create_port_emulator(
            Path(tmp) / "port.sqlite", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, rate_limit=args.rate, window_seconds=1.0
        )
        stats = app.state.port.stats
        # Port's own _user blueprint exists in every organization
        app.state.port.catalog.create_blueprint({"identifier": "_user", "title": "User", "schema": {"properties": {}, "required": []}})
        with ServerThread(app) as server:
            started = time.monotonic()
            report, client_stats = asyncio.run(publish(server.url, entities, args.concurrency))
            wall = time.monotonic() - started
            requests = stats.total_requests - stats.http_429
            floor = (math.ceil(requests / args.rate) - 1) * 1.0
            meta = report.to_metadata()
            print(f"first run: {len(entities)} entities at {args.rate} requests/s, concurrency {args.concurrency}")
            print(f"  requests      {requests} (+{stats.http_429} answered 429)  [{dict(stats.requests)}]")
            print(f"  created       {meta['created']}  updated {meta['updated']}  failed {meta['failed']}")
            print(f"  wall seconds  {wall:.2f}")
            print(f"  floor seconds {floor:.2f}")
            print(f"  ratio         {wall / floor:.3f}  (target <= 1.25)" if floor else
                  "  ratio         n/a (every request fits in the first second's window: raise --entities)")

            before_requests, before_429, before_writes = stats.total_requests, stats.http_429, stats.writes
            started = time.monotonic()
            report2, _ = asyncio.run(publish(server.url, entities, args.concurrency))
            wall2 = time.monotonic() - started
            meta2 = report2.to_metadata()
            print("no-change rerun:")
            print(f"  requests      {stats.total_requests - before_requests} (+{stats.http_429 - before_429} answered 429)")
            print(f"  upserts sent  {report2.upserts_sent}")
            print(f"  writes        {stats.writes - before_writes}  (target 0)")
            print(f"  unchanged     {meta2['unchanged']}  deleted {meta2['deleted']}")
            print(f"  wall seconds  {wall2:.2f}")
            before_writes = stats.writes
            report3, _ = asyncio.run(publish(server.url, entities, args.concurrency, merge=False))
            print("no-change rerun with enableMergeEntity: false (every held property compared; benchIssue has a "
                  "calculation property):")
            print(f"  upserts sent  {report3.upserts_sent}")
            print(f"  writes        {stats.writes - before_writes}  (target 0)")
            assert meta["failed"] == 0 and meta["created"] == len(entities), meta["failures"][:5]
    if args.adopt:
        adoption(entities, args.rate, args.concurrency)
    if args.held:
        read_memory(args.held)


if __name__ == "__main__":
    main()
