"""The webhook worker (SENTRY_WEBHOOK_WORKER): one long-lived run that applies events as they arrive. What it must
keep from the batch runs: one writer to Port at a time (a slot of the `sentry_port_writes` pool per batch, through
Dagster's instance, behind a step already holding it), at least once (done only after applied), and one bad event
set aside without holding the others back. The whole path (daemon, PostgreSQL, receiver, a resync publishing while
the worker runs) is test_topology.py's."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from dagster import AssetKey, DagsterRun, DagsterRunStatus, build_op_context, build_sensor_context, instance_for_test

from sentry_port_assets.config import PORT_WRITES_POOL
from sentry_port_assets.sensors.webhooks import build_webhook_sensor
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets.webhooks.worker import drain, pool_slot

POOLS = {"concurrency": {"pools": {"default_limit": 1}}}


def test_a_batch_waits_for_the_writer_holding_the_pool_and_frees_it_after() -> None:
    with instance_for_test(overrides=POOLS) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(PORT_WRITES_POOL)
        assert storage.claim_concurrency_slot(PORT_WRITES_POOL, "resync", "port__catalog").is_claimed
        order: list[str] = []

        def batch() -> None:
            with pool_slot(instance, "worker", "drain_webhook_events[1]", wait=lambda s: time.sleep(0.05)):
                order.append("batch")

        thread = threading.Thread(target=batch)
        thread.start()
        deadline = time.monotonic() + 10
        while storage.get_concurrency_info(PORT_WRITES_POOL).pending_step_count == 0:  # the batch is in line
            assert time.monotonic() < deadline, "the batch never asked for the pool"
            time.sleep(0.01)
        assert order == [], "the batch must not write while the publish holds the pool"
        order.append("publish done")
        storage.free_concurrency_slot_for_step("resync", "port__catalog")
        thread.join(timeout=10)
        assert order == ["publish done", "batch"]
        info = storage.get_concurrency_info(PORT_WRITES_POOL)
        assert info.active_slot_count == 0, "the worker gives the slot back after each batch"


def test_a_bad_event_is_dead_lettered_and_the_others_applied(tmp_path: Path) -> None:
    inbox_path = str(tmp_path / "inbox.sqlite")
    with Inbox(inbox_path) as inbox:
        for n in range(3):
            inbox.append(request_id=f"r{n}", resource="issue", action="resolved", issue_id=str(100 + n),
                         body=json.dumps({"data": {"issue": {"id": str(100 + n)}}}).encode())
        bad = inbox.pending_after(0)[1].id
    applied: list[list[int]] = []

    def apply(events: Any) -> None:
        ids = [e.id for e in events]
        if bad in ids:
            raise RuntimeError("Port refused the entity")
        applied.append(ids)

    with instance_for_test() as instance:
        counts = drain(build_op_context(instance=instance), inbox_path, None, AssetKey(["port", "catalog"]), apply,
                       lifetime_seconds=3, poll_seconds=0.01, retry_base_seconds=0.01)
    with Inbox(inbox_path) as inbox:
        assert inbox.count_pending() == 0 and inbox.count_dead() == 1
        [(event, attempts, error, _)] = inbox.dead_letters()
    assert event.id == bad and attempts == 3 and "Port refused the entity" in error
    assert sorted(i for ids in applied for i in ids) == sorted({bad - 1, bad + 1}), "the others, one at a time"
    assert counts["dead_lettered"] == 1 and counts["failed_batches"] == 4


def test_the_sensor_keeps_one_worker_running(tmp_path: Path) -> None:
    inbox_path = str(tmp_path / "inbox.sqlite")
    Inbox(inbox_path).close()
    sensor = build_webhook_sensor(inbox_location=inbox_path, worker_job="sentry_webhook_worker")
    with instance_for_test() as instance:
        first = sensor.evaluate_tick(build_sensor_context(instance=instance))
        [request] = first.run_requests
        instance.add_run(DagsterRun(job_name="sentry_webhook_worker", run_id="b" * 36,
                                    status=DagsterRunStatus.STARTED))
        again = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=first.cursor))
        assert not again.run_requests and "applies events as they arrive" in again.skip_message
        instance.delete_run("b" * 36)  # it ended (its hour is over): the next tick starts the next one
        assert sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=again.cursor)).run_requests
