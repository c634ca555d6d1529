"""`sentry_webhook_sensor`: turns pending inbox events into `sentry_webhook_sync` runs, one batch at a time.

Events are marked done only when the run that applied them succeeded; a failed or canceled run leaves them
pending, and they are launched again after a backoff (15 s, doubling per consecutive failure, at most 15 min). One batch is in flight at a time, so two runs never race to
write the same issue.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sentry_port_assets.webhooks.inbox import Inbox, default_inbox_path
from sentry_port_assets.webhooks.job import sentry_webhook_sync
from sentry_port_assets.webhooks.sync import coalesce

BATCH_TAG = "sentry_port/webhook_batch"
MAX_EVENTS = 1000
FINISHED_BAD = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
# A requested batch whose run never appeared (the launch failed) is given up after this, and its events retried.
LAUNCH_GRACE_SECONDS = 300
# After a failed batch, wait this long before retrying, doubling per consecutive failure up to the maximum: a
# batch that cannot succeed yet (Port refusing an entity until the next resync) must not run every tick.
RETRY_BASE_SECONDS = 15.0
RETRY_MAX_SECONDS = 900.0
# Done events are kept this long (to look at, and to recognise a late Sentry retry), then purged.
RETAIN_DONE = timedelta(days=7)


def _failed(context: SensorEvaluationContext, state: dict, batch: str, how: str) -> None:
    """The batch's events stay pending; the next launch waits, longer after each consecutive failure."""
    flight = state["inflight"].pop(batch)
    state["failures"] = state.get("failures", 0) + 1
    delay = min(RETRY_BASE_SECONDS * 2 ** (state["failures"] - 1), RETRY_MAX_SECONDS)
    state["retry_at"] = time.time() + delay
    context.log.warning(f"webhook batch {batch} {how}: its {len(flight['ids'])} events are retried in {delay:.0f}s")


@sensor(
    name="sentry_webhook_sensor",
    job=sentry_webhook_sync,
    minimum_interval_seconds=10,
    default_status=DefaultSensorStatus.RUNNING,
    description="Applies Sentry webhook events from the inbox to Port, within seconds.",
)
def sentry_webhook_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    """Cursor: {"batch": last batch number, "inflight": {batch: {"ids": [event ids], "at": epoch seconds}},
    "failures": consecutive failed batches, "retry_at": epoch seconds before which nothing is launched}."""
    path = default_inbox_path()
    if not path.exists():
        return SkipReason(f"no webhook inbox at {path}: start `sentry-port webhooks serve` to receive webhooks")
    state = json.loads(context.cursor) if context.cursor else {"batch": 0, "inflight": {}}
    with Inbox(path) as inbox:
        for batch, flight in list(state["inflight"].items()):
            ids = flight["ids"]
            records = context.instance.get_run_records(RunsFilter(tags={BATCH_TAG: batch}), limit=1)
            if not records:
                if time.time() - flight["at"] > LAUNCH_GRACE_SECONDS:
                    _failed(context, state, batch, "never started")
                continue
            status = records[0].dagster_run.status
            if status == DagsterRunStatus.SUCCESS:
                inbox.mark_done(ids)
                del state["inflight"][batch]
                state["failures"], state["retry_at"] = 0, 0.0
            elif status in FINISHED_BAD:
                _failed(context, state, batch, f"ended {status.value}")
        inbox.purge_done(datetime.now(timezone.utc) - RETAIN_DONE)
        if state["inflight"]:
            batch = next(iter(state["inflight"]))
            return SensorResult(skip_reason=SkipReason(f"waiting for webhook batch {batch} to finish"),
                                cursor=json.dumps(state))
        pending = inbox.pending_after(0, MAX_EVENTS)
    if not pending:
        return SensorResult(skip_reason=SkipReason("no pending webhook events"), cursor=json.dumps(state))
    if time.time() < state.get("retry_at", 0.0):
        wait = state["retry_at"] - time.time()
        return SensorResult(cursor=json.dumps(state), skip_reason=SkipReason(
            f"{len(pending)} pending webhook events: retrying in {wait:.0f}s after {state['failures']} failed runs"))

    batch = str(state["batch"] + 1)
    state["batch"] = int(batch)
    ids = [e.id for e in pending]
    state["inflight"][batch] = {"ids": ids, "at": time.time()}
    issues = coalesce(pending).issues
    return SensorResult(
        run_requests=[RunRequest(
            run_key=f"webhooks-{batch}",
            run_config={"ops": {"sync_webhook_events": {"config": {"event_ids": ids, "inbox_path": str(path)}}}},
            tags={BATCH_TAG: batch, "sentry_port/issues": ",".join(sorted(issues))[:200]},
        )],
        cursor=json.dumps(state),
    )
