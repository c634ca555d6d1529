"""Jobs: the names are contracts (README, CI examples and sensors use them)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from sentry_port_assets.assets.catalog import CATALOG_KEY
from sentry_port_assets.config import log_level

CATALOG = AssetSelection.assets(CATALOG_KEY)
# Without logger config Dagster prints every event at DEBUG (~350 lines for the demo). The default run config says
# INFO: progress, counts, warnings and errors. SENTRY_PORT_LOG_LEVEL=DEBUG (or the launchpad, or
# `-c` with loggers.console.config.log_level) brings the events back; the UI's run log always has all of them.
LOGGING = {"loggers": {"console": {"config": {"log_level": log_level()}}}}

# Fetch from Sentry and map to entities; run by the resync schedule.
sentry_refresh = define_asset_job(
    "sentry_refresh",
    selection=AssetSelection.groups("sentry", "port") - CATALOG,
    description="Fetch from Sentry and build Port entities (no publish).",
    config=LOGGING,
)

# Everything in one run, for CI: `dagster job execute -m sentry_port_assets -j sentry_port_sync`.
sentry_port_sync = define_asset_job(
    "sentry_port_sync",
    selection=AssetSelection.all(),
    description="Fetch from Sentry, map, and publish to Port in one run.",
    config=LOGGING,
)

# Publish the latest entities; launched by the publish_on_new_entities sensor.
publish_to_port = define_asset_job(
    "publish_to_port",
    selection=CATALOG,
    description="Publish the latest entity materializations to Port (or the local catalog).",
    config=LOGGING,
)

all_jobs = [sentry_refresh, sentry_port_sync, publish_to_port]
