"""`CompiledMapping`: a validated mapping with every resource's jq program compiled, and where it came from.

What `loader.load_mapping` / `loader.parse_mapping` return and every step maps with. `source` names the file or
the Port integration, `sha256` identifies the exact content (the file's bytes, or the canonical JSON of Port's
integration config): assets record it, and the publish refuses deletes over entities mapped with different ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sentry_port_assets.mapping.config import MappingConfig, ResourceConfig
from sentry_port_assets.mapping.engine import CompiledResource, MappingConfigError, MappingResult, compile_resource


@dataclass(frozen=True)
class CompiledMapping:
    config: MappingConfig
    resources: tuple[CompiledResource, ...]
    source: str
    sha256: str
    # What the loader found and ignored: unknown keys, options a kind does not use (each naming the key).
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def compile(cls, config: MappingConfig, source: str, sha256: str, warnings: Sequence[str] = ()) -> CompiledMapping:
        """Compiles every resource; raises MappingConfigError naming, for every broken expression of every resource,
        the resource, field and expression (one per line)."""
        resources: list[CompiledResource] = []
        problems: list[str] = []
        for index, resource in enumerate(config.resources):
            try:
                resources.append(compile_resource(resource, index))
            except MappingConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise MappingConfigError("\n".join(problems), problems)
        return cls(config, tuple(resources), source, sha256, list(warnings))

    def of_kind(self, kind: str) -> list[CompiledResource]:
        return [c for c in self.resources if c.kind == kind]

    def resources_of(self, *kinds: str) -> list[ResourceConfig]:
        return self.config.resources_of(*kinds)

    def uses(self, *kinds: str) -> bool:
        return self.config.uses(*kinds)

    def map_items(self, kind: str, items: Sequence[Any]) -> MappingResult:
        """Every resource of `kind` applied to the same plain list of items (no tag/query selection: the preview
        CLI uses it)."""
        result = MappingResult()
        for compiled in self.of_kind(kind):
            result.extend(compiled.map(items))
        return result
