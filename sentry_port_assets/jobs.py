"""Jobs: the names are contracts (README, CI examples and sensors use them)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from sentry_port_assets.assets.catalog import CATALOG_KEY

CATALOG = AssetSelection.assets(CATALOG_KEY)

# Fetch from Sentry and map to entities; run by the resync schedule.
sentry_refresh = define_asset_job(
    "sentry_refresh",
    selection=AssetSelection.groups("sentry", "port") - CATALOG,
    description="Fetch from Sentry and build Port entities (no publish).",
)

# Everything in one run, for CI: `dagster job execute -m sentry_port_assets -j sentry_port_sync`.
sentry_port_sync = define_asset_job(
    "sentry_port_sync",
    selection=AssetSelection.all(),
    description="Fetch from Sentry, map, and publish to Port in one run.",
)

# Publish the latest entities; launched by the publish_on_new_entities sensor.
publish_to_port = define_asset_job(
    "publish_to_port",
    selection=CATALOG,
    description="Publish the latest entity materializations to Port (or the local catalog).",
)

all_jobs = [sentry_refresh, sentry_port_sync, publish_to_port]
