"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources, wired in one place."""

from __future__ import annotations

from dagster import Definitions

from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.jobs import all_jobs
from sentry_port_assets.resources import build_resources

defs = Definitions(
    assets=[*raw_assets],
    jobs=all_jobs,
    resources=build_resources(),
)
