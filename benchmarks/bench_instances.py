"""What several organizations in one code location cost, side by side in one run:

1. loading a code location of N instances (`build_sentry_port_defs` merged, asset graph and repository resolved,
   in a fresh process, as the code server and every run process pay it), against one instance: the cost should
   grow with N, not with N²;
2. the webhook receiver accepting signed deliveries with one secret for every installation, against routing them
   by `installation.uuid` among several secrets (the body is parsed before it is verified), over loopback.

    python benchmarks/bench_instances.py [--instances 1 2 5 10] [--runs 5] [--posts 400]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets.webhooks.receiver import create_receiver, sign

LOAD = """
import sys
from dagster import Definitions
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource
n = int(sys.argv[1])
merged = Definitions.merge(*[build_sentry_port_defs(
    key_prefix=f"org{i}", sentry=SentryResource(host="https://sentry.example.com", organization=f"org{i}", token="t"),
    mapping=MappingResource(), port=PortResource(local_catalog=f"org{i}.sqlite", integration_identifier=f"sentry-org{i}"),
    webhook_installation=f"uuid-{i}") for i in range(n)])
merged.get_repository_def()
assert len(merged.resolve_asset_graph().get_all_asset_keys()) == 13 * n
"""


def load_seconds(instances: int, cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", LOAD, str(instances)], cwd=cwd, env=env, check=True,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def receiver_rate(secrets: str | dict[str, str], posts: int, inbox_path: Path) -> float:
    """Accepted deliveries per second, one client posting sequentially (each stored with an fsync)."""
    installations = sorted(secrets) if isinstance(secrets, dict) else ["any"]
    bodies = []
    for n in range(posts):
        installation = installations[n % len(installations)]
        body = json.dumps({"action": "resolved", "installation": {"uuid": installation},
                           "data": {"issue": {"id": str(1000 + n), "status": "resolved", "title": "x" * 2000}}},
                          separators=(",", ":")).encode()
        secret = secrets[installation] if isinstance(secrets, dict) else secrets
        bodies.append((body, {"Sentry-Hook-Resource": "issue", "Request-ID": f"r{n}", "Sentry-Hook-Signature":
                              sign(secret, body), "Sentry-Hook-Timestamp": str(int(time.time())),
                              "Content-Type": "application/json"}))
    with Inbox(inbox_path) as inbox, ServerThread(create_receiver(secrets, inbox)) as server, \
            httpx.Client(base_url=server.url) as client:
        start = time.perf_counter()
        for body, headers in bodies:
            assert client.post("/webhooks/sentry", content=body, headers=headers).status_code == 202
        elapsed = time.perf_counter() - start
        assert inbox.count_pending() == posts
    return posts / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--posts", type=int, default=400)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__"))}
    with tempfile.TemporaryDirectory() as cwd:
        env["DAGSTER_HOME"] = cwd
        times: dict[int, list[float]] = {n: [] for n in args.instances}
        for _ in range(args.runs):  # interleaved, so load on the machine touches every size alike
            for n in args.instances:
                times[n].append(load_seconds(n, cwd, env))
        medians = {n: statistics.median(values) for n, values in times.items()}
        base = medians[args.instances[0]]
        print(f"1. code location load, fresh process, median of {args.runs} (load average {os.getloadavg()[0]:.2f})")
        for n, seconds in medians.items():
            extra = (seconds - base) / (n - args.instances[0]) if n != args.instances[0] else 0.0
            print(f"  {n:>3} instances ({13 * n:>4} assets)  {seconds:6.2f} s  {seconds / base:5.2f} x one instance"
                  + (f"   +{extra:.3f} s per added instance" if extra else ""))

        shared, routed = [], []
        secrets = {f"5a1e{i:04d}-0000-4000-8000-000000000000": f"secret-{i}" for i in range(10)}
        for run in range(3):
            shared.append(receiver_rate("one-secret", args.posts, Path(cwd) / f"shared{run}.sqlite"))
            routed.append(receiver_rate(secrets, args.posts, Path(cwd) / f"routed{run}.sqlite"))
        one, many = statistics.median(shared), statistics.median(routed)
        print(f"2. receiver, {args.posts} signed 2 KB deliveries per run, median of 3, sequential client")
        print(f"  one secret, any installation      {one:7.1f} accepted/s")
        print(f"  routed among 10 installations     {many:7.1f} accepted/s   {many / one:5.2f} x one secret")


if __name__ == "__main__":
    main()
