"""Keeps Port's software catalog in sync with a Sentry organization, as Dagster assets.

`defs` (the Dagster definitions of the standalone code location) and `build_sentry_port_defs` (one instance, with
a key prefix, to merge into another code location) are loaded on first access, not on import: the `sentry-port`
command imports this package and must start without loading Dagster or reading the settings the definitions check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster import Definitions

    from sentry_port_assets.component import SentryPortComponent
    from sentry_port_assets.factory import build_sentry_port_defs

    defs: Definitions

__all__ = ["SentryPortComponent", "build_sentry_port_defs", "defs"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from sentry_port_assets.definitions import defs

        return defs
    if name == "build_sentry_port_defs":
        from sentry_port_assets.factory import build_sentry_port_defs

        return build_sentry_port_defs
    if name == "SentryPortComponent":
        from sentry_port_assets.component import SentryPortComponent

        return SentryPortComponent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # Dagster finds the definitions of `-m sentry_port_assets` by listing the module's attributes.
    return sorted([*globals(), "defs", "build_sentry_port_defs", "SentryPortComponent"])
