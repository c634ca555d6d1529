"""Loads the mapping YAML (PORT_MAPPING_FILE or the bundled default) into MappingConfig."""

from __future__ import annotations

from pathlib import Path

import yaml

from sentry_port_assets.mapping.config import MappingConfig

DEFAULT_MAPPING_FILE = Path(__file__).resolve().parent.parent / "defaults" / "mapping.yaml"


def load_mapping(path: str | Path | None = None) -> MappingConfig:
    source = Path(path) if path else DEFAULT_MAPPING_FILE
    with open(source, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return MappingConfig.model_validate(data)
