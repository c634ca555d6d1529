"""The resync schedule: `sentry_refresh` every SENTRY_PORT_RESYNC_MINUTES (default 60; see `config.resync_cron`)."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from sentry_port_assets.jobs import sentry_refresh


def resync_schedule(cron: str) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="sentry_resync_schedule",
        job=sentry_refresh,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Fetch from Sentry and rebuild entities; the publish sensor then publishes them to Port.",
    )
