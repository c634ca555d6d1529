"""Reconciliation: make the target hold exactly what the resync produced, safely.

1. Read what the target holds for every blueprint written or owned, page by page: memory stays bounded by a page
   and the identifiers, whatever the target holds (search relation targets, read first, are kept whole).
2. Diff each produced entity with the held copy as its page arrives (title, icon, team, properties, relations, as
   Ocean compares; with merge=True only the fields sent). Search relations are resolved against the state the
   target will have, so an unchanged entity with a search relation is unchanged. Only what changed is upserted: a
   second run with no change sends zero upserts.
3. Upsert in blueprint dependency order (relation targets first).
4. Stale = held entities of OWNED blueprints that this integration's datasource last wrote before the resync
   began, and that the resync neither produced nor points at. Entities of blueprints written but
   not owned (e.g. `_user`, written with merge) are never deleted. Stale entities are deleted (bulk, <= 100 ids,
   sources before their targets) only when: allow_delete, no blocked_reason from the caller, the resync produced
   entities, no upsert failed, and the stale ones are at most deletion_threshold of the entities THIS integration
   held in the owned blueprints (never of what other writers hold there too). Otherwise nothing is deleted and the
   report says why.

"This integration" is the target's `Datasource`: what it wrote, and, when it replaces Port's Ocean Sentry
integration (PORT_ADOPT_INTEGRATION), what that one wrote, which a publish rewrites under its own name even when
unchanged. `apply_changes` (webhooks) deletes under the same ownership and threshold.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sentry_port_assets.port.catalog import normalize_team
from sentry_port_assets.progress import Progress
from sentry_port_assets.port.policy import PublishPolicy
from sentry_port_assets.port.query import QueryError, is_search_query, matches
from sentry_port_assets.port.results import DeleteResult, EnsureReport
from sentry_port_assets.port.target import PortTarget

Entity = dict[str, Any]


@dataclass
class BlueprintCounts:
    owned: bool = False
    held: int = 0
    produced: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    stale: int = 0
    deleted: int = 0


# Answers that are about the request's circumstances, not the entity: they say nothing about whether the desired
# set was complete, so they block deletes like transport errors and 5xx do.
_NOT_THE_ENTITYS_FAULT = (401, 403, 408, 409, 429)


@dataclass
class Failure:
    identifier: str
    blueprint: str
    operation: str  # "upsert" | "delete" | "validate"
    status: int | None
    error: str | None
    message: str | None
    trace_id: str | None = None

    @property
    def refused(self) -> bool:
        """Port refused the entity itself (a 4xx for it: a bad identifier, value or relation). Retrying cannot help,
        and the rest of the resync is still complete."""
        return (self.operation in ("upsert", "validate") and self.status is not None and 400 <= self.status < 500
                and self.status not in _NOT_THE_ENTITYS_FAULT)


@dataclass
class PublishReport:
    target: str
    blueprints: dict[str, BlueprintCounts] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    upserts_sent: int = 0
    duplicates: int = 0
    search_relations_emptied: int = 0
    stale_total: int = 0
    # What the deletion threshold divides by: the entities of the owned blueprints that THIS integration
    # ($datasource) held before the publish, whoever else writes to those blueprints (Ocean divides by its own
    # entities too: sync_raw.py reads them with `search_entities(user_agent_type)`).
    ours_total: int = 0
    identity: str = ""
    adopted: int = 0  # entities the replaced integration (PORT_ADOPT_INTEGRATION) wrote, rewritten under our name
    not_ours_kept: int = 0
    deletes_performed: bool = False
    delete_skipped_reason: str | None = None
    ensure: EnsureReport | None = None
    seconds: float = 0.0
    # How long each phase took (ensure_blueprints, read_held, upsert, read_owned, delete), in seconds.
    phases: dict[str, float] = field(default_factory=dict)
    target_stats: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.monotonic() - started, 3)

    @property
    def deletion_share(self) -> float:
        """The share of this integration's entities (in the owned blueprints) that the stale ones are."""
        return round(self.stale_total / self.ours_total, 4) if self.ours_total else (1.0 if self.stale_total else 0.0)

    def threshold_line(self, threshold: float) -> str:
        """What share would go, and of what, in words (the run's log says it, whether deletes go ahead or not)."""
        return (f"{self.stale_total} of the {self.ours_total} entities {self.identity or 'this integration'} wrote in "
                f"its owned blueprints are stale ({self.deletion_share:.0%}; entityDeletionThreshold {threshold:g})")

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.blueprints.values())

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_metadata(self, max_failures: int = 200) -> dict[str, Any]:
        """Plain ints, strings, lists and dicts (the Dagster asset wraps them in MetadataValue as it likes)."""
        return {
            "target": self.target,
            "created": self.total("created"),
            "updated": self.total("updated"),
            "unchanged": self.total("unchanged"),
            "deleted": self.total("deleted"),
            "failed": self.total("failed"),
            "stale": self.stale_total,
            "ours": self.ours_total,
            "deletion_share": self.deletion_share,
            "not_ours_kept": self.not_ours_kept,
            "adopted": self.adopted,
            "upserts_sent": self.upserts_sent,
            "duplicates_dropped": self.duplicates,
            "search_relations_emptied": self.search_relations_emptied,
            # Port creates a (disabled) Port user for every `_user` entity created: worth knowing before it happens.
            "port_users_created": self.blueprints["_user"].created if "_user" in self.blueprints else 0,
            "deletes": "performed" if self.deletes_performed else ("skipped: " + self.delete_skipped_reason if self.delete_skipped_reason else "nothing stale"),
            "per_blueprint": {bp: asdict(c) for bp, c in sorted(self.blueprints.items())},
            "failures": [asdict(f) for f in self.failures[:max_failures]],
            "failures_total": len(self.failures),
            "blueprints_ensured": self.ensure.to_metadata() if self.ensure else None,
            "seconds": round(self.seconds, 3),
            "phase_seconds": dict(self.phases),
            "target_stats": dict(self.target_stats),
        }


