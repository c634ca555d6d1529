"""Keeps Port's software catalog in sync with a Sentry organization, as Dagster assets."""

from sentry_port_assets.definitions import defs

__all__ = ["defs"]
