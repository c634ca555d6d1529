"""The publish policy of a run, built in one place for the resync (`assets/catalog.py`) and the webhooks
(`webhooks/job.py`): see `port/policy.py` for what it holds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sentry_port_assets.config import load_extra_blueprints
from sentry_port_assets.mapping.blueprints import (OWNED_BY_PORT, load_default_scorecards, owned_blueprints,
                                                  port_owned_fragments)
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.kinds import SYNCED
from sentry_port_assets.mapping.jqcompile import constant_value
from sentry_port_assets.port.policy import PublishPolicy
from sentry_port_assets.port.resource import PortResource

# The kinds a resync fetches and maps: every kind with an entity asset (not `comment`, which only webhooks write).
RESYNC_KINDS: tuple[str, ...] = SYNCED


def owned_blueprint_names(port: PortResource) -> set[str]:
    """Blueprints whose stale entities may be deleted: PORT_OWNED_BLUEPRINTS, else the bundled blueprints; never
    Port's own `_user`, which the mapping only merges a relation into."""
    return set(port.owned_blueprints or [b["identifier"] for b in owned_blueprints()]) - {"_user"}


def mapped_blueprints(mapping: CompiledMapping, entities: Iterable[Mapping[str, Any]],
                      kinds: Sequence[str] = RESYNC_KINDS) -> set[str]:
    """Blueprints the mapping writes for these kinds: constant `blueprint` leaves, plus whatever the entities name.
    A resync owns no `comment` blueprint: only webhooks write comments, so a resync must not find them stale."""
    static = {constant_value(r.port.entity.mappings.blueprint) for r in mapping.resources_of(*kinds)}
    return {b for b in static if isinstance(b, str)} | {e["blueprint"] for e in entities}


def publish_policy(port: PortResource, mapping: CompiledMapping, entities: Iterable[Mapping[str, Any]],
                   kinds: Sequence[str] = RESYNC_KINDS) -> PublishPolicy:
    config = mapping.config
    extra = load_extra_blueprints(port.blueprints_file)
    return PublishPolicy(
        owned=frozenset(owned_blueprint_names(port) & mapped_blueprints(mapping, entities, kinds)),
        merge=config.enable_merge_entity,
        create_missing_related=config.create_missing_related_entities,
        deletion_threshold=config.entity_deletion_threshold,
        blueprints=tuple(owned_blueprints()) + tuple(b for b in extra if not b.get(OWNED_BY_PORT)),
        fragments=tuple(port_owned_fragments()) + tuple(b for b in extra if b.get(OWNED_BY_PORT)),
        ensure_blueprints=port.initialize_resources,
        scorecards=tuple(load_default_scorecards()),
    )
