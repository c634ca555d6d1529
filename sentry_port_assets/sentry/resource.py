"""The Dagster resource for Sentry: configuration only; it hands out a SentryClient.

With no token it serves the bundled demo organization through the same client code path (the emulator runs
in process behind httpx's ASGI transport), and says so loudly.
"""

from __future__ import annotations

import logging
from typing import Optional

import httpx
from dagster import ConfigurableResource, InitResourceContext

from sentry_port_assets.config import DEFAULT_SENTRY_HOST, url_problem
from sentry_port_assets.emulators.sentry_api import EmulatorConfig, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import DEMO_ORGANIZATION, demo_dataset
from sentry_port_assets.sentry.client import RetryPolicy, SentryClient
from sentry_port_assets.sentry.errors import SentryConfigError
from sentry_port_assets.worker_host import tag_worker_host

DEMO_HOST = "http://demo-sentry.invalid"
_DEMO_TOKEN = "demo-token"

DEMO_WARNING = (
    "SENTRY_TOKEN is not set: reading the bundled DEMO organization "
    f"{DEMO_ORGANIZATION!r}, not your Sentry. To sync a real organization set SENTRY_TOKEN (an auth token with "
    "org:read, member:read, team:read, project:read and event:read) and SENTRY_ORGANIZATION, plus SENTRY_HOST "
    "for self-hosted Sentry."
)


class SentryResource(ConfigurableResource):
    """Where Sentry is and how patient to be with it."""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        tag_worker_host(context)

    host: str = DEFAULT_SENTRY_HOST
    organization: Optional[str] = None
    token: Optional[str] = None
    timeout_seconds: float = 30.0
    max_retries: int = 5
    backoff_seconds: float = 0.5
    progress_interval_seconds: float = 5.0

    @property
    def is_demo(self) -> bool:
        return not self.token

    def warn_if_demo(self, log: logging.Logger | logging.LoggerAdapter) -> None:
        if self.is_demo:
            log.warning(DEMO_WARNING)

    def get_client(self) -> SentryClient:
        retry = RetryPolicy(max_retries=self.max_retries, backoff_seconds=self.backoff_seconds)
        if self.is_demo:
            app = create_sentry_emulator(demo_dataset(), EmulatorConfig(token=_DEMO_TOKEN))
            return SentryClient(DEMO_HOST, DEMO_ORGANIZATION, _DEMO_TOKEN, retry=retry,
                                timeout_seconds=self.timeout_seconds, transport=httpx.ASGITransport(app=app))
        problem = url_problem("SENTRY_HOST", self.host)
        if problem:  # httpx would say "unsupported protocol" on every retry instead
            raise SentryConfigError(problem + ".")
        if not self.organization:
            raise SentryConfigError(
                "SENTRY_ORGANIZATION is not set: with SENTRY_TOKEN set, name the organization to sync "
                "(its slug, the `acme` of https://acme.sentry.io)."
            )
        return SentryClient(self.host, self.organization, self.token or "", retry=retry,
                            timeout_seconds=self.timeout_seconds)
