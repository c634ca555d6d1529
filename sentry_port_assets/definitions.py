"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources, wired in one place.

The settings are read and checked here, once, when the code location loads: a configuration mistake stops
the load with one line naming the variables to fix, before any step runs or any request is sent.
"""

from __future__ import annotations

import warnings

from dagster import BetaWarning, Definitions, FilesystemIOManager, in_process_executor

from sentry_port_assets.assets.catalog import port_catalog
from sentry_port_assets.assets.checks import OPTIONAL_ENTITIES, entity_checks, optional_entities
from sentry_port_assets.assets.entities import entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.config import ConfigError, read_settings
from sentry_port_assets.jobs import all_jobs
from sentry_port_assets.preflight import dagster_home_problem
from sentry_port_assets.resources import build_resources
from sentry_port_assets.schedules import resync_schedule
from sentry_port_assets.sensors.mapping import port_mapping_sensor
from sentry_port_assets.sensors.publish import publish_on_new_entities
from sentry_port_assets.sensors.webhooks import sentry_webhook_sensor
from sentry_port_assets.webhooks.job import sentry_webhook_sync

# Dagster 1.13 copies every sensor that targets a job with `owners=[]` instead of None, which trips its own beta
# warning for a parameter we never set; it would print on every command. Only that message is silenced.
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`",
                        category=BetaWarning)

settings = read_settings()
_storage_problem = dagster_home_problem()
if _storage_problem:
    raise ConfigError(_storage_problem + ".")

defs = Definitions(
    assets=[*raw_assets, *entity_assets, port_catalog],
    asset_checks=[entity_checks],
    jobs=[*all_jobs, sentry_webhook_sync],
    schedules=[resync_schedule(settings.resync_cron)],
    sensors=[port_mapping_sensor, publish_on_new_entities, sentry_webhook_sensor],
    resources={
        **build_resources(settings),
        # Named explicitly: `optional_entities` loads through it, and Dagster resolves every top-level resource's
        # dependencies when it builds a sensor's or schedule's context, where no default io_manager is added.
        "io_manager": FilesystemIOManager(),
        OPTIONAL_ENTITIES: optional_entities,
    },
    # Each asset already runs its Sentry/Port calls concurrently; a process per step would cost more to start
    # (~2 s each) than the parallelism between steps gains.
    executor=in_process_executor,
)
