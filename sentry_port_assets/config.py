"""Environment variables the project reads, with the Ocean-style aliases Port users already set.

Secrets are never read into plain strings at definition time: `env_var()` returns a Dagster `EnvVar`
reference, so the Dagster UI shows the variable's name, never its value.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import EnvVar

# Our name -> the Ocean names accepted for it, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "SENTRY_HOST": ("OCEAN__INTEGRATION__CONFIG__SENTRY_HOST",),
    "SENTRY_ORGANIZATION": ("OCEAN__INTEGRATION__CONFIG__SENTRY_ORGANIZATION",),
    "SENTRY_TOKEN": ("OCEAN__INTEGRATION__CONFIG__SENTRY_TOKEN",),
    "PORT_CLIENT_ID": ("OCEAN__PORT__CLIENT_ID",),
    "PORT_CLIENT_SECRET": ("OCEAN__PORT__CLIENT_SECRET",),
    "PORT_BASE_URL": ("OCEAN__PORT__BASE_URL",),
    "PORT_INITIALIZE_RESOURCES": ("OCEAN__INITIALIZE_PORT_RESOURCES",),
    "SENTRY_PORT_RESYNC_MINUTES": ("OCEAN__SCHEDULED_RESYNC_INTERVAL",),
    "PORT_INTEGRATION_IDENTIFIER": ("OCEAN__INTEGRATION__IDENTIFIER",),
}

DEFAULT_SENTRY_HOST = "https://sentry.io"
DEFAULT_PORT_BASE_URL = "https://api.getport.io"


def env_name(name: str) -> str | None:
    """The variable actually set for `name` (ours first, then its Ocean aliases), or None."""
    for candidate in (name, *ALIASES.get(name, ())):
        if os.environ.get(candidate):
            return candidate
    return None


def env_var(name: str) -> EnvVar | None:
    """A Dagster EnvVar for whichever spelling of `name` is set, or None when none is."""
    found = env_name(name)
    return EnvVar(found) if found else None


def env_value(name: str, default: str | None = None) -> str | None:
    """The value of a non-secret setting (host, slug, paths), honouring the aliases."""
    found = env_name(name)
    return os.environ[found] if found else default


def state_dir() -> Path:
    """Where local state lives: under $DAGSTER_HOME when set, else ./.sentry_port/."""
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) / "sentry_port" if home else Path(".sentry_port")
