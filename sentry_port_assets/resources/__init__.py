"""Builds every resource from the settings, in one place (secrets stay EnvVar references).

This is where the Sentry source is chosen: `SentryResource` for a real organization, `DemoSentryResource` (the
bundled demo) when SENTRY_TOKEN is not set. The rule that demo data never reaches a real Port is applied here too:
`config.read_settings` refuses Port credentials with the demo, and the demo gets `DemoPortResource`, which refuses
credentials a run's config might add.
"""

from __future__ import annotations

from typing import Any

from dagster import EnvVar

from sentry_port_assets.config import Settings, read_settings
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.demo import DemoPortResource, DemoSentryResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource

__all__ = ["DemoPortResource", "DemoSentryResource", "MappingResource", "build_resources", "sentry_resource"]


def _ref(variable: str | None) -> EnvVar | None:
    """A reference to the variable that holds a secret: Dagster resolves it at run time, the UI shows its name."""
    return EnvVar(variable) if variable else None


def sentry_resource(s: Settings) -> SentryResource:
    if s.demo:
        return DemoSentryResource(defs_yaml=s.defs_yaml)
    return SentryResource(host=s.sentry_host, organization=s.sentry_organization, token=_ref(s.sentry_token_var))


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The external systems' resources for `settings` (default: read and checked from the environment, see
    `config.read_settings`): `sentry`, `mapping`, `port`. The IO managers are wired in `definitions.py`."""
    s = settings or read_settings()
    port = (DemoPortResource if s.demo else PortResource)(
        base_url=s.port_base_url,
        client_id=_ref(s.port_client_id_var),
        client_secret=_ref(s.port_client_secret_var),
        local_catalog=s.local_catalog,
        initialize_resources=s.initialize_resources,
        owned_blueprints=list(s.owned_blueprints) if s.owned_blueprints else None,
        blueprints_file=s.blueprints_file,
        refused_entities=s.refused_entities,
        integration_identifier=s.port_identity,
        adopt_integration=s.adopt_integration,
        app_url=s.port_app_url,
    )
    return {
        "sentry": sentry_resource(s),
        # set: the mapping is Port's integration config (GET /v1/integration/{id}), read through the Port resource
        "mapping": MappingResource(path=s.mapping_file, integration_identifier=s.integration_identifier, port=port),
        "port": port,
    }