# -- comparison --------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _norm_relation(value: Any) -> Any:
    if value is None or value == []:
        return None
    if isinstance(value, list):
        return sorted(set(value))
    return value


class _Resolver:
    """Resolves search relations against the state the target will hold after this run."""

    def __init__(self, held: Mapping[str, Mapping[str, Entity]], desired: Mapping[str, Mapping[str, Entity]], merge: bool):
        self._held = held
        self._desired = desired
        self._merge = merge
        self._projected: dict[str, list[Entity]] = {}

    def _state(self, blueprint: str) -> list[Entity]:
        if blueprint not in self._projected:
            state = {k: dict(v) for k, v in self._held.get(blueprint, {}).items()}
            for ident, entity in self._desired.get(blueprint, {}).items():
                base = state.get(ident) if self._merge else None
                if base is None:
                    state[ident] = {**entity, "identifier": ident}
                else:
                    merged = {**base, **{k: v for k, v in entity.items() if k not in ("properties", "relations")}}
                    merged["properties"] = {**(base.get("properties") or {}), **(entity.get("properties") or {})}
                    state[ident] = merged
            self._projected[blueprint] = list(state.values())
        return self._projected[blueprint]

    def resolve(self, target: str, many: bool, query: Mapping[str, Any]) -> tuple[bool, Any]:
        try:
            found = [e["identifier"] for e in self._state(target) if matches(e, query)]
        except QueryError:
            return False, None
        if many:
            return True, found
        if len(found) != 1:
            return False, None
        return True, found[0]


