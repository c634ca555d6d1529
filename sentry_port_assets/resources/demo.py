"""The demo's resources, chosen in `resources/__init__.py` when SENTRY_TOKEN is not set.

- `DemoSentryResource`: the bundled demo organization behind the same interface as `SentryResource`. The Sentry
  emulator runs in process behind httpx's ASGI transport, so the demo goes through the very client code a real
  organization does; it says so loudly.
- `DemoPortResource`: the Port resource of a demo deployment. It refuses Port credentials, including ones a run's
  config adds from the launchpad (config can change a resource's fields, never its class): demo data never
  reaches a real Port.
"""

from __future__ import annotations

import logging
from typing import Optional

import httpx

from sentry_port_assets.emulators.sentry_api import EmulatorConfig, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import DEMO_ORGANIZATION, demo_dataset
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.resource import SentryResource

DEMO_HOST = "http://demo-sentry.invalid"
_DEMO_TOKEN = "demo-token"

DEMO_WARNING = (
    "SENTRY_TOKEN is not set: reading the bundled DEMO organization "
    f"{DEMO_ORGANIZATION!r}, not your Sentry. To sync a real organization set SENTRY_TOKEN (an auth token with "
    "org:read, member:read, team:read, project:read and event:read) and SENTRY_ORGANIZATION, plus SENTRY_HOST "
    "for self-hosted Sentry."
)


def component_demo_warning(defs_yaml: str) -> str:
    """The demo warning of a component instance: what to set in its defs.yaml, not in the environment."""
    return (f"{defs_yaml} sets no Sentry token: reading the bundled DEMO organization {DEMO_ORGANIZATION!r}, not your "
            "Sentry. To sync a real organization set, in that file, sentry_organization and sentry_token_env (the "
            "name of the variable holding an auth token with org:read, member:read, team:read, project:read and "
            "event:read; or sentry_token: \"{{ env.NAME }}\"), plus sentry_host for self-hosted Sentry.")


class DemoSentryResource(SentryResource):
    """The bundled demo organization (no token, no network)."""

    host: str = DEMO_HOST
    organization: Optional[str] = DEMO_ORGANIZATION
    # The defs.yaml of the component instance that runs the demo (its warning names that file); None: the
    # standalone code location, configured by environment variables.
    defs_yaml: Optional[str] = None

    @property
    def is_demo(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return "demo organization"

    def warn_if_demo(self, log: logging.Logger | logging.LoggerAdapter) -> None:
        log.warning(component_demo_warning(self.defs_yaml) if self.defs_yaml else DEMO_WARNING)

    def get_client(self) -> SentryClient:
        app = create_sentry_emulator(demo_dataset(), EmulatorConfig(token=_DEMO_TOKEN))
        return SentryClient(DEMO_HOST, DEMO_ORGANIZATION, _DEMO_TOKEN, retry=self.retry_policy(),
                            timeout_seconds=self.timeout_seconds, transport=httpx.ASGITransport(app=app))


class DemoPortResource(PortResource):
    """The local catalog only: Port credentials are refused (PortConfigError naming the rule)."""

    @property
    def demo_source(self) -> bool:
        return True
