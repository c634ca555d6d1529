"""The resync schedule: `sentry_refresh` every SENTRY_PORT_RESYNC_MINUTES (default 60; see `config.resync_cron`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import DefaultScheduleStatus, ScheduleDefinition

from sentry_port_assets.jobs import sentry_refresh
from sentry_port_assets.names import DEFAULT, Names

if TYPE_CHECKING:  # what define_asset_job returns; Dagster does not export the class
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def resync_schedule(cron: str, names: Names = DEFAULT,
                    job: UnresolvedAssetJobDefinition = sentry_refresh) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=names.job("sentry_resync_schedule"),
        job=job,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Fetch from Sentry and rebuild entities; the publish sensor then publishes them to Port.",
    )
