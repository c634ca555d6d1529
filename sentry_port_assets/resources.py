"""Builds every resource from the settings, in one place (secrets stay EnvVar references)."""

from __future__ import annotations

from typing import Any

from dagster import EnvVar, FilesystemIOManager

from sentry_port_assets.assets.entities import OPTIONAL_ENTITIES, optional_entities
from sentry_port_assets.config import Settings, read_settings
from sentry_port_assets.mapping.resource import MappingResource
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sentry.resource import SentryResource


def _ref(variable: str | None) -> EnvVar | None:
    """A reference to the variable that holds a secret: Dagster resolves it at run time, the UI shows its name."""
    return EnvVar(variable) if variable else None


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The resources for `settings` (default: read and checked from the environment, see `config.read_settings`)."""
    s = settings or read_settings()
    return {
        # Named explicitly: `optional_entities` loads through it, and Dagster resolves every top-level resource's
        # dependencies when it builds a sensor's or schedule's context, where no default io_manager is added.
        "io_manager": FilesystemIOManager(),
        OPTIONAL_ENTITIES: optional_entities,
        "sentry": SentryResource(host=s.sentry_host, organization=s.sentry_organization, token=_ref(s.sentry_token_var)),
        "mapping": MappingResource(
            path=s.mapping_file,
            # set: the mapping is Port's integration config (GET /v1/integration/{id}), read with the Port credentials
            integration_identifier=s.integration_identifier,
            port_base_url=s.port_base_url,
            port_client_id=_ref(s.port_client_id_var),
            port_client_secret=_ref(s.port_client_secret_var),
        ),
        "port": PortResource(
            base_url=s.port_base_url,
            client_id=_ref(s.port_client_id_var),
            client_secret=_ref(s.port_client_secret_var),
            local_catalog=s.local_catalog,
            initialize_resources=s.initialize_resources,
            owned_blueprints=list(s.owned_blueprints) if s.owned_blueprints else None,
            refused_entities=s.refused_entities,
            integration_identifier=s.port_identity,
        ),
    }
