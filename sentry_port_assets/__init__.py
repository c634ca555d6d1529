"""Keeps Port's software catalog in sync with a Sentry organization, as Dagster assets.

`build_sentry_port_defs` (one instance, with a key prefix, to merge into another code location) and
`SentryPortComponent` are imported on first access, not on import: the `sentry-port` command imports this package
and must start without loading Dagster.

`defs`, the standalone code location (`dagster ... -m sentry_port_assets`), is a `@dagster.definitions` function:
Dagster builds it when it loads this module as a code location, and nothing else does. Listing this package's
attributes (what `dg check defs` and `dg dev` do to a project whose `defs.yaml` names
`sentry_port_assets.SentryPortComponent`) must not read the standalone location's settings: in a project configured
for the component (`ACME_SENTRY_TOKEN`, Port credentials) those settings are not this location's, and reading them
refuses the load. The built `Definitions` is `sentry_port_assets.definitions.defs`.
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
        globals()["defs"] = _standalone_defs()
        return globals()["defs"]
    if name == "build_sentry_port_defs":
        from sentry_port_assets.factory import build_sentry_port_defs

        return build_sentry_port_defs
    if name == "SentryPortComponent":
        from sentry_port_assets.component import SentryPortComponent

        return SentryPortComponent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _standalone_defs() -> Any:
    import dagster

    @dagster.definitions
    def defs() -> Definitions:
        from sentry_port_assets.definitions import defs as standalone

        return standalone

    return defs


def __dir__() -> list[str]:
    # Dagster finds the definitions of `-m sentry_port_assets` by listing the module's attributes.
    return sorted([*globals(), "defs", "build_sentry_port_defs", "SentryPortComponent"])
