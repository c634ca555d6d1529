"""`port/catalog`: publishes every entity asset's entities to Port (or the local catalog), safely.

Deletes of stale entities need proof that the whole resync succeeded with one mapping: every raw and entity asset
that feeds the publish must have its latest materialization from ONE run (a failed asset is not re-materialized,
so a failure anywhere shows up as a mix of runs), and all of them, and the publish itself, must have mapped with
the same mapping snapshot (`mapping_sha256` in their metadata). Otherwise the publish only upserts, and its
metadata says why.
"""

import asyncio
from datetime import datetime, timezone
from dataclasses import asdict
from collections.abc import Sequence
from typing import Any, Optional

from dagster import (
    Config,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DagsterInstance,
    EventLogEntry,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from sentry_port_assets.assets.mapping_step import MAPPING_SHA, mapping_for_step
from sentry_port_assets.assets.describe import DATA_MODEL_PAGE, Links
from sentry_port_assets.assets.entities import ENTITY_KINDS, by_kind, entity_inputs, kind_asset_keys, used_kinds
from sentry_port_assets.assets.presentation import PLAIN, Presentation
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.assets.metadata import table
from sentry_port_assets.assets.policy import RESYNC_KINDS, publish_policy
from sentry_port_assets.config import PORT_WRITES_POOL
from sentry_port_assets.port.reconciler import PublishReport, reconcile
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.progress import duration



def input_keys(names: Names = DEFAULT, kinds: Sequence[str] = tuple(ENTITY_KINDS)) -> list[AssetKey]:
    """The raw and entity assets that feed the publish of `kinds` (by default every kind)."""
    return kind_asset_keys(names, kinds)


INPUT_KEYS = input_keys()
REFUSED_CHECK = "port_accepted_every_entity"
RESYNC_STARTED = "resync_started"
CATALOG_KEY = DEFAULT.key("port", "catalog")
Entity = dict[str, Any]


def _by_value(found: dict[str, str]) -> str:
    groups: dict[str, list[str]] = {}
    for name, value in found.items():
        groups.setdefault(value, []).append(name)
    return "; ".join(f"{value[:12]}: {', '.join(names)}" for value, names in groups.items())


Latest = dict[AssetKey, Optional[EventLogEntry]]


def latest_materializations(instance: DagsterInstance, keys: Sequence[AssetKey] = INPUT_KEYS) -> Latest:
    """Each input's latest materialization event (None: never materialized), read once per publish."""
    return {key: instance.get_latest_materialization_event(key) for key in keys}


def mapping_shas(latest: Latest) -> dict[str, str]:
    """The mapping snapshot (sha256) each input's latest materialization was made with ("unknown" when it did not
    record one); inputs never materialized are left out."""
    shas: dict[str, str] = {}
    for key, event in latest.items():
        materialization = event.asset_materialization if event is not None else None
        if materialization is not None:
            value = materialization.metadata.get(MAPPING_SHA)
            shas[key.to_user_string()] = str(value.value) if value is not None else "unknown"
    return shas


def input_mapping_shas(instance: DagsterInstance, keys: Sequence[AssetKey] = INPUT_KEYS) -> dict[str, str]:
    return mapping_shas(latest_materializations(instance, keys))


def deletion_blocker(latest: Latest, mapping_sha: str) -> str | None:
    """Why deletes must not happen in this publish, or None when one run produced every input with the mapping
    this publish uses."""
    runs: dict[str, str] = {}
    for key, event in latest.items():
        if event is None:
            return f"{key.to_user_string()} has never been materialized"
        runs[key.to_user_string()] = event.run_id
    if len(set(runs.values())) > 1:
        return (f"the inputs come from {len(set(runs.values()))} different runs (run {_by_value(runs)}): an asset "
                "failed or was materialized alone. Run sentry_refresh or sentry_port_sync in full to allow deletes")
    shas = mapping_shas(latest)
    if len(set(shas.values())) > 1:
        return (f"the inputs were mapped with different mapping snapshots (sha256 {_by_value(shas)}): the mapping "
                "changed during the run. Run sentry_port_sync again to allow deletes")
    if shas and set(shas.values()) != {mapping_sha}:
        return (f"the entities were mapped with the mapping of sha256 {next(iter(shas.values()))[:12]}, this publish "
                f"reads {mapping_sha[:12]}: the mapping changed since. Run sentry_port_sync to allow deletes")
    return None


def resync_started(instance: DagsterInstance, latest: Latest) -> str:
    """When the resync that produced the inputs began (RFC 3339): what this integration wrote before then and did not
    produce is stale; what it wrote since (a webhook run during the resync) is not. With inputs from several runs
    (deletes are then blocked anyway) the newest run counts."""
    events = [e for e in latest.values() if e is not None]
    if not events:
        return datetime.now(timezone.utc).isoformat()
    newest = max(events, key=lambda e: e.timestamp)
    record = instance.get_run_record_by_id(newest.run_id)
    moments = [e.timestamp for e in events if e.run_id == newest.run_id]
    if record is not None and record.start_time:
        moments.append(record.start_time)
    return datetime.fromtimestamp(min(moments), timezone.utc).isoformat()


class PublishConfig(Config):
    """`kinds`: publish only the entities of these kinds, and delete nothing (the release poll's runs); empty:
    every kind the mapping maps, with the safety rules deciding deletes."""

    kinds: list[str] = []


def build_port_catalog(names: Names = DEFAULT, links: Links = Links(), present: Presentation = PLAIN) -> AssetsDefinition:
    key = names.key("port", "catalog")
    spec = AssetSpec(key=key, group_name=names.group("port"), kinds={"port"},
                     metadata={"port_data_model": MetadataValue.url(links.port_app + DATA_MODEL_PAGE)}
                     if links.port_app else {},
                     description="Publishes the entities to Port (or the local catalog): ensure blueprints, upsert "
                                 "what changed, delete what is stale under the safety rules.")

    @asset(
        **present.asset_args(spec),
        pool=PORT_WRITES_POOL,
        # Optional: the entity assets of kinds the mapping does not map are in no job and never materialized.
        ins=entity_inputs(names),
        required_resource_keys={names.resource("mapping"), names.resource("port")},
        check_specs=[AssetCheckSpec(
            REFUSED_CHECK, asset=key,
            description="Port accepted every entity. With PORT_REFUSED_ENTITIES=warn, entities Port refuses (an "
                        "identifier it does not allow, a value its schema rejects) fail this check instead of the run.")],
    )
    def port_catalog(context: AssetExecutionContext, config: PublishConfig,
                     **inputs: Optional[list[Entity]]) -> MaterializeResult:
        bound = names.resources_of(context)
        port: PortResource = bound.port
        compiled = mapping_for_step(context, bound.mapping)
        kinds = used_kinds(compiled)
        values = by_kind(inputs)
        # Only the kinds this mapping maps: an older materialization of another kind is not published again. A
        # partial publish (`kinds` in its config) writes only those, and deletes nothing: stale entities of the
        # kinds it read wait for the next full publish, and those of the others were not looked at.
        partial = [k for k in kinds if k in config.kinds] if config.kinds else None
        entities = [e for kind in (partial if partial is not None else kinds) for e in values[kind] or []]
        policy = publish_policy(port, compiled, entities, partial or RESYNC_KINDS)
        owned = policy.owned
        latest = latest_materializations(context.instance, input_keys(names, kinds))
        blocker = (f"a partial publish of {', '.join(partial) or 'no kind'}: deletes wait for a full publish"
                   if partial is not None else deletion_blocker(latest, compiled.sha256))

        started = resync_started(context.instance, latest)

        async def publish() -> PublishReport:
            async with port.target() as target:
                return await reconcile(target, entities, policy, allow_delete=True, blocked_reason=blocker,
                                       written_before=started, progress=context.log.info)

        report = asyncio.run(publish())
        meta = report.to_metadata()
        context.log.info(
            f"{'published to' if port.client_id else 'wrote the'} {meta['target']}: {meta['created']} "
            f"created, {meta['updated']} updated, {meta['unchanged']} unchanged, {meta['deleted']} deleted, "
            f"{meta['failed']} failed in {duration(report.seconds)}; deletes: {meta['deletes']}")
        if report.stale_total or port.adopt_integration:
            context.log.info(report.threshold_line(policy.deletion_threshold)
                             + (f"; {report.adopted} entities of the Ocean integration {port.adopt_integration!r} "
                                "rewritten as this integration's" if port.adopt_integration else ""))
        per_blueprint = [{"blueprint": bp, **counts} for bp, counts in meta["per_blueprint"].items()]
        metadata = {
            "target": meta["target"],
            "created": meta["created"],
            "updated": meta["updated"],
            "unchanged": meta["unchanged"],
            "deleted": meta["deleted"],
            "failed": meta["failed"],
            "port_users_created": meta["port_users_created"],
            "stale": meta["stale"],
            # what the deletion threshold divides: the stale share of what THIS integration wrote (its $datasource)
            "ours": meta["ours"],
            "deletion_share": MetadataValue.float(meta["deletion_share"]),
            "deletion_threshold": MetadataValue.float(policy.deletion_threshold),
            "adopted": meta["adopted"],
            "upserts_sent": meta["upserts_sent"],
            "deletes": meta["deletes"],
            "seconds": MetadataValue.float(meta["seconds"]),
            "phase_seconds": MetadataValue.json(meta["phase_seconds"]),
            "per_blueprint": table(per_blueprint),
            "failures": table(meta["failures"]),
            "failures_total": meta["failures_total"],
            "owned_blueprints": MetadataValue.text(", ".join(sorted(owned)) or "(none)"),
            MAPPING_SHA: compiled.sha256,
            # What Sentry said when this resync began reading it: webhook events received since are applied again
            # after this publish (sensors/webhooks.py), so an older read never has the last word in Port.
            RESYNC_STARTED: MetadataValue.timestamp(datetime.fromisoformat(started)),
        }
        if meta["port_users_created"] and port.client_id:
            context.log.warning(f"{meta['port_users_created']} _user entities were created: in Port each one is a Port user "
                                "(disabled until invited)")
        elif meta["port_users_created"]:  # the local catalog holds no users: worth knowing, not a warning
            context.log.info(f"{meta['port_users_created']} _user entities written to the local catalog; published to "
                             "Port, each would be a Port user (created disabled until invited)")
        refused = [f for f in report.failures if f.refused]
        check = AssetCheckResult(
            check_name=REFUSED_CHECK, passed=not refused, severity=AssetCheckSeverity.ERROR,
            metadata={"refused": len(refused), "entities": table([asdict(f) for f in refused])})
        if len(refused) < len(report.failures) or (refused and port.refused_entities != "warn"):
            # Fail the run (CI goes red) and carry the whole report, so no failed entity goes unnoticed.
            first = report.failures[0]
            raise Failure(
                description=f"{len(report.failures)} entities failed to publish (first: {first.blueprint}/"
                            f"{first.identifier}: {first.status} {first.error}: {first.message}); the failures table "
                            f"lists them all. Deletes: {meta['deletes']}.",
                metadata=metadata,
            )
        if refused:
            context.log.warning(f"Port refused {len(refused)} entities (PORT_REFUSED_ENTITIES=warn): the "
                                f"{REFUSED_CHECK} check lists them")
        return MaterializeResult(metadata=metadata, check_results=[check])

    return port_catalog


port_catalog = build_port_catalog()
