"""Who wrote an entity, as Port records it: the writer's User-Agent becomes the entity's `$datasource`.

Ocean writes as `port-ocean/<type>/<version>/<identifier>/<sync type>` and lists what it owns with
`POST /v1/blueprints/entities/datasource-entities` (`datasource_prefix`, `datasource_suffix`, `before`). This project
writes as `sentry-port-assets/<version>/<identifier>/exporter`, so each instance (one per Sentry host and
organization, or per PORT_INTEGRATION_IDENTIFIER / PORT_IDENTITY) owns exactly what it wrote, whatever the version that
wrote it, and never what people made in Port's UI or another integration wrote, Port's own Sentry integration
included, unless it is told to replace that one (PORT_ADOPT_INTEGRATION): then it owns what that integration wrote
too, and rewrites it under its own name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

PRODUCT = "sentry-port-assets"
SYNC_TYPE = "exporter"


def _version() -> str:
    try:
        return version("sentry_port_assets")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "0"


OCEAN_PRODUCT = "port-ocean"
# Ocean's integration type for Sentry: the `<type>` of its User-Agent.
OCEAN_SENTRY_TYPE = "sentry"


@dataclass(frozen=True)
class Writer:
    """One writer's `$datasource` as Port's datasource search matches it: it begins with `prefix` and ends with
    `suffix` (any version in between)."""

    prefix: str
    suffix: str

    def wrote(self, datasource: str | None) -> bool:
        return bool(datasource) and datasource.startswith(self.prefix) and datasource.endswith(self.suffix)

    def search_rules(self) -> list[dict[str, str]]:
        """Search rules matching what this writer wrote, as Ocean asks with `$datasource contains` (whether Port's
        search takes `beginsWith`/`endsWith` on `$datasource` is undocumented)."""
        return [{"property": "$datasource", "operator": "contains", "value": self.prefix},
                {"property": "$datasource", "operator": "contains", "value": self.suffix}]


def ocean_writer(integration: str) -> Writer:
    """What Port's Ocean Sentry integration `integration` writes as: `port-ocean/sentry/<version>/<integration>/exporter`
    (port_ocean/clients/port/authentication.py, `user_agent`), and how Ocean itself lists what it wrote
    (port_ocean/clients/port/mixins/entities.py: prefix `port-ocean/<type>/`, suffix `/<identifier>/exporter`)."""
    return Writer(f"{OCEAN_PRODUCT}/{OCEAN_SENTRY_TYPE}/", f"/{integration}/{SYNC_TYPE}")


@dataclass(frozen=True)
class Datasource:
    """Who this instance writes as, and what it may delete: what it wrote, and, when it replaces Port's Ocean Sentry
    integration `adopt` (PORT_ADOPT_INTEGRATION), what that integration wrote."""

    identifier: str
    adopt: str | None = None

    @property
    def user_agent(self) -> str:
        return f"{PRODUCT}/{_version()}/{self.identifier}/{SYNC_TYPE}"

    @property
    def own(self) -> Writer:
        return Writer(f"{PRODUCT}/", f"/{self.identifier}/{SYNC_TYPE}")

    @property
    def adopted(self) -> Writer | None:
        return ocean_writer(self.adopt) if self.adopt else None

    @property
    def writers(self) -> tuple[Writer, ...]:
        """Every writer whose entities count as this instance's (its own first)."""
        return (self.own, *([self.adopted] if self.adopted else []))


# What a target writes as when nobody says otherwise (tests and tools that build targets by hand).
DEFAULT_DATASOURCE = Datasource("sentry")
