"""Builds every resource from the environment, in one place (secrets stay EnvVar references)."""

from __future__ import annotations

from typing import Any

from sentry_port_assets.config import DEFAULT_SENTRY_HOST, env_value, env_var
from sentry_port_assets.mapping.resource import MappingResource
from sentry_port_assets.sentry.resource import SentryResource


def build_resources() -> dict[str, Any]:
    return {
        "sentry": SentryResource(
            host=env_value("SENTRY_HOST", DEFAULT_SENTRY_HOST) or DEFAULT_SENTRY_HOST,
            organization=env_value("SENTRY_ORGANIZATION"),
            token=env_var("SENTRY_TOKEN"),
        ),
        "mapping": MappingResource(path=env_value("PORT_MAPPING_FILE")),
    }
