"""The resync schedule: `sentry_refresh` every SENTRY_PORT_RESYNC_MINUTES (default 60)."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from sentry_port_assets.config import env_value
from sentry_port_assets.jobs import sentry_refresh

DEFAULT_RESYNC_MINUTES = 60


class ScheduleConfigError(ValueError):
    pass


def resync_cron(minutes: int) -> str:
    """A cron expression firing every `minutes`; cron can only say that for divisors of an hour or a day."""
    if 0 < minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
    if minutes % 60 == 0 and 0 < minutes <= 1440 and 1440 % minutes == 0:
        hours = minutes // 60
        return "0 0 * * *" if hours == 24 else ("0 * * * *" if hours == 1 else f"0 */{hours} * * *")
    raise ScheduleConfigError(
        f"SENTRY_PORT_RESYNC_MINUTES={minutes} cannot be expressed as a cron schedule: use a divisor of 60 "
        "(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) or a whole number of hours dividing 24 (60, 120, 180, 240, 360, 480, "
        "720, 1440)."
    )


def resync_minutes() -> int:
    raw = env_value("SENTRY_PORT_RESYNC_MINUTES", str(DEFAULT_RESYNC_MINUTES)) or str(DEFAULT_RESYNC_MINUTES)
    try:
        return int(raw)
    except ValueError:
        raise ScheduleConfigError(f"SENTRY_PORT_RESYNC_MINUTES must be a whole number of minutes, not {raw!r}") from None


sentry_resync_schedule = ScheduleDefinition(
    name="sentry_resync_schedule",
    job=sentry_refresh,
    cron_schedule=resync_cron(resync_minutes()),
    default_status=DefaultScheduleStatus.RUNNING,
    description="Fetch from Sentry and rebuild entities; the publish sensor then publishes them to Port.",
)
