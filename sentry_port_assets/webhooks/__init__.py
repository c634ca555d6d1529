"""Sentry webhooks: the receiver (starlette) and the durable inbox (SQLite or PostgreSQL) the Dagster sensor consumes."""

from sentry_port_assets.webhooks.inbox import Inbox, InboxEvent, default_inbox_path
from sentry_port_assets.webhooks.receiver import HANDLED_ACTIONS, WebhookSecretMissing, create_receiver, sign

__all__ = [
    "HANDLED_ACTIONS",
    "Inbox",
    "InboxEvent",
    "WebhookSecretMissing",
    "create_receiver",
    "default_inbox_path",
    "sign",
]
