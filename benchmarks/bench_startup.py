"""How long the `sentry-port` command and the Dagster code location take to start, side by side in one run.

Each command runs as a fresh process, `--runs` times; medians are printed with the ratio to loading the
definitions, which is what every `sentry-port` command cost while the package loaded them on import.

    python benchmarks/bench_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "sentry-port --help": [sys.executable, "-m", "sentry_port_assets.cli", "--help"],
    "sentry-port catalog (no catalog yet)": [sys.executable, "-m", "sentry_port_assets.cli", "catalog",
                                             "--path", "missing.sqlite"],
    "sentry-port map --help": [sys.executable, "-m", "sentry_port_assets.cli", "map", "--help"],
    "load the Dagster definitions": [sys.executable, "-c", "import sentry_port_assets.definitions"],
}


def timed(command: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__"))}
    with tempfile.TemporaryDirectory() as cwd:
        env["DAGSTER_HOME"] = cwd
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(runs):  # interleaved, so load on the machine touches every command alike
            for name, command in COMMANDS.items():
                times[name].append(timed(command, cwd, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["load the Dagster definitions"]
    print(f"{runs} runs each, interleaved; median wall time per fresh process (load average "
          f"{os.getloadavg()[0]:.2f})")
    for name, seconds in medians.items():
        print(f"  {name:<40} {seconds:6.3f} s   {seconds / base:5.2f} x the definitions' load")


if __name__ == "__main__":
    main()
