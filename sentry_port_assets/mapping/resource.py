"""The Dagster resource for the mapping: which YAML to load (PORT_MAPPING_FILE, or the bundled default)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource

from sentry_port_assets.mapping.config import MappingConfig
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, load_mapping

_cache: dict[tuple[str, str], MappingConfig] = {}


class MappingResource(ConfigurableResource):
    """`path`: a mapping YAML in Ocean's format; None means the bundled default mapping."""

    path: Optional[str] = None

    @property
    def source(self) -> Path:
        return Path(self.path) if self.path else DEFAULT_MAPPING_FILE

    def content_hash(self) -> str:
        return hashlib.sha256(self.source.read_bytes()).hexdigest()

    def load(self) -> MappingConfig:
        """The parsed (and compiled) mapping; loaded once per file content."""
        key = (str(self.source), self.content_hash())
        if key not in _cache:
            _cache[key] = load_mapping(self.source)
        return _cache[key]