def _differs(
    desired: Mapping[str, Any],
    held: Mapping[str, Any],
    merge: bool,
    rel_defs: Mapping[str, Any],
    resolver: _Resolver,
    schema_props: Mapping[str, Any] | None = None,
) -> bool:
    for key in ("title", "icon"):
        if (key in desired or not merge) and not _same(desired.get(key), held.get(key)):
            return True
    if ("team" in desired or not merge) and normalize_team(desired.get("team")) != normalize_team(held.get("team")):
        return True
    want_p = desired.get("properties") or {}
    # Only the blueprint's own properties can be written: mirror, calculation and aggregation values that Port may
    # still return are Port's to compute, never a difference to send.
    have_p = {k: v for k, v in (held.get("properties") or {}).items() if schema_props is None or k in schema_props}
    keys = want_p.keys() if merge else want_p.keys() | have_p.keys()
    if any(not _same(want_p.get(k), have_p.get(k)) for k in keys):
        return True
    want_r = desired.get("relations") or {}
    have_r = held.get("relations") or {}
    keys = want_r.keys() if merge else want_r.keys() | have_r.keys()
    for k in keys:
        value = want_r.get(k)
        if is_search_query(value):
            rel = rel_defs.get(k) or {}
            if "target" not in rel:
                return True
            ok, value = resolver.resolve(rel["target"], bool(rel.get("many")), value)
            if not ok:
                return True  # ambiguous or no match: send it and let the target answer
        elif isinstance(value, list) and any(is_search_query(v) for v in value):
            return True
        if _norm_relation(value) != _norm_relation(have_r.get(k)):
            return True
    return False


# -- ordering ----------------------------------------------------------------------------------------


def _levels(blueprints: Sequence[str], defs: Mapping[str, Mapping[str, Any] | None]) -> list[list[str]]:
    """Blueprints grouped so that every relation target written in this run is in an earlier group."""
    written = set(blueprints)
    deps = {
        bp: {
            rel.get("target")
            for rel in ((defs.get(bp) or {}).get("relations") or {}).values()
            if isinstance(rel, Mapping) and rel.get("target") in written and rel.get("target") != bp
        }
        for bp in blueprints
    }
    levels: list[list[str]] = []
    done: set[str] = set()
    remaining = list(blueprints)
    while remaining:
        ready = [bp for bp in remaining if deps[bp] <= done]
        if not ready:  # a cycle: write the rest together
            ready = list(remaining)
        levels.append(ready)
        done.update(ready)
        remaining = [bp for bp in remaining if bp not in done]
    return levels


# -- the reconciliation --------------------------------------------------------------------------------


def _unmatchable(value: Any) -> bool:
    """A search relation with a null rule value (an unassigned issue's `.assignedTo.email`) can match nothing: it
    is sent as an empty relation, so the entity lands instead of being refused for a relation it does not have."""
    return is_search_query(value) and any(
        isinstance(rule, Mapping) and "value" in rule and rule["value"] is None for rule in value.get("rules") or []
    )


def _prepare(entities: Iterable[Mapping[str, Any]], merge: bool, report: PublishReport) -> dict[str, dict[str, Entity]]:
    """Groups by blueprint, drops the `blueprint` key, drops duplicates (merged key by key when merge=True)."""
    grouped: dict[str, dict[str, Entity]] = {}
    for raw in entities:
        bp = raw.get("blueprint")
        ident = raw.get("identifier")
        if not isinstance(bp, str) or not bp or not (isinstance(ident, str) and ident or is_search_query(ident)):
            report.failures.append(
                Failure(str(ident), str(bp), "validate", None, "invalid_entity", "an entity needs a non-empty identifier and blueprint")
            )
            report.blueprints.setdefault(str(bp), BlueprintCounts()).failed += 1
            continue
        entity = {k: v for k, v in raw.items() if k != "blueprint"}
        relations = entity.get("relations")
        if isinstance(relations, Mapping) and any(_unmatchable(v) for v in relations.values()):
            entity["relations"] = {name: None if _unmatchable(v) else v for name, v in relations.items()}
            report.search_relations_emptied += 1
        if merge:
            for key in ("title", "icon", "team"):
                if key in entity and entity[key] is None:
                    del entity[key]  # merge updates only what is sent: an unmapped field must not clear Port's
        key = ident if isinstance(ident, str) else repr(sorted(ident.items(), key=str))
        group = grouped.setdefault(bp, {})
        if key in group:
            report.duplicates += 1
            if merge:
                prev = group[key]
                entity = {
                    **prev,
                    **entity,
                    "properties": {**(prev.get("properties") or {}), **(entity.get("properties") or {})},
                    "relations": {**(prev.get("relations") or {}), **(entity.get("relations") or {})},
                }
        group[key] = entity
    return grouped


