"""The names one instance of this project gives its definitions, so that several instances (one per Sentry
organization) can live in one code location: asset keys, groups, jobs, sensors, schedules and resource keys all
carry the instance's prefix. `Names()` (no prefix) gives today's names, which the standalone code location keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey

_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Names:
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix and not _PREFIX.match(self.prefix):
            raise ValueError(f"key prefix {self.prefix!r}: lowercase letters, digits and _, starting with a letter, "
                             "at most 40 characters")

    def key(self, *path: str) -> AssetKey:
        return AssetKey([self.prefix, *path] if self.prefix else list(path))

    def group(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def job(self, name: str) -> str:
        """Jobs, sensors, schedules and ops."""
        return f"{self.prefix}__{name}" if self.prefix else name

    def resource(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def resources_of(self, context: Any) -> Bound:
        return Bound(self, context)


class Bound:
    """An instance's resources in a step: `bound.sentry`, `bound.mapping`, `bound.port`."""

    def __init__(self, names: Names, context: Any) -> None:
        self._names, self._context = names, context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context.resources, self._names.resource(name))


DEFAULT = Names()
