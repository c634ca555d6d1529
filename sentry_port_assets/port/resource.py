"""The Dagster resource for Port: configuration only; it hands out a PortTarget (Port's API or the local catalog),
or a PortClient for reads such as the integration's config."""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from dagster import ConfigurableResource, InitResourceContext
from pydantic import field_validator

from sentry_port_assets.config import DEFAULT_PORT_BASE_URL, checked_url
from sentry_port_assets.port.client import PortClient
from sentry_port_assets.port.datasource import Datasource
from sentry_port_assets.port.errors import PortConfigError
from sentry_port_assets.port.target import PortTarget, build_target
from sentry_port_assets.worker_host import tag_worker_host


# Port's API host -> its web app: the EU and US regions, under both of Port's domains (docs.port.io).
_APPS = {"api.getport.io": "https://app.getport.io", "api.us.getport.io": "https://app.us.getport.io",
         "api.port.io": "https://app.port.io", "api.us.port.io": "https://app.us.port.io"}


def port_app_url(base_url: str, explicit: str | None = None) -> str | None:
    """Port's web app for the API at `base_url` (`explicit`, PORT_APP_URL, when set); None for an API Port does not
    host (then only PORT_APP_URL says where the app is)."""
    if explicit:
        return explicit.rstrip("/")
    return _APPS.get((urlsplit(base_url).hostname or "").lower())


class PortResource(ConfigurableResource):
    """Port credentials (EnvVar references), or none for the local catalog at `local_catalog`."""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        tag_worker_host(context)

    base_url: str = DEFAULT_PORT_BASE_URL
    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    local_catalog: Optional[str] = None
    initialize_resources: bool = True
    # Blueprints whose stale entities may be deleted; None: the bundled blueprints (never Port's own `_user`).
    owned_blueprints: Optional[list[str]] = None
    # PORT_BLUEPRINTS_FILE: a JSON list in defaults/blueprints.json's format, ensured with the bundled blueprints
    # (new blueprints, or properties and relations to add to ours or to Port's own).
    blueprints_file: Optional[str] = None
    # "fail": entities Port refuses fail the run; "warn": they fail the publish's asset check instead.
    refused_entities: str = "fail"
    # Who this integration is in Port: its writes carry it as `$datasource`, and it deletes only what it wrote.
    integration_identifier: str = "sentry"
    # The identifier of Port's Ocean Sentry integration this one replaces (PORT_ADOPT_INTEGRATION): what it wrote is
    # treated as written by this integration, rewritten under its name and deleted when stale.
    adopt_integration: Optional[str] = None
    # Port's web app (PORT_APP_URL), for the links in the assets' metadata; None: derived from base_url.
    app_url: Optional[str] = None

    @field_validator("base_url")
    @classmethod
    def _base_url_is_a_url(cls, base_url: str) -> str:
        return checked_url("PORT_BASE_URL", base_url, PortConfigError)  # as SentryResource.host

    @property
    def demo_source(self) -> bool:
        """True for `resources/demo.py`'s DemoPortResource: the data is the bundled demo's."""
        return False

    @property
    def app_url_or_default(self) -> str | None:
        return port_app_url(self.base_url, self.app_url)

    @property
    def datasource(self) -> Datasource:
        """Who this integration writes as in Port, and whose entities it may rewrite and delete."""
        return Datasource(self.integration_identifier, self.adopt_integration)

    def target(self) -> PortTarget:
        """Build inside the event loop that will use it: the client's connection pool belongs to that loop."""
        return build_target(client_id=self.client_id, client_secret=self.client_secret, base_url=self.base_url,
                            catalog_path=self.local_catalog, demo_source=self.demo_source,
                            datasource=self.datasource)

    def client(self, *, timeout: float = 30.0, max_retries: int = 5) -> PortClient:
        """A client of Port's API (both credentials needed); build it inside the event loop that uses it."""
        if not (self.client_id and self.client_secret):
            raise PortConfigError("Port's API needs PORT_CLIENT_ID and PORT_CLIENT_SECRET (Port: Settings > "
                                  "Credentials)")
        return PortClient(self.client_id, self.client_secret, self.base_url or DEFAULT_PORT_BASE_URL,
                          timeout=timeout, max_retries=max_retries,
                          user_agent=self.datasource.user_agent)
