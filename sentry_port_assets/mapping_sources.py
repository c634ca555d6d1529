"""Port's integration config as a mapping source (`mapping/source.py`'s `MappingSource`), and the source the
settings name. It needs both the mapping and the Port client, so it sits above both packages; it imports nothing
of Dagster, so `sentry-port map` uses the very source the job uses and still starts fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sentry_port_assets.config import DEFAULT_PORT_BASE_URL, MappingSourceSettings, mapping_source_problem
from sentry_port_assets.mapping.loader import MappingConfigError, MappingSnapshot, canonical_json, sha256_of
from sentry_port_assets.mapping.source import FileMappingSource, MappingSource
from sentry_port_assets.port.client import PortClient

T = TypeVar("T")
# Few retries and short timeouts: the mapping sensor's tick must finish well within Dagster's 60 s.
READ_TIMEOUT_SECONDS, READ_RETRIES = 15.0, 2


class MappingSettingsError(MappingConfigError):
    """The settings that say where the mapping comes from are incomplete (not the mapping's content)."""


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine from sync code, also when called inside a running event loop (in a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class PortIntegrationSource:
    """`GET /v1/integration/{identifier}`: its `config` is the mapping, as Ocean keeps it. `client` builds a Port
    client (inside the event loop that uses it), or is None when the credentials are missing."""

    def __init__(self, identifier: str, client: Callable[[], PortClient] | None,
                 missing: tuple[bool, bool] = (False, False)):
        self.identifier, self._client, self._has = identifier, client, missing

    @property
    def label(self) -> str:
        return f"Port integration {self.identifier}"

    def snapshot(self) -> MappingSnapshot:
        make = self._client
        if make is None:
            raise MappingSettingsError(mapping_source_problem(None, self.identifier, *self._has) or
                                       "the Port credentials are missing")

        async def fetch() -> dict[str, Any]:
            async with make() as client:
                return await client.get_integration(self.identifier)

        integration = run_sync(fetch)
        config = integration.get("config") if isinstance(integration, dict) else None
        if not isinstance(config, dict):
            raise MappingConfigError(
                f"{self.label} (PORT_INTEGRATION_IDENTIFIER) has no mapping: its `config` is "
                f"{type(config).__name__}, expected an object with `resources`")
        text = canonical_json(config)
        updated = integration.get("updatedAt")
        return MappingSnapshot(source=self.label, sha256=sha256_of(text.encode()), text=text, format="json",
                               updated_at=str(updated) if updated is not None else None)


def port_integration_source(identifier: str, client_id: str | None, client_secret: str | None,
                            base_url: str | None) -> PortIntegrationSource:
    if not (client_id and client_secret):
        return PortIntegrationSource(identifier, None, (bool(client_id), bool(client_secret)))
    cid, secret, url = client_id, client_secret, base_url or DEFAULT_PORT_BASE_URL
    return PortIntegrationSource(
        identifier, lambda: PortClient(cid, secret, url, timeout=READ_TIMEOUT_SECONDS, max_retries=READ_RETRIES))


def mapping_source(settings: MappingSourceSettings) -> MappingSource:
    """The source the settings name: Port's integration config when PORT_INTEGRATION_IDENTIFIER is set, else the
    file (PORT_MAPPING_FILE, else the bundled default). Both set: MappingSettingsError."""
    if settings.integration:
        if settings.mapping_file:
            raise MappingSettingsError(mapping_source_problem(settings.mapping_file, settings.integration, True, True)
                                       or "")
        return port_integration_source(settings.integration, settings.port_client_id, settings.port_client_secret,
                                       settings.port_base_url)
    return FileMappingSource(settings.mapping_file)
