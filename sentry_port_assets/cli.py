"""The `sentry-port` console script. Each subcommand lives in its own module and registers itself with an
`add_<name>_parser(subparsers)` function that calls `parser.set_defaults(func=run_<name>)`; `run_<name>(args)`
returns the exit code. To add a subcommand, add its module and function to SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

# (module, registration function)
SUBCOMMANDS: list[tuple[str, str]] = [
    ("sentry_port_assets.cli_map", "add_map_parser"),
    ("sentry_port_assets.port.cli_catalog", "add_catalog_parser"),
    ("sentry_port_assets.webhooks.cli", "add_webhooks_parser"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentry-port", description="Sentry -> Port catalog sync (Dagster).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, function in SUBCOMMANDS:
        getattr(importlib.import_module(module_name), function)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):
        # `sentry-port catalog | head`: end quietly when the reader goes away, as Unix tools do.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
