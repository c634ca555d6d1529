"""Builds every resource from the environment, in one place (secrets stay EnvVar references)."""

from __future__ import annotations

from typing import Any

from dagster import FilesystemIOManager

from sentry_port_assets.assets.entities import OPTIONAL_ENTITIES, optional_entities
from sentry_port_assets.config import DEFAULT_PORT_BASE_URL, DEFAULT_SENTRY_HOST, env_value, env_var
from sentry_port_assets.mapping.resource import MappingResource
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sentry.resource import SentryResource

FALSE = ("0", "false", "no", "off")


def build_resources() -> dict[str, Any]:
    return {
        # Named explicitly: `optional_entities` loads through it, and Dagster resolves every top-level resource's
        # dependencies when it builds a sensor's or schedule's context, where no default io_manager is added.
        "io_manager": FilesystemIOManager(),
        OPTIONAL_ENTITIES: optional_entities,
        "sentry": SentryResource(
            host=env_value("SENTRY_HOST", DEFAULT_SENTRY_HOST) or DEFAULT_SENTRY_HOST,
            organization=env_value("SENTRY_ORGANIZATION"),
            token=env_var("SENTRY_TOKEN"),
        ),
        "mapping": MappingResource(
            path=env_value("PORT_MAPPING_FILE"),
            # set: the mapping is Port's integration config (GET /v1/integration/{id}), read with the Port credentials
            integration_identifier=env_value("PORT_INTEGRATION_IDENTIFIER"),
            port_base_url=env_value("PORT_BASE_URL", DEFAULT_PORT_BASE_URL) or DEFAULT_PORT_BASE_URL,
            port_client_id=env_var("PORT_CLIENT_ID"),
            port_client_secret=env_var("PORT_CLIENT_SECRET"),
        ),
        "port": PortResource(
            base_url=env_value("PORT_BASE_URL", DEFAULT_PORT_BASE_URL) or DEFAULT_PORT_BASE_URL,
            client_id=env_var("PORT_CLIENT_ID"),
            client_secret=env_var("PORT_CLIENT_SECRET"),
            local_catalog=env_value("PORT_LOCAL_CATALOG"),
            initialize_resources=(env_value("PORT_INITIALIZE_RESOURCES", "true") or "true").lower() not in FALSE,
            owned_blueprints=_owned_blueprints(),
        ),
    }


def _owned_blueprints() -> list[str] | None:
    raw = env_value("PORT_OWNED_BLUEPRINTS")
    return [b.strip() for b in raw.split(",") if b.strip()] if raw else None
