"""How an instance's assets present themselves in the UI: owners, tags, group, and a translation hook.

Every asset is first described as an `AssetSpec` (key, group, description, metadata, kinds); `Presentation.spec`
adds the instance's owners and tags, moves it to the instance's group when one is set, then hands it to the user's
`translate(spec) -> spec` (the role dagster-fivetran's `DagsterFivetranTranslator.get_asset_spec` plays), and the
asset is built from the result. Keys are this project's contract (jobs, sensors, README) and cannot be translated.
In a `dg` project the same can be done without code through the component's `owners`, `tags`, `group_name`, or
`post_processing` in its defs.yaml (Dagster's own mechanism, which works on any component).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetSpec

KIND_TAG = "dagster/kind/"
Translate = Callable[[AssetSpec], AssetSpec]


@dataclass(frozen=True)
class Presentation:
    owners: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    group_name: str | None = None
    translate: Translate | None = None

    def spec(self, spec: AssetSpec) -> AssetSpec:
        spec = spec.replace_attributes(
            owners=[*spec.owners, *(o for o in self.owners if o not in spec.owners)],
            tags={**spec.tags, **self.tags},
            group_name=self.group_name or spec.group_name,
        )
        if self.translate is None:
            return spec
        translated = self.translate(spec)
        if translated.key != spec.key:
            raise ValueError(f"translate changed the key of {spec.key.to_user_string()} to "
                             f"{translated.key.to_user_string()}: keys are the jobs' and sensors' contract; use "
                             "key_prefix to move an instance's keys")
        return translated

    def asset_args(self, spec: AssetSpec) -> dict[str, Any]:
        """The presented spec as `@asset` keyword arguments."""
        spec = self.spec(spec)
        return {"key": spec.key, "group_name": spec.group_name, "description": spec.description,
                "metadata": dict(spec.metadata), "owners": list(spec.owners), "kinds": set(spec.kinds),
                "tags": {k: v for k, v in spec.tags.items() if not k.startswith(KIND_TAG)}}


PLAIN = Presentation()
