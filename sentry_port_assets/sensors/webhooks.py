"""`sentry_webhook_sensor`: turns pending inbox events into `sentry_webhook_sync` runs, one batch at a time.

Events are marked done only when the run that applied them succeeded; a failed or canceled run leaves them
pending, and they are launched again after a backoff (15 s, doubling per consecutive failure, at most 15 min). One
batch is in flight at a time, so two runs never race to write the same issue.

Runs that write to Port never overlap (the `sentry_port_writes` pool), and the newest data wins: a resync reads
Sentry for minutes before it publishes, so an event received while it was reading may be applied before the publish
and then overwritten by the resync's older read. After each resync's publish (a new `port/catalog`
materialization), every event received since that resync began reading (`resync_started` in its metadata) is
applied again. Applying an event reads the issue as Sentry holds it now, so applying it twice is harmless.

An instance set up with its Sentry installation's uuid reads only that installation's events, so several
organizations share one receiver and one inbox; an instance without one applies every event, and refuses (a failed
tick, nothing applied) when events of several installations are pending.

One event that keeps failing (an issue whose entity Port refuses, say) must not hold back the others: after a
batch of several events fails, its events are retried one at a time; an event whose own run fails
`MAX_ATTEMPTS` times is dead-lettered (set aside in the inbox with the error, shown by the sensor's ticks and by
`sentry-port webhooks status`), and the rest keep flowing. The next resync still puts its issue right.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from dagster import (
    JobDefinition,
    SensorDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.sensors.liveness import check_run
from sentry_port_assets.webhooks.inbox import Inbox, default_inbox_path, describe, inbox_exists
from sentry_port_assets.webhooks.job import OP, sentry_webhook_sync
from sentry_port_assets.webhooks.replay import replay_after_publish

BATCH_TAG = "sentry_port/webhook_batch"
MAX_EVENTS = 1000
FINISHED_BAD = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
# A requested batch whose run never appeared (the launch failed) is given up after this, and its events retried.
LAUNCH_GRACE_SECONDS = 300
# After a failed batch, wait this long before retrying, doubling per consecutive failure up to the maximum: a
# batch that cannot succeed yet (Port refusing an entity until the next resync) must not run every tick.
RETRY_BASE_SECONDS = 15.0
RETRY_MAX_SECONDS = 900.0
# Runs of one event alone that may fail before the event is dead-lettered.
MAX_ATTEMPTS = 3
# Done events are kept this long (to look at, and to recognise a late Sentry retry), then purged.
RETAIN_DONE = timedelta(days=7)


def _failed(context: SensorEvaluationContext, state: dict, batch: str, how: str, inbox: Inbox | None = None,
            run_id: str = "") -> None:
    """The batch's events stay pending; the next launch waits, longer after each consecutive failure. When `inbox`
    is given (the run itself failed), the attempt counts against the events: a failed batch of several events is
    split into single-event batches, and a single event that fails MAX_ATTEMPTS times is dead-lettered."""
    flight = state["inflight"].pop(batch)
    ids: list[int] = flight["ids"]
    state["failures"] = state.get("failures", 0) + 1
    delay = min(RETRY_BASE_SECONDS * 2 ** (state["failures"] - 1), RETRY_MAX_SECONDS)
    state["retry_at"] = time.time() + delay
    if inbox is not None:
        if len(ids) > 1:
            state["suspects"] = sorted(set(state.get("suspects", [])) | set(ids))
        else:
            attempts = inbox.record_failure(ids, f"run of webhook batch {batch} {how}", run_id)
            if attempts.get(ids[0], 0) >= MAX_ATTEMPTS:
                inbox.dead_letter(ids, f"failed {attempts[ids[0]]} times alone; last: run of batch {batch} {how}")
                state["suspects"] = [i for i in state.get("suspects", []) if i != ids[0]]
                state["replay"] = [i for i in state.get("replay", []) if i != ids[0]]
                state["failures"], state["retry_at"] = 0, 0.0
                context.log.error(f"webhook event {ids[0]} failed {attempts[ids[0]]} times on its own: "
                                  "dead-lettered (see `sentry-port webhooks status`); the other events go on")
                return
    context.log.warning(f"webhook batch {batch} {how}: its {len(ids)} events are retried in {delay:.0f}s"
                        + (", one at a time" if state.get("suspects") else ""))


class MixedInstallations(RuntimeError):
    """An instance without an installation would apply the events of several Sentry installations as its own."""


def _refuse_mixed_installations(inbox: Inbox, names: Names) -> None:
    """Fails the tick (shown in the UI, nothing marked done) when an instance that applies every event finds events
    of several installations pending: it would read other organizations' issues from its own Sentry, find them
    gone, and mark their events done, so their own instance would never apply them."""
    installations = sorted(i for i in inbox.pending_by_installation() if i is not None)
    if len(installations) > 1:
        raise MixedInstallations(
            f"the webhook inbox {inbox.description} holds pending events of {len(installations)} Sentry installations "
            f"({', '.join(installations[:5])}), and {names.job('sentry_webhook_sensor')} applies every event: set "
            "webhook_installation on each instance that shares this inbox (the component's attribute, or "
            "build_sentry_port_defs(webhook_installation=...)), or give this instance an inbox of its own. "
            "Nothing was applied.")


WORKER_ALIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                DagsterRunStatus.STARTED]


def _alive_worker(context: SensorEvaluationContext, worker_job: str) -> Any:
    """The worker run that is queued or running (its process alive), or None."""
    for record in context.instance.get_run_records(RunsFilter(job_name=worker_job, statuses=WORKER_ALIVE), limit=5):
        run = record.dagster_run
        if run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING) and check_run(context.instance,
                                                                                              run).dead:
            continue  # its worker process is gone: check_run has reported it failed
        return run
    return None


def _keep_worker(context: SensorEvaluationContext, state: dict, inbox: Inbox, worker_job: str,
                 installation: str | None, tag: Any) -> SensorResult:
    """Worker mode (SENTRY_WEBHOOK_WORKER): one run of `worker_job` applies the events; the sensor only starts the
    next when none is queued or running, and purges old done events."""
    inbox.purge_done(datetime.now(timezone.utc) - RETAIN_DONE)
    dead = inbox.count_dead(installation)
    dead_note = f"; {dead} dead-lettered (sentry-port webhooks status)" if dead else ""
    alive = _alive_worker(context, worker_job)
    if alive is not None:
        return SensorResult(skip_reason=SkipReason(
            f"the webhook worker (run {alive.run_id[:8]}) applies events as they arrive; "
            f"{inbox.count_pending(installation)} pending{dead_note}"), cursor=json.dumps(state))
    state["worker"] = state.get("worker", 0) + 1
    return SensorResult(run_requests=[RunRequest(run_key=f"webhook-worker-{tag(str(state['worker']))}-"
                                                         f"{int(time.time())}")],
                        cursor=json.dumps(state))


def build_webhook_sensor(names: Names = DEFAULT, job: JobDefinition = sentry_webhook_sync,
                         inbox_location: str | None = None, installation: str | None = None,
                         running: bool = True, worker_job: str | None = None) -> SensorDefinition:
    """The webhook sensor of one instance (`names`), launching its `job`; `inbox_location`: its inbox (None: the
    SENTRY_WEBHOOK_INBOX of the process); `installation`: the Sentry installation uuid whose events it applies
    (None: every event in the inbox; set it when several instances share one receiver and inbox); `running`: whether
    it starts running (False where no inbox or receiver secret is configured: turn it on in the UI, Automation, or
    with `dagster sensor start`, once the receiver runs); `worker_job`: the name of the instance's webhook worker job
    (SENTRY_WEBHOOK_WORKER): the sensor then keeps one worker run going instead of launching a run per batch."""
    whose = f" of installation {installation}" if installation else ""
    catalog_key = names.key("port", "catalog")

    def tag(batch: str) -> str:
        return f"{names.prefix}-{batch}" if names.prefix else batch

    @sensor(
        name=names.job("sentry_webhook_sensor"),
        # By name: a sensor holding a job object that needs the code location's resources is copied when Dagster binds
        # them (Definitions' resource binding), and that copy trips its own beta warning on `owners`.
        job_name=worker_job or job.name,
        minimum_interval_seconds=10,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description=f"Applies Sentry webhook events{whose} from the inbox to Port, within seconds."
                    + ("" if running else " Stopped by default: no webhook inbox or receiver secret is configured for "
                       "this code location (SENTRY_WEBHOOK_INBOX, SENTRY_WEBHOOK_SECRET, or the component's "
                       "webhook_inbox); start it once `sentry-port webhooks serve` runs."),
    )
    def sentry_webhook_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        """Cursor: {"batch": last batch number, "inflight": {batch: {"ids": [event ids], "at": epoch seconds}},
        "failures": consecutive failed batches, "retry_at": epoch seconds before which nothing is launched,
        "suspects": event ids of failed batches, retried one at a time, "published": the storage id of the latest
        `port/catalog` materialization seen, "replay": event ids to apply again after that publish}."""
        path = inbox_location or default_inbox_path()
        if not inbox_exists(path):
            return SkipReason(f"no webhook inbox at {describe(path)}: start `sentry-port webhooks serve` to receive "
                              "webhooks")
        state = json.loads(context.cursor) if context.cursor else {"batch": 0, "inflight": {}}
        with Inbox(path) as inbox:
            if installation is None:
                _refuse_mixed_installations(inbox, names)
            if worker_job is not None:
                return _keep_worker(context, state, inbox, worker_job, installation, tag)
            for batch, flight in list(state["inflight"].items()):
                ids = flight["ids"]
                records = context.instance.get_run_records(RunsFilter(tags={BATCH_TAG: tag(batch)}), limit=1)
                if not records:
                    if time.time() - flight["at"] > LAUNCH_GRACE_SECONDS:
                        _failed(context, state, batch, "never started")
                    continue
                run = records[0].dagster_run
                status = run.status
                alive_states = (DagsterRunStatus.STARTED, DagsterRunStatus.STARTING)
                if status in alive_states and check_run(context.instance, run).dead:
                    status = DagsterRunStatus.FAILURE  # its worker is gone: retried like a failed run
                if status == DagsterRunStatus.SUCCESS:
                    inbox.mark_done(ids)
                    del state["inflight"][batch]
                    state["suspects"] = [i for i in state.get("suspects", []) if i not in ids]
                    state["replay"] = [i for i in state.get("replay", []) if i not in ids]
                    state["failures"], state["retry_at"] = 0, 0.0
                elif status in FINISHED_BAD:
                    _failed(context, state, batch, f"ended {status.value}",
                            inbox if status == DagsterRunStatus.FAILURE else None, run.run_id)
            inbox.purge_done(datetime.now(timezone.utc) - RETAIN_DONE)
            replay_after_publish(context.instance, context.log, state, inbox, catalog_key, installation)
            if state["inflight"]:
                batch = next(iter(state["inflight"]))
                return SensorResult(skip_reason=SkipReason(f"waiting for webhook batch {batch} to finish"),
                                    cursor=json.dumps(state))
            pending = inbox.pending_after(0, MAX_EVENTS, installation)
            pending_ids = {e.id for e in pending}
            again = [e for e in inbox.get(state.get("replay", [])) if e.id not in pending_ids]
            pending = sorted([*pending, *again], key=lambda e: e.id)[:MAX_EVENTS]
            dead = inbox.count_dead(installation)
        dead_note = f"; {dead} dead-lettered (sentry-port webhooks status)" if dead else ""
        if not pending:
            state["replay"] = []
            return SensorResult(skip_reason=SkipReason(f"no pending webhook events{whose}" + dead_note),
                                cursor=json.dumps(state))
        suspect_ids = set(state.get("suspects", []))
        suspects = [e for e in pending if e.id in suspect_ids]
        state["suspects"] = [e.id for e in suspects]
        if suspects:  # a batch failed: its events go one at a time until the one that fails is found
            pending = suspects[:1]
        if time.time() < state.get("retry_at", 0.0):
            wait = state["retry_at"] - time.time()
            return SensorResult(cursor=json.dumps(state), skip_reason=SkipReason(
                f"{len(pending)} pending webhook events: retrying in {wait:.0f}s after {state['failures']} failed runs"
                + dead_note))

        batch = str(state["batch"] + 1)
        state["batch"] = int(batch)
        ids = [e.id for e in pending]
        state["inflight"][batch] = {"ids": ids, "at": time.time()}
        # No inbox in the run's config (a database URL may hold a password, and run config is shown in the UI): the
        # run's job was built with this sensor's inbox (build_webhook_job), so it reads the same one.
        return SensorResult(
            run_requests=[RunRequest(
                run_key=f"webhooks-{tag(batch)}",
                run_config={"ops": {names.job(OP): {"config": {"event_ids": ids}}}},
                tags={BATCH_TAG: tag(batch)},  # the issues go to the run's observation, not into a tag
            )],
            cursor=json.dumps(state),
        )

    return sentry_webhook_sensor


sentry_webhook_sensor = build_webhook_sensor()
