"""`MappingResource`: the active mapping (Ocean's YAML) as a Dagster resource.

Two sources:
- a file: `path` (PORT_MAPPING_FILE), None = the bundled default mapping (the seed's);
- Port's integration config, when `integration_identifier` (PORT_INTEGRATION_IDENTIFIER) is set: `GET
  /v1/integration/{identifier}` with the Port credentials, whose `config` is the mapping (as Ocean keeps it).
  It needs `port_client_id` and `port_client_secret`; setting `path` too is an error (which one would you mean?).

`load()` validates and compiles the mapping (see `loader.load_mapping` / `loader.parse_mapping`) and caches the
compiled mapping per source and content, so an edited mapping is picked up by the next run while an unchanged
one is compiled once per process. `snapshot()` reads the content and its sha256 without compiling (the
`port_mapping_sensor` compares hashes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar

import dagster as dg
from pydantic import PrivateAttr

from sentry_port_assets.config import DEFAULT_PORT_BASE_URL, mapping_source_problem
from sentry_port_assets.mapping.config import MappingConfig
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, MappingConfigError, load_mapping, parse_mapping
from sentry_port_assets.port.client import PortClient

_CACHE: dict[tuple[str, str], MappingConfig] = {}
_LOCK = threading.Lock()
T = TypeVar("T")


class MappingSettingsError(MappingConfigError):
    """The settings that say where the mapping comes from are incomplete (not the mapping's content)."""


def load_cached(path: str | Path | None) -> MappingConfig:
    source = Path(path) if path else DEFAULT_MAPPING_FILE
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError:
        return load_mapping(source)  # raises MappingConfigError naming the file
    return _cached((str(source.resolve()), digest), lambda: load_mapping(source))


def _cached(key: tuple[str, str], build: Callable[[], MappingConfig]) -> MappingConfig:
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is None:
        cached = build()
        with _LOCK:
            _CACHE[key] = cached
    return cached


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class MappingSnapshot:
    """The mapping's content as read once: `sha256` of the file's bytes, or of the canonical JSON of Port's
    integration `config` (then `config` and Port's `updated_at` are set too)."""

    source: str
    sha256: str
    path: Optional[Path] = None
    config: Any = None
    updated_at: Optional[str] = None
    integration: Optional[str] = None


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine from sync code, also when called inside a running event loop (in a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class MappingResource(dg.ConfigurableResource):
    """The mapping file (PORT_MAPPING_FILE; None = the bundled default), or Port's integration config when
    `integration_identifier` (PORT_INTEGRATION_IDENTIFIER) is set; the Port credentials are EnvVar references."""

    path: Optional[str] = None
    integration_identifier: Optional[str] = None
    port_base_url: str = DEFAULT_PORT_BASE_URL
    port_client_id: Optional[str] = None
    port_client_secret: Optional[str] = None
    # Port's config as first read in this run: every asset of a run maps with the same mapping.
    _run_snapshot: Optional[MappingSnapshot] = PrivateAttr(default=None)

    @property
    def remote(self) -> bool:
        return bool(self.integration_identifier)

    @property
    def source(self) -> str:
        if self.integration_identifier:
            return f"Port integration {self.integration_identifier}"
        return self.path or str(DEFAULT_MAPPING_FILE)

    def load(self) -> MappingConfig:
        if not self.remote:
            return load_cached(self.path)
        if self._run_snapshot is None:
            self._run_snapshot = self.snapshot()
        return self.compile(self._run_snapshot)

    def compile(self, snapshot: MappingSnapshot) -> MappingConfig:
        """The validated, compiled mapping of `snapshot` (cached per source and content); raises
        MappingConfigError naming the source, the resource, the field and the expression."""
        if snapshot.path is not None:
            path = snapshot.path
            return _cached((str(path.resolve()), snapshot.sha256), lambda: load_mapping(path))
        return _cached((snapshot.source, snapshot.sha256), lambda: parse_mapping(snapshot.config, snapshot.source))

    def content_hash(self) -> str:
        """sha256 of the mapping file's bytes, or of the canonical JSON of Port's integration config."""
        return self.snapshot().sha256

    def snapshot(self) -> MappingSnapshot:
        """Reads the mapping's content once (no compilation). Raises MappingConfigError when the file cannot be
        read, MappingSettingsError when the settings are incomplete, PortError when Port cannot answer."""
        if not self.remote:
            path = Path(self.path) if self.path else DEFAULT_MAPPING_FILE
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise MappingConfigError(f"cannot read mapping file {path} (PORT_MAPPING_FILE): {exc}") from None
            return MappingSnapshot(source=str(path), sha256=hashlib.sha256(raw).hexdigest(), path=path)
        identifier = str(self.integration_identifier)
        problem = mapping_source_problem(self.path, identifier, bool(self.port_client_id),
                                         bool(self.port_client_secret))
        if problem:
            raise MappingSettingsError(problem)
        integration = self._fetch_integration(identifier)
        config = integration.get("config") if isinstance(integration, dict) else None
        if not isinstance(config, dict):
            raise MappingConfigError(
                f"Port integration {identifier} (PORT_INTEGRATION_IDENTIFIER) has no mapping: its `config` is "
                f"{type(config).__name__}, expected an object with `resources`"
            )
        digest = hashlib.sha256(canonical_json(config).encode()).hexdigest()
        updated = integration.get("updatedAt")
        return MappingSnapshot(
            source=self.source, sha256=digest, config=config, updated_at=str(updated) if updated is not None else None,
            integration=identifier,
        )

    def _fetch_integration(self, identifier: str) -> dict[str, Any]:
        client_id, client_secret = str(self.port_client_id), str(self.port_client_secret)
        base_url = self.port_base_url or DEFAULT_PORT_BASE_URL

        async def fetch() -> dict[str, Any]:
            # few retries, short timeouts: the sensor's tick must finish well within Dagster's 60 s
            async with PortClient(client_id, client_secret, base_url, timeout=15.0, max_retries=2) as port:
                return await port.get_integration(identifier)

        return _run(fetch)
