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
                 credentials: tuple[bool, bool] = (False, False)):
        # `credentials`: whether the client id and the secret are set (to name the missing one).
        self.identifier, self._client, self._credentials = identifier, client, credentials

    @property
    def label(self) -> str:
        return f"Port integration {self.identifier}"

    def snapshot(self) -> MappingSnapshot:
        make = self._client
        if make is None:
            raise MappingSettingsError(mapping_source_problem(None, self.identifier, *self._credentials) or
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


def mapping_source(mapping_file: str | None, integration: str | None, client: Callable[[], PortClient] | None = None,
                   credentials: tuple[bool, bool] = (False, False)) -> MappingSource:
    """Port's integration config when `integration` (PORT_INTEGRATION_IDENTIFIER) is set, read with `client` (None:
    the credentials are missing, `credentials` says which are set), else the file (PORT_MAPPING_FILE, else the bundled
    default). Both set: MappingSettingsError."""
    if integration:
        if mapping_file:
            raise MappingSettingsError(mapping_source_problem(mapping_file, integration, True, True) or "")
        return PortIntegrationSource(integration, client, credentials)
    return FileMappingSource(mapping_file)


def source_from_settings(settings: MappingSourceSettings) -> MappingSource:
    """The source the environment names (`sentry-port map`), with a Port client of its own."""
    cid, secret = settings.port_client_id, settings.port_client_secret
    url = settings.port_base_url or DEFAULT_PORT_BASE_URL
    client = (lambda: PortClient(cid, secret, url, timeout=READ_TIMEOUT_SECONDS, max_retries=READ_RETRIES)) \
        if cid and secret else None
    return mapping_source(settings.mapping_file, settings.integration, client, (bool(cid), bool(secret)))
