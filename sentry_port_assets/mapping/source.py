"""Where the mapping comes from: a `MappingSource` hands out snapshots of the mapping's content.

Two sources exist: `FileMappingSource` (PORT_MAPPING_FILE, or the bundled default) here, and Port's integration
config (`mapping_sources.py`, which needs the Port client and so lives above both packages). A run takes ONE
snapshot and maps every asset with it; `compile_snapshot` compiles a snapshot once per process and content.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.loader import MappingSnapshot, mapping_file, parse_snapshot, read_mapping_file


class MappingSource(Protocol):
    @property
    def label(self) -> str:
        """What to name in messages: the file's path, or `Port integration <id>`."""

    def snapshot(self) -> MappingSnapshot:
        """The content as it is now, read once (no compilation). Raises MappingConfigError when it cannot be read
        (the source's own errors, e.g. Port's, pass through)."""


class FileMappingSource:
    def __init__(self, path: str | Path | None = None):
        self.path = mapping_file(path)

    @property
    def label(self) -> str:
        return str(self.path)

    def snapshot(self) -> MappingSnapshot:
        return read_mapping_file(self.path)


# A long-lived process (the daemon's code server) sees a handful of mapping versions; keep the latest few compiled.
_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, str], CompiledMapping] = OrderedDict()
_lock = threading.Lock()


def compile_snapshot(snapshot: MappingSnapshot) -> CompiledMapping:
    """The validated, compiled mapping of `snapshot`, compiled once per source and content; raises
    MappingConfigError naming the source, the resource, the field and the expression."""
    key = (snapshot.source, snapshot.sha256)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    compiled = parse_snapshot(snapshot)
    with _lock:
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled
