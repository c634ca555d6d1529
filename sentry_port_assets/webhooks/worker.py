"""`sentry_webhook_worker`: one long-lived run that applies webhook events within a second or two of their arrival.

A run per batch (`sentry_webhook_sync`) waits for the sensor's tick, the run queue and a new process loading the
code before it applies anything: 15 to 30 seconds from POST to Port. The worker is a run that is already there: it
looks at the inbox every `POLL_SECONDS`, applies what is pending in batches, marks them done, and after
`SENTRY_WEBHOOK_WORKER_MINUTES` ends, for the sensor to start the next one (so a new mapping or release is picked up,
and no run lives for ever).

Every guarantee of the batch runs holds:
- one writer to Port at a time: the worker takes a slot of the `sentry_port_writes` pool, through Dagster's instance,
  for each batch only, and gives it back after: a resync's publish waiting for the pool gets it next;
- at least once: events are marked done only after their batch was applied; a worker that dies leaves them pending;
- the newest data wins: after each resync's publish, the events received since it began are applied again
  (webhooks/replay.py);
- one event that keeps failing does not hold the others back: a failed batch of several is retried one event at a
  time, and an event failing MAX_ATTEMPTS times alone is dead-lettered (as the sensor does for batch runs).
"""


import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dagster import DagsterInstance, Failure, JobDefinition, OpExecutionContext, in_process_executor, job, op

from sentry_port_assets.assets.mapping_step import mapping_for_step
from sentry_port_assets.config import PORT_WRITES_POOL, number_setting
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.webhooks.inbox import Inbox, InboxEvent, default_inbox_path
from sentry_port_assets.webhooks.job import apply_events
from sentry_port_assets.webhooks.replay import replay_after_publish

POLL_SECONDS = 0.2
BATCH = 200
MAX_ATTEMPTS = 3
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 120.0


class PoolUnavailable(Failure):
    """The instance runs pools per run, so a slot cannot be taken for one batch: the worker cannot keep the writers
    apart there."""


