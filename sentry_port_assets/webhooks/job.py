"""`sentry_webhook_sync`: applies a batch of webhook events from the inbox to Port (launched by the sensor)."""

import asyncio
from collections.abc import Sequence
from typing import Optional

from dagster import AssetObservation, Config, Failure, JobDefinition, MetadataValue, OpExecutionContext, job, op

from sentry_port_assets.assets.mapping_step import MAPPING_SHA, mapping_for_step
from sentry_port_assets.assets.policy import publish_policy
from sentry_port_assets.config import PORT_WRITES_POOL
from sentry_port_assets.mapping.config import KINDS
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.port.reconciler import PublishReport, apply_changes
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.webhooks.inbox import Inbox, InboxEvent, default_inbox_path
from sentry_port_assets.webhooks.sync import Changes, changes_for, coalesce


class WebhookBatchConfig(Config):
    event_ids: list[int]
    # Another inbox than the instance's (a file; for runs launched by hand). The sensor never sets it: the run reads
    # the inbox its instance was built with, as the sensor does, so no database URL (and password) is in run config.
    inbox_path: Optional[str] = None


# The op's name (prefixed per instance): the sensor's run config addresses it.
OP = "sync_webhook_events"


def apply_events(context: OpExecutionContext, names: Names, events: Sequence[InboxEvent], where: str,
                 installation: str | None, sentry: SentryResource, mapping_config: CompiledMapping,
                 port: PortResource) -> None:
    """Applies `events` (of the inbox `where`) to Port as Sentry holds their issues now: logs what changed, records
    an observation on `port/catalog`, and raises a Failure naming the entities that failed (the events stay
    pending). Shared by the batch runs and the webhook worker."""
    foreign = [e for e in events if installation is not None and e.installation != installation]
    if foreign:  # applied with this instance's Sentry, another organization's issues would look gone
        raise Failure(f"inbox events {[e.id for e in foreign][:20]} of {where} belong to Sentry installation(s) "
                      f"{sorted({str(e.installation) for e in foreign})}, not this instance's ({installation}): "
                      "nothing was applied; their own instance applies them")

    async def run() -> tuple[Changes, PublishReport]:
        async with sentry.get_client() as client:
            changes = await changes_for(client, mapping_config, events)
        policy = publish_policy(port, mapping_config, changes.upserts, KINDS)
        async with port.target() as target:
            report = await apply_changes(target, changes.upserts, changes.deletes, policy)
        return changes, report

    changes, report = asyncio.run(run())
    for line in changes.misconfigurations:
        context.log.warning(line)
    meta = report.to_metadata()
    context.log.info(
        f"{len(events)} events: {changes.issues_refreshed} issues refreshed, {changes.issues_gone} gone from Sentry, "
        f"{changes.comments} comment events; {meta['created']} created, {meta['updated']} updated, "
        f"{meta['deleted']} deleted, {meta['failed']} failed, {meta['not_ours_kept']} kept (written by someone else)")
    if report.delete_skipped_reason:
        context.log.warning(f"deletes skipped: {report.delete_skipped_reason}; the next resync decides again")
    # Shown on port/catalog's timeline in the UI, beside the resyncs' materializations.
    context.log_event(AssetObservation(asset_key=names.key("port", "catalog"), metadata={
        "source": "sentry webhooks", "events": len(events),
        "issues": MetadataValue.text(", ".join(sorted(coalesce(events).issues))[:2000]),
        "issues_refreshed": changes.issues_refreshed,
        "issues_gone": changes.issues_gone, "comment_events": changes.comments, "created": meta["created"],
        "updated": meta["updated"], "deleted": meta["deleted"], "failed": meta["failed"],
        "not_ours_kept": meta["not_ours_kept"], "deletes": meta["deletes"], MAPPING_SHA: mapping_config.sha256,
        **({"ours": meta["ours"], "deletion_share": meta["deletion_share"]} if report.stale_total else {})}))
    if report.failures:
        first = report.failures[0]
        raise Failure(
            description=f"{len(report.failures)} entities failed (first: {first.blueprint}/{first.identifier}: "
                        f"{first.status} {first.error}: {first.message}); the events stay pending and are retried",
            metadata={"failures": [f"{f.blueprint}/{f.identifier}: {f.status} {f.error}: {f.message}"
                                   for f in report.failures[:50]]},
        )


def build_webhook_job(names: Names = DEFAULT, inbox_location: str | None = None,
                      installation: str | None = None) -> JobDefinition:
    """The webhook job of one instance (`names`): it reads `inbox_location` (None: SENTRY_WEBHOOK_INBOX, else the
    default file), the same inbox as the instance's sensor, and applies only the events of `installation` when set."""

    @op(name=names.job(OP), pool=PORT_WRITES_POOL,
        required_resource_keys={names.resource("sentry"), names.resource("mapping"), names.resource("port")})
    def sync_webhook_events(context: OpExecutionContext, config: WebhookBatchConfig) -> None:
        bound = names.resources_of(context)
        with Inbox(config.inbox_path or inbox_location or default_inbox_path()) as inbox:
            events = inbox.get(config.event_ids)
            where = inbox.description
        missing = set(config.event_ids) - {e.id for e in events}
        if missing:
            raise Failure(f"inbox events {sorted(missing)} are not in {where}")
        apply_events(context, names, events, where, installation, bound.sentry, mapping_for_step(context, bound.mapping),
                     bound.port)

    @job(name=names.job("sentry_webhook_sync"), description="Applies Sentry webhook events from the inbox to Port.")
    def sentry_webhook_sync() -> None:
        sync_webhook_events()

    return sentry_webhook_sync


sentry_webhook_sync = build_webhook_job()
