"""The Dagster resource for Sentry: configuration only; it hands out a SentryClient.

The bundled demo organization is another resource with the same interface (`resources/demo.py`), chosen in
`resources/__init__.py` when SENTRY_TOKEN is not set.
"""

from __future__ import annotations

import logging
from typing import Optional

from dagster import ConfigurableResource, InitResourceContext
from pydantic import field_validator

from sentry_port_assets.config import DEFAULT_SENTRY_HOST, checked_url
from sentry_port_assets.sentry.client import RetryPolicy, SentryClient
from sentry_port_assets.sentry.errors import SentryConfigError
from sentry_port_assets.worker_host import tag_worker_host


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

    @field_validator("host")
    @classmethod
    def _host_is_a_url(cls, host: str) -> str:
        # Refused when the resource is built, before its config reaches a run snapshot or the UI.
        return checked_url("SENTRY_HOST", host, SentryConfigError)

    @property
    def is_demo(self) -> bool:
        return False

    @property
    def description(self) -> str:
        """The source as the assets' metadata names it."""
        return self.host

    def warn_if_demo(self, log: logging.Logger | logging.LoggerAdapter) -> None:
        """Real Sentry: nothing to say (the demo resource says loudly that it is one)."""

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, backoff_seconds=self.backoff_seconds)

    def get_client(self) -> SentryClient:
        if not self.token:
            raise SentryConfigError("SENTRY_TOKEN is not set: an auth token with org:read, member:read, team:read, "
                                    "project:read and event:read")
        if not self.organization:
            raise SentryConfigError(
                "SENTRY_ORGANIZATION is not set: with SENTRY_TOKEN set, name the organization to sync "
                "(its slug, the `acme` of https://acme.sentry.io)."
            )
        return SentryClient(self.host, self.organization, self.token, retry=self.retry_policy(),
                            timeout_seconds=self.timeout_seconds)
