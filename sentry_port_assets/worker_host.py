"""The host a run's worker runs on, recorded on the run, so that a sensor can tell a dead worker from one elsewhere
(`sensors/liveness.py`)."""

from __future__ import annotations

import socket

from dagster import InitResourceContext

# Internal (not a tag to filter runs by): only the liveness check reads it. Runs tagged by earlier releases carry
# LEGACY_HOST_TAG.
HOST_TAG = "sentry_port/internal/worker_host"
LEGACY_HOST_TAG = "sentry_port/host"


def tag_worker_host(context: InitResourceContext) -> None:
    """Called as a run's resources start: records the worker's host on the run, once (see the module doc)."""
    run, instance = context.run, context.instance
    if run is None or instance is None or {HOST_TAG, LEGACY_HOST_TAG} & set(run.tags or {}):
        return
    try:
        instance.add_run_tags(run.run_id, {HOST_TAG: socket.gethostname()})
    except Exception:  # noqa: BLE001 - a missing tag only makes liveness more conservative
        pass
