"""Who wrote an entity, as Port records it: the writer's User-Agent becomes the entity's `$datasource`.

Ocean writes as `port-ocean/<type>/<version>/<identifier>/<sync type>` and lists what it owns with
`POST /v1/blueprints/entities/datasource-entities` (`datasource_prefix`, `datasource_suffix`, `before`). This project
writes as `sentry-port-assets/<version>/<identifier>/exporter`, so each instance (one per Sentry organization, or
per PORT_INTEGRATION_IDENTIFIER) owns exactly what it wrote, whatever the version that wrote it, and never what
people made in Port's UI or another integration (Port's own Sentry integration included) wrote.
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


@dataclass(frozen=True)
class Datasource:
    identifier: str

    @property
    def user_agent(self) -> str:
        return f"{PRODUCT}/{_version()}/{self.identifier}/{SYNC_TYPE}"

    @property
    def prefix(self) -> str:
        return f"{PRODUCT}/"

    @property
    def suffix(self) -> str:
        return f"/{self.identifier}/{SYNC_TYPE}"

    def search_rules(self) -> list[dict[str, str]]:
        """Search rules matching what this writer wrote, as Ocean asks with `$datasource contains` (whether Port's
        search takes `beginsWith`/`endsWith` on `$datasource` is undocumented)."""
        return [{"property": "$datasource", "operator": "contains", "value": self.prefix},
                {"property": "$datasource", "operator": "contains", "value": self.suffix}]


# What a target writes as when nobody says otherwise (tests and tools that build targets by hand).
DEFAULT_DATASOURCE = Datasource("sentry")
