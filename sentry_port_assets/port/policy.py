"""`PublishPolicy`: everything that decides how entities are written to Port, in one value.

Built once per publish by `assets/policy.py` (from the mapping's flags, the bundled blueprints and the Port
resource's settings) and handed whole to `reconciler.reconcile` (resync) and `reconciler.apply_changes` (webhooks),
so the two paths cannot disagree on what they own, merge or may delete.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PublishPolicy:
    # Blueprints whose stale entities this integration may delete (never Port's own `_user`).
    owned: frozenset[str]
    # Ocean's `enableMergeEntity`: send only the mapped fields (True) or replace whole entities (False).
    merge: bool = True
    # Ocean's `createMissingRelatedEntities`.
    create_missing_related: bool = True
    # Ocean's `entityDeletionThreshold`: more than this share of the owned entities stale -> no delete at all.
    deletion_threshold: float = 0.9
    # The blueprints to create when missing, and fragments of Port's own blueprints (relations to add); ensured
    # first when `ensure_blueprints` (PORT_INITIALIZE_RESOURCES). Their relations also give the write order.
    blueprints: Sequence[Mapping[str, Any]] = field(default=())
    fragments: Sequence[Mapping[str, Any]] = field(default=())
    ensure_blueprints: bool = False
    # Scorecards to create with the blueprints when missing (`[{blueprint, data: [scorecard]}]`, Ocean's
    # scorecards.json shape); existing ones are left as they are.
    scorecards: Sequence[Mapping[str, Any]] = field(default=())
