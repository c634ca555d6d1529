"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources, wired in one place."""

from __future__ import annotations

from dagster import Definitions

defs = Definitions()
