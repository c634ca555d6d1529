"""The Dagster resource for Port: configuration only; it hands out a PortTarget (Port's API or the local catalog)."""

from __future__ import annotations

from typing import Optional

from dagster import ConfigurableResource, InitResourceContext

from sentry_port_assets.config import DEFAULT_PORT_BASE_URL
from sentry_port_assets.port.datasource import Datasource
from sentry_port_assets.port.target import PortTarget, build_target
from sentry_port_assets.worker_host import tag_worker_host


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
    # "fail": entities Port refuses fail the run; "warn": they fail the publish's asset check instead.
    refused_entities: str = "fail"
    # Who this integration is in Port: its writes carry it as `$datasource`, and it deletes only what it wrote.
    integration_identifier: str = "sentry"

    def owned_blueprint_names(self) -> set[str]:
        """Blueprints whose stale entities may be deleted: the configured list, else the bundled blueprints; never
        Port's own `_user`, which the mapping only merges a relation into."""
        from sentry_port_assets.mapping.blueprints import owned_blueprints

        return set(self.owned_blueprints or [b["identifier"] for b in owned_blueprints()]) - {"_user"}

    def target(self, *, source_is_demo: bool) -> PortTarget:
        """Build inside the event loop that will use it: the client's connection pool belongs to that loop."""
        return build_target(client_id=self.client_id, client_secret=self.client_secret, base_url=self.base_url,
                            catalog_path=self.local_catalog, source_is_demo=source_is_demo,
                            datasource=Datasource(self.integration_identifier))