@contextlib.contextmanager
def pool_slot(instance: DagsterInstance, run_id: str, step_key: str,
              wait: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Holds a slot of the `sentry_port_writes` pool for `step_key` of this run, as Dagster's executor does for a step
    (its instance storage's claim, waited on, then freed); in line behind the steps already waiting for it."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        yield
        return
    config = storage.get_pool_config()
    if str(getattr(config.pool_granularity, "value", config.pool_granularity) or "op").lower() == "run":
        raise PoolUnavailable("the instance's pools are per run (concurrency: pools: granularity: run): the webhook "
                              "worker takes the sentry_port_writes pool per batch, so it needs op granularity")
    known = {pool.name for pool in storage.get_pool_limits()}
    if PORT_WRITES_POOL not in known:
        if config.default_pool_limit is None:  # no limit on the pool: as for a step, nothing to wait for
            yield
            return
        storage.initialize_concurrency_limit_to_default(PORT_WRITES_POOL)
    try:
        while True:
            status = storage.claim_concurrency_slot(PORT_WRITES_POOL, run_id, step_key)
            if status.is_claimed:
                break
            wait(min(max(status.sleep_interval or 0.2, 0.1), 1.0))
        yield
    finally:
        storage.free_concurrency_slot_for_step(run_id, step_key)


def drain(context: OpExecutionContext, inbox_location: str, installation: str | None, catalog_key: Any,
          apply: Callable[[Sequence[InboxEvent]], None], lifetime_seconds: float,
          poll_seconds: float = POLL_SECONDS, retry_base_seconds: float = RETRY_BASE_SECONDS) -> dict[str, int]:
    """Applies pending events until `lifetime_seconds` have passed; returns counts for the run's log."""
    deadline = time.monotonic() + lifetime_seconds
    state: dict[str, Any] = {}
    suspects: set[int] = set()
    failures, retry_at, batch = 0, 0.0, 0
    counts = {"batches": 0, "events": 0, "failed_batches": 0, "dead_lettered": 0}
    while time.monotonic() < deadline:
        with Inbox(inbox_location) as inbox:
            replay_after_publish(context.instance, context.log, state, inbox, catalog_key, installation)
            pending = inbox.pending_after(0, BATCH, installation)
            pending_ids = {e.id for e in pending}
            again = [e for e in inbox.get(state.get("replay", [])) if e.id not in pending_ids]
        todo = sorted([*pending, *again], key=lambda e: e.id)[:BATCH]
        if not todo or time.monotonic() < retry_at:
            state["replay"] = [] if not todo else state.get("replay", [])
            time.sleep(poll_seconds)
            continue
        chosen = [e for e in todo if e.id in suspects][:1] or todo
        ids = [e.id for e in chosen]
        batch += 1
        error: str | None = None
        with pool_slot(context.instance, context.run_id, f"drain_webhook_events[{batch}]"):
            try:
                apply(chosen)
            except Exception as exc:  # noqa: BLE001 (the batch is retried; the worker goes on)
                error = f"{type(exc).__name__}: {exc}"[:2000]
        with Inbox(inbox_location) as inbox:
            if error is None:
                inbox.mark_done(ids)
                suspects -= set(ids)
                state["replay"] = [i for i in state.get("replay", []) if i not in ids]
                failures, retry_at = 0, 0.0
                counts["batches"] += 1
                counts["events"] += len(ids)
                continue
            counts["failed_batches"] += 1
            failures += 1
            retry_at = time.monotonic() + min(retry_base_seconds * 2 ** (failures - 1), RETRY_MAX_SECONDS)
            if len(ids) > 1:
                suspects |= set(ids)
                context.log.warning(f"webhook batch of {len(ids)} events failed ({error}); retried one at a time")
                continue
            attempts = inbox.record_failure(ids, error, f"{context.run_id}/batch-{batch}")  # one attempt each
            if attempts.get(ids[0], 0) >= MAX_ATTEMPTS:
                inbox.dead_letter(ids, f"failed {attempts[ids[0]]} times alone; last: {error}")
                suspects.discard(ids[0])
                state["replay"] = [i for i in state.get("replay", []) if i != ids[0]]
                failures, retry_at = 0, 0.0
                counts["dead_lettered"] += 1
                context.log.error(f"webhook event {ids[0]} failed {attempts[ids[0]]} times on its own: dead-lettered "
                                  "(see `sentry-port webhooks status`); the other events go on")
    return counts


def build_webhook_worker_job(names: Names = DEFAULT, inbox_location: str | None = None,
                             installation: str | None = None) -> JobDefinition:
    """The webhook worker of one instance (`names`): it reads `inbox_location` (None: SENTRY_WEBHOOK_INBOX, else the
    default file) and applies the events of `installation` (None: every event), as its sensor and batch job do."""

    @op(name=names.job("drain_webhook_events"),
        required_resource_keys={names.resource("sentry"), names.resource("mapping"), names.resource("port")})
    def drain_webhook_events(context: OpExecutionContext) -> None:
        bound = names.resources_of(context)
        mapping_config = mapping_for_step(context, bound.mapping)
        location = inbox_location or default_inbox_path()
        minutes = number_setting("SENTRY_WEBHOOK_WORKER_MINUTES")
        with Inbox(location) as inbox:
            where = inbox.description

        def apply(events: Sequence[InboxEvent]) -> None:
            apply_events(context, names, events, where, installation, bound.sentry, mapping_config, bound.port)

        context.log.info(f"applying webhook events from {where} as they arrive, for {minutes:g} minutes")
        counts = drain(context, location, installation, names.key("port", "catalog"), apply, minutes * 60)
        context.log.info(f"{counts['events']} events applied in {counts['batches']} batches; "
                         f"{counts['failed_batches']} batches failed, {counts['dead_lettered']} events dead-lettered")

    # One process: no step subprocess to start, and the run's own process is the worker.
    @job(name=names.job("sentry_webhook_worker"), executor_def=in_process_executor,
         description="Applies Sentry webhook events from the inbox to Port as they arrive (SENTRY_WEBHOOK_WORKER).")
    def sentry_webhook_worker() -> None:
        drain_webhook_events()

    return sentry_webhook_worker
