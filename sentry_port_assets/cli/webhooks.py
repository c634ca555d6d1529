"""`sentry-port webhooks serve --host H --port P [--inbox PATH]`: runs the receiver with uvicorn.

`add_webhooks_parser(subparsers)` registers the `webhooks` command on the main `sentry-port` parser
(`cli/__init__.py`); the handler is stored as `func` in the parsed namespace (`args.func(args)` returns the exit
code).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from sentry_port_assets.config import INBOX_ENV, INSTALLATIONS_ENV, SECRET_ENV, ConfigError, webhook_secrets
from sentry_port_assets.webhooks.guard import GuardedH11Protocol
from sentry_port_assets.webhooks.inbox import Inbox, default_inbox_path, describe, inbox_exists
from sentry_port_assets.webhooks.receiver import WEBHOOK_PATH, WebhookSecretMissing, create_receiver


def _serve(args: argparse.Namespace) -> int:
    try:
        secrets = webhook_secrets()
    except ConfigError as exc:
        # Checked before anything is opened or bound; SystemExit prints the message to stderr, exit status 1.
        raise SystemExit(f"sentry-port webhooks serve: {exc}") from None
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inbox_path = args.inbox or default_inbox_path()
    inbox = Inbox(inbox_path)
    try:
        app = create_receiver(secrets, inbox)
    except (WebhookSecretMissing, ValueError) as exc:
        inbox.close()
        raise SystemExit(f"sentry-port webhooks serve: {exc}") from None
    logging.getLogger(__name__).info(
        "Sentry webhook receiver: POST %s on %s:%d, inbox %s, %s", WEBHOOK_PATH, args.host, args.port,
        inbox.description, "any installation" if isinstance(secrets, str) else
        f"installations {', '.join(sorted(secrets))}")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False, lifespan="off",
                    http=GuardedH11Protocol, timeout_keep_alive=5)
    finally:
        inbox.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    path = args.inbox or default_inbox_path()
    if not inbox_exists(path):
        print(f"no webhook inbox at {describe(path)} (start `sentry-port webhooks serve`, or pass --inbox)")
        return 1
    with Inbox(path) as inbox:
        pending, dead, last = inbox.count_pending(), inbox.dead_letters(args.limit), inbox.last_received_at()
        dead_total, by_installation = inbox.count_dead(), inbox.pending_by_installation()
    print(f"inbox {describe(path)}: {pending} pending, {dead_total} dead-lettered; last event received "
          f"{last.isoformat() if last else 'never'}")
    if len(by_installation) > 1 or None not in by_installation:
        for installation, count in sorted(by_installation.items(), key=lambda item: item[0] or ""):
            print(f"  installation {installation or '(not recorded)'}: {count} pending")
    for event, attempts, error, at in dead:
        print(f"  dead #{event.id} {event.resource}.{event.action} issue {event.issue_id} request {event.request_id} "
              + (f"installation {event.installation} " if event.installation else "") +
              f"(set aside {at.isoformat()}, {attempts} attempts alone): {error}")
    if dead_total:
        print("Dead-lettered events are not applied; the scheduled resync puts their issues right. Fix the cause "
              "(the run's error in the Dagster UI) and they stay harmless.")
    return 0


def add_webhooks_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds `webhooks serve` to a `parser.add_subparsers()` object; returns the `webhooks` parser."""
    webhooks = subparsers.add_parser(
        "webhooks",
        help="Sentry webhook receiver (real-time updates through a durable inbox)",
        description="Receive Sentry webhooks and store them in a durable inbox for the Dagster sensor.",
    )
    commands = webhooks.add_subparsers(dest="webhooks_command", metavar="COMMAND")
    commands.required = True
    serve = commands.add_parser(
        "serve",
        help="run the receiver (POST /webhooks/sentry, GET /healthz)",
        description=f"Run the receiver. The signing secret is read from ${SECRET_ENV}; for one receiver serving "
                    f"several Sentry installations, set ${INSTALLATIONS_ENV} to uuid=VARIABLE pairs instead (each "
                    "installation's secret in its own variable).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument(
        "--inbox",
        default=None,
        help=f"inbox SQLite file or postgresql:// URL (default ${INBOX_ENV}, else <state dir>/webhook_inbox.sqlite)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"], help="uvicorn log level"
    )
    serve.set_defaults(func=_serve)
    status = commands.add_parser("status", help="pending and dead-lettered events of the inbox",
                                 description="Pending events, dead-lettered events (with why), last event received.")
    status.add_argument("--inbox", default=None, help=f"inbox SQLite file or postgresql:// URL (default ${INBOX_ENV}, "
                                                      "else <state dir>/webhook_inbox.sqlite)")
    status.add_argument("--limit", type=int, default=50, help="dead-lettered events to list (default 50)")
    status.set_defaults(func=_status)
    return webhooks