async def _begin(target: PortTarget, policy: PublishPolicy) -> PublishReport:
    """A publish's report, after ensuring the policy's blueprints (PORT_INITIALIZE_RESOURCES): both paths start so."""
    report = PublishReport(target=target.description, identity=target.datasource.identifier)
    if policy.ensure_blueprints and (policy.blueprints or policy.fragments):
        with report.phase("ensure_blueprints"):
            report.ensure = await target.ensure_blueprints(policy.blueprints, policy.fragments)
            if policy.scorecards:
                report.ensure.scorecards_created, report.ensure.scorecards_kept = await target.ensure_scorecards(
                    policy.scorecards)
    return report


def _quiet(line: str) -> None:
    """Where progress lines go when nobody listens."""


async def reconcile(
    target: PortTarget,
    entities: Sequence[Mapping[str, Any]],
    policy: PublishPolicy,
    *,
    allow_delete: bool = True,
    blocked_reason: str | None = None,
    delete_despite_upsert_failures: bool = False,
    written_before: str | None = None,
    progress: Callable[[str], None] = _quiet,
) -> PublishReport:
    """Publishes `entities` to `target` and deletes what is stale under the safety rules. See the module doc.

    Stale: in an owned blueprint, written by the target's datasource before `written_before` (RFC 3339; the start
    of the resync that produced `entities`), and neither produced nor pointed at by this resync.

    `policy` (port/policy.py) says what is owned, merged, ensured first, and the deletion threshold. `progress`
    gets a line every few seconds in the long phases (reading what the target holds, upserting, deleting)."""
    started = time.monotonic()
    report = await _begin(target, policy)
    merge, blueprints = policy.merge, policy.blueprints
    desired = _prepare(entities, merge, report)
    written = list(desired)
    owned = set(policy.owned)
    for bp in written:
        report.blueprints.setdefault(bp, BlueprintCounts())
    for bp in owned:
        report.blueprints.setdefault(bp, BlueprintCounts())
    for bp, counts in report.blueprints.items():
        counts.owned = bp in owned
        counts.produced = len(desired.get(bp, {}))

    # Blueprint definitions: relation targets (search relations, write order).
    defs: dict[str, Mapping[str, Any] | None] = {bp["identifier"]: bp for bp in blueprints}
    for bp in written:
        if bp not in defs:
            defs[bp] = await target.get_blueprint(bp)
    search_targets = {
        (defs.get(bp) or {}).get("relations", {}).get(name, {}).get("target")
        for bp, group in desired.items()
        for entity in group.values()
        for name, value in (entity.get("relations") or {}).items()
        if is_search_query(value)
    } - {None}

    # 1-2. what the target holds, compared page by page: only identifiers are kept (they decide what is stale), except
    # for the blueprints that search relations resolve against, which are read whole first.
    identified = {bp: {k: v for k, v in g.items() if isinstance(v["identifier"], str)} for bp, g in desired.items()}
    # What the integration this one replaces wrote (PORT_ADOPT_INTEGRATION): rewritten under our name even when
    # unchanged, so that from this publish on it is ours in Port too.
    adopting = target.datasource.adopted
    adopted = await target.written_by(adopting) if adopting else {}
    held_whole: dict[str, dict[str, Entity]] = {}
    held_ids: dict[str, set[str]] = {}
    resolver = _Resolver(held_whole, identified, merge)
    unchanged: dict[str, set[str]] = {}

    def compare(bp: str, page: Iterable[Entity]) -> None:
        mine = identified.get(bp, {})
        rel_defs = (defs.get(bp) or {}).get("relations") or {}
        schema_props = ((defs.get(bp) or {}).get("schema") or {}).get("properties") if defs.get(bp) else None
        theirs = adopted.get(bp, set())
        for have in page:
            want = mine.get(have["identifier"])
            if (want is not None and have["identifier"] not in theirs
                    and not _differs(want, have, merge, rel_defs, resolver, schema_props)):
                unchanged.setdefault(bp, set()).add(have["identifier"])

    reading = Progress("publish: reading what the target holds", None, progress)

    async def read(bp: str, keep_whole: bool) -> None:
        ids = held_ids.setdefault(bp, set())
        async for page in target.entity_pages(bp):
            reading.advance(len(page))
            ids.update(have["identifier"] for have in page)
            if keep_whole:
                held_whole.setdefault(bp, {}).update((have["identifier"], have) for have in page)
            else:
                compare(bp, page)

    to_read = sorted(set(written) | owned | search_targets)
    with report.phase("read_held"):
        # search relations resolve against the whole of their target blueprints: those are read (and kept) first
        await asyncio.gather(*(read(bp, True) for bp in to_read if bp in search_targets))
        for bp in held_whole:
            compare(bp, held_whole[bp].values())
        await asyncio.gather(*(read(bp, False) for bp in to_read if bp not in search_targets))
    for bp, counts in report.blueprints.items():
        counts.held = len(held_ids.get(bp, ()))

    to_send: dict[str, list[Entity]] = {}
    for bp, group in desired.items():
        same = unchanged.get(bp, set())
        report.blueprints[bp].unchanged += len(same)
        sending = [entity for key, entity in group.items() if key not in same]
        if sending:
            to_send[bp] = sending

    # 3. upsert, relation targets first
    # every produced identifier counts as produced, failed or not: a failed upsert never makes its entity stale
    produced: dict[str, set[str]] = {bp: {e["identifier"] for e in g.values() if isinstance(e["identifier"], str)} for bp, g in desired.items()}
    rewritten: dict[str, set[str]] = {}  # held entities this publish wrote again: ours from now on, if not before
    uncertain: set[str] = set()
    # Relation targets first, always: Port resolves search relations when it writes, and creating missing related
    # entities cannot help those (nor should it create stubs that the real entities then overwrite).
    order = _levels(list(to_send), defs)

    sending = Progress("publish: upserting", sum(len(batch) for batch in to_send.values()), progress)

    async def upsert(bp: str) -> None:
        batch = to_send[bp]
        report.upserts_sent += len(batch)
        results = await target.upsert_batch(bp, batch, merge=merge, create_missing=policy.create_missing_related,
                                            on_done=sending.advance)
        counts = report.blueprints[bp]
        for entity, result in zip(batch, results):
            if result.ok:
                produced[bp].add(result.identifier)
                report.adopted += result.identifier in adopted.get(bp, ())
                if result.created:
                    counts.created += 1
                else:
                    counts.updated += 1
                    rewritten.setdefault(bp, set()).add(result.identifier)
            else:
                if not isinstance(entity.get("identifier"), str):
                    uncertain.add(bp)
                counts.failed += 1
                report.failures.append(
                    Failure(result.identifier, bp, "upsert", result.status, result.error, result.message, result.trace_id)
                )

    with report.phase("upsert"):
        for level in order:
            await asyncio.gather(*(upsert(bp) for bp in level))

    # 4. stale entities of owned blueprints, and the safety rules. An entity that a produced entity points at is
    # not stale: deleting it would only clear the relation (or have it created again as a missing related entity).
    referenced: dict[str, set[str]] = {}
    for bp, group in desired.items():
        rel_defs = (defs.get(bp) or {}).get("relations") or {}
        for entity in group.values():
            for name, value in (entity.get("relations") or {}).items():
                target_bp = (rel_defs.get(name) or {}).get("target")
                if target_bp is None:
                    continue
                if is_search_query(value):
                    ok, value = resolver.resolve(target_bp, True, value)
                    value = value if ok else []
                for ref in value if isinstance(value, list) else [value]:
                    if isinstance(ref, str):
                        referenced.setdefault(target_bp, set()).add(ref)
    # Only what this integration wrote ($datasource), last written before this resync began: never what people made
    # in Port's UI, what another integration wrote, nor what a webhook run wrote while this resync was under way.
    with report.phase("read_owned"):
        mine = await target.owned(written_before)
    stale: dict[str, list[str]] = {}
    for bp in owned:
        keep = produced.get(bp, set()) | referenced.get(bp, set())
        ids = sorted(i for i in held_ids.get(bp, ()) if i in mine.get(bp, ()) and i not in keep)
        report.blueprints[bp].stale = len(ids)
        if ids:
            stale[bp] = ids
    report.stale_total = sum(len(v) for v in stale.values())
    # Ours before this publish: held when it began, and written by this integration (last before the resync began,
    # or rewritten by this publish). Never what other writers hold in the same blueprints: beside 300 entities of
    # another organization, a Sentry outage's empty lists would otherwise look like a small share and delete all ours.
    report.ours_total = sum(len(held_ids.get(bp, set()) & (mine.get(bp, set()) | rewritten.get(bp, set())))
                            for bp in owned)
    # An entity Port refused is reported (and fails the run) but does not block deletes: the desired set was complete.
    # Anything else that failed (transport, 5xx, 429, auth) may have hidden entities, so nothing is deleted.
    upsert_failures = sum(1 for f in report.failures if f.operation in ("upsert", "validate") and not f.refused)

    reason: str | None = None
    if not allow_delete:
        reason = "deletes are disabled for this run (allow_delete=False)"
    elif blocked_reason:
        reason = blocked_reason
    elif not entities:
        reason = "the resync produced no entities (empty mapping or empty source): nothing is deleted"
    elif upsert_failures and not delete_despite_upsert_failures:
        reason = (f"{upsert_failures} entities failed to publish for reasons other than Port refusing them (transport, "
                  "5xx, rate limits): nothing is deleted until a resync succeeds completely")
    elif uncertain & set(stale):
        reason = f"entities with search identifiers failed in {sorted(uncertain)}: their identifiers are unknown"
    elif report.stale_total and report.deletion_share > policy.deletion_threshold:
        reason = f"{report.threshold_line(policy.deletion_threshold)}: more than the threshold, nothing is deleted"

    if stale and reason is None:
        report.deletes_performed = True
        delete_order = [bp for level in reversed(_levels(list(stale), defs)) for bp in level]
        deleting = Progress("publish: deleting stale entities", report.stale_total, progress)
        for bp in delete_order:
            # Never let Port cascade: its dependents are entities in ANY blueprint with a relation to the deleted one,
            # `_user` (a Port user) and what people or other integrations made included. Our own dependents are
            # stale in their own right and deleted here, dependents first; anything else keeps its entity.
            with report.phase("delete"):
                result = await _delete_isolating(target, bp, stale[bp])
            deleting.advance(len(stale[bp]))
            report.blueprints[bp].deleted += len(result.deleted)
            for failure in result.failures:
                report.failures.append(
                    Failure(failure.identifier, bp, "delete", failure.status, failure.error, failure.message, failure.trace_id)
                )
    elif stale:
        report.delete_skipped_reason = reason

    report.seconds = time.monotonic() - started
    report.target_stats = target.stats()
    return report


