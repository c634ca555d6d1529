"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources, wired in one place.

The settings are read and checked here, once, when the code location loads: a configuration mistake stops
the load with one line naming the variables to fix, before any step runs or any request is sent.
"""

from __future__ import annotations

from sentry_port_assets.config import ConfigError, read_settings
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.preflight import dagster_home_problem
from sentry_port_assets.resources import build_resources

settings = read_settings()
_storage_problem = dagster_home_problem()
if _storage_problem:
    raise ConfigError(_storage_problem + ".")

resources = build_resources(settings)
# The standalone code location: one instance, no key prefix (asset keys, jobs and sensors as the README names them).
defs = build_sentry_port_defs(sentry=resources["sentry"], mapping=resources["mapping"], port=resources["port"],
                              resync_cron=settings.resync_cron)
