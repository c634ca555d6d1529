"""The resync schedule: `sentry_port_sync` every SENTRY_PORT_RESYNC_MINUTES (default 60; see `config.resync_cron`).

One run fetches, maps and publishes: it reads no value another run wrote, which a run in a pod of its own (Dagster's
Kubernetes run launcher; the IO manager's files are on that pod's disk) needs, and it is one run start per resync,
not two (docs/production.md, "Many organizations")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import DefaultScheduleStatus, ScheduleDefinition

from sentry_port_assets.jobs import sentry_port_sync
from sentry_port_assets.names import DEFAULT, Names

if TYPE_CHECKING:  # what define_asset_job returns; Dagster does not export the class
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def resync_schedule(cron: str, names: Names = DEFAULT,
                    job: UnresolvedAssetJobDefinition = sentry_port_sync) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=names.job("sentry_resync_schedule"),
        job=job,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Fetch from Sentry, rebuild the entities and publish them to Port, in one run.",
    )
