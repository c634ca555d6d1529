"""The `sentry-port` console script. Each command group lives in its own module of this package (`map`,
`catalog`, `webhooks`) and registers itself with an `add_<name>_parser(subparsers)` function that calls
`parser.set_defaults(func=run_<name>)`; `run_<name>(args)` returns the exit code. To add a command, add its module
and its registration function to SUBCOMMANDS. Nothing here loads Dagster: the command starts fast.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sentry_port_assets.cli.catalog import add_catalog_parser
from sentry_port_assets.cli.map import add_map_parser
from sentry_port_assets.cli.webhooks import add_webhooks_parser

SUBCOMMANDS: list[Callable[[Any], argparse.ArgumentParser]] = [add_map_parser, add_catalog_parser, add_webhooks_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentry-port", description="Sentry -> Port catalog sync (Dagster).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
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
