"""`MappingResource`: the active mapping (Ocean's YAML) as a Dagster resource.

`path=None` means the bundled default mapping (the seed's). `load()` validates and compiles the file (see
`loader.load_mapping`) and caches the compiled mapping per path and file content, so an edited file is picked
up by the next run while an unchanged one is compiled once per process.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Optional

import dagster as dg

from sentry_port_assets.mapping.config import MappingConfig
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, load_mapping

_CACHE: dict[tuple[str, str], MappingConfig] = {}
_LOCK = threading.Lock()


def load_cached(path: str | Path | None) -> MappingConfig:
    source = Path(path) if path else DEFAULT_MAPPING_FILE
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError:
        return load_mapping(source)  # raises MappingConfigError naming the file
    key = (str(source.resolve()), digest)
    with _LOCK:
        cached = _CACHE.get(key)
    if cached is None:
        cached = load_mapping(source)
        with _LOCK:
            _CACHE[key] = cached
    return cached


class MappingResource(dg.ConfigurableResource):
    """The mapping file (PORT_MAPPING_FILE); None = the bundled default mapping."""

    path: Optional[str] = None

    def load(self) -> MappingConfig:
        return load_cached(self.path)

    @property
    def source(self) -> str:
        return self.path or str(DEFAULT_MAPPING_FILE)
