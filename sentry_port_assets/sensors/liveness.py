"""Which in-progress runs are alive, so that a sensor never waits forever for a run whose worker was killed.

A run worker killed with `kill -9` (an OOM kill, a node lost) writes no failure: its run stays STARTED for ever, and a
sensor that waits for in-progress runs would wait with it. Dagster's run monitoring (enabled in the bundled
`dagster_home/dagster.yaml`) fails runs stuck STARTING, but the default run launcher cannot tell whether a STARTED
run's worker is alive. So, for the runs a sensor waits for:

- Dagster's RUN_START event records the pid of the run worker, and our resources tag the run with the worker's
  host (`sentry_port/host`, see `worker_host.py`). When that host is this one and the process is gone, the worker
  is dead: the run is reported failed (what run monitoring would do), and the sensor goes on. A run on another host
  is never judged by pid;
- a run that wrote no event for `SENTRY_PORT_STALE_RUN_MINUTES` (default 180; the run may be on another host) is
  not waited for either, but it is left as it is: it may still be alive somewhere.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance, DagsterRun

from sentry_port_assets.config import number_setting
from sentry_port_assets.worker_host import HOST_TAG, LEGACY_HOST_TAG


@dataclass(frozen=True)
class Liveness:
    alive: bool
    reason: str = ""
    dead: bool = False  # the worker is proven gone (and the run is now marked failed)


def _stale_seconds() -> float:
    return number_setting("SENTRY_PORT_STALE_RUN_MINUTES") * 60


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_run(instance: DagsterInstance, run: DagsterRun) -> Liveness:
    """Whether `run` (in progress) is worth waiting for; a dead worker's run is marked failed on the way."""
    tags = (instance.get_run_by_id(run.run_id) or run).tags or {}  # tagged after the run was read
    host = tags.get(HOST_TAG) or tags.get(LEGACY_HOST_TAG)
    started = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    worker = started[0].event_log_entry.dagster_event if started else None
    if worker is not None and host == socket.gethostname() and worker.pid is not None and not _pid_alive(worker.pid):
        message = (f"the run's worker (pid {worker.pid}) is gone without reporting an end (killed?): marked failed "
                   "so that the automation goes on")
        instance.report_run_failed(run, message)
        return Liveness(False, message, dead=True)
    latest = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
    if latest:
        quiet = time.time() - latest[0].event_log_entry.timestamp
        if quiet > _stale_seconds():
            return Liveness(False, f"no event for {quiet / 60:.0f} min (SENTRY_PORT_STALE_RUN_MINUTES): not waited for")
    return Liveness(True)