async def _delete_isolating(target: PortTarget, blueprint: str, ids: Sequence[str]) -> DeleteResult:
    """Deletes without cascading. Port refuses a whole bulk delete when one entity still has dependents: the refused
    ids are then tried one by one, so one entity that something else requires does not keep the others."""
    result = await target.delete(blueprint, ids, delete_dependents=False)
    refused = [f for f in result.failures if f.status is not None and 400 <= f.status < 500]
    if len(refused) > 1:
        again = DeleteResult(deleted=list(result.deleted),
                             failures=[f for f in result.failures if f not in refused])
        for failure in refused:
            alone = await target.delete(blueprint, [failure.identifier], delete_dependents=False)
            again.deleted += alone.deleted
            again.failures += alone.failures
        return again
    return result


async def _over_threshold(target: PortTarget, policy: PublishPolicy, report: PublishReport) -> str | None:
    """The webhook path's deletion threshold, over the same denominator as a resync's: this integration's entities in
    the owned blueprints before this batch (those it created are not counted). It reads what the integration wrote
    only until the count clears the threshold, so a batch of a few deletes costs one page, not the whole catalog."""
    created = sum(report.blueprints[bp].created for bp in policy.owned if bp in report.blueprints)
    threshold = policy.deletion_threshold
    enough = (math.ceil(report.stale_total / threshold) if threshold > 0 else report.stale_total) + created
    report.ours_total = await target.count_owned(policy.owned, enough) - created
    if report.deletion_share > threshold:
        return f"{report.threshold_line(threshold)}: more than the threshold, nothing is deleted"
    return None


async def apply_changes(
    target: PortTarget,
    upserts: Sequence[Mapping[str, Any]],
    deletes: Mapping[str, Iterable[str]],
    policy: PublishPolicy,
) -> PublishReport:
    """The incremental path (webhooks): upsert these entities (relation targets first, so the blueprints are read)
    and delete those of these identifiers that the target's datasource wrote, with no read of everything the target
    holds and no stale computation: the caller has worked out exactly what changed. Blueprints are ensured first
    and only the policy's owned blueprints see deletes, as in a resync."""
    started = time.monotonic()
    report = await _begin(target, policy)
    merge = policy.merge
    desired = _prepare(upserts, merge, report)
    defs = {bp: await target.get_blueprint(bp) for bp in desired}
    for bp in [bp for level in _levels(list(desired), defs) for bp in level]:
        group = desired[bp]
        counts = report.blueprints.setdefault(bp, BlueprintCounts())
        counts.produced = len(group)
        batch = list(group.values())
        report.upserts_sent += len(batch)
        for entity, result in zip(batch, await target.upsert_batch(
                bp, batch, merge=merge, create_missing=policy.create_missing_related)):
            if result.ok:
                counts.created += result.created
                counts.updated += not result.created
            else:
                counts.failed += 1
                report.failures.append(
                    Failure(result.identifier, bp, "upsert", result.status, result.error, result.message, result.trace_id))
    # Only what this integration wrote: an entity of the same identifier that people or another integration made
    # stays, as in a resync.
    doomed: dict[str, list[str]] = {}
    for bp, ids in deletes.items():
        if bp not in policy.owned or not ids:
            continue
        mine = await target.owned_among(bp, ids)
        report.not_ours_kept += len(set(ids) - mine)
        if mine:
            doomed[bp] = sorted(mine)
            report.blueprints.setdefault(bp, BlueprintCounts()).stale = len(mine)
    report.stale_total = sum(len(ids) for ids in doomed.values())
    if report.stale_total:
        report.delete_skipped_reason = await _over_threshold(target, policy, report)
    for bp, ids in doomed.items() if report.delete_skipped_reason is None else ():
        result = await _delete_isolating(target, bp, ids)  # never a cascade: see reconcile
        report.deletes_performed = True
        report.blueprints[bp].deleted += len(result.deleted)
        for failure in result.failures:
            if failure.status == 404:
                continue  # already gone
            report.failures.append(
                Failure(failure.identifier, bp, "delete", failure.status, failure.error, failure.message, failure.trace_id))
    report.seconds = time.monotonic() - started
    report.target_stats = target.stats()
    return report
