"""Jobs: the names are contracts (README, CI examples and sensors use them); an instance with a key prefix
(`names.py`) prefixes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import AssetSelection, define_asset_job

from sentry_port_assets.assets.entities import ENTITY_KINDS, kind_asset_keys
from sentry_port_assets.config import log_level
from sentry_port_assets.names import DEFAULT, Names

if TYPE_CHECKING:  # what define_asset_job returns; Dagster does not export the class
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# Without logger config Dagster prints every event at DEBUG (~350 lines for the demo). The default run config says
# INFO: progress, counts, warnings and errors. SENTRY_PORT_LOG_LEVEL=DEBUG (or the launchpad, or
# `-c` with loggers.console.config.log_level) brings the events back; the UI's run log always has all of them.
LOGGING = {"loggers": {"console": {"config": {"log_level": log_level()}}}}
# The kinds Sentry sends no webhook for that the release poll keeps current (sensors/releases.py).
RELEASE_KINDS = ("release", "deploy")


@dataclass(frozen=True)
class Jobs:
    # Fetch from Sentry and map to entities; run by the resync schedule.
    refresh: UnresolvedAssetJobDefinition
    # Everything in one run, for CI: `dagster job execute -m sentry_port_assets -j sentry_port_sync`.
    sync: UnresolvedAssetJobDefinition
    # Publish the latest entities; launched by the publish_on_new_entities sensor.
    publish: UnresolvedAssetJobDefinition
    # Releases and deploys alone, fetched, mapped and published without deleting anything; launched by the
    # sentry_release_sensor when Sentry's projects name a new release or deploy.
    releases: UnresolvedAssetJobDefinition

    @property
    def all(self) -> list[UnresolvedAssetJobDefinition]:
        return [self.refresh, self.sync, self.publish, self.releases]


def build_jobs(names: Names = DEFAULT, kinds: Sequence[str] = tuple(ENTITY_KINDS)) -> Jobs:
    """The jobs of one instance, over the assets of `kinds` (those its mapping maps: an asset of another kind would
    only materialize empty) and the publish. Selected by key, so groups are free to be renamed."""
    catalog = AssetSelection.assets(names.key("port", "catalog"))
    refreshed = AssetSelection.assets(*kind_asset_keys(names, kinds))
    everything = refreshed | catalog
    release_kinds = [k for k in RELEASE_KINDS if k in kinds] or list(RELEASE_KINDS)
    partial = {**LOGGING, "ops": {names.key("port", "catalog").to_python_identifier(): {
        "config": {"kinds": release_kinds}}}}
    return Jobs(
        refresh=define_asset_job(names.job("sentry_refresh"), selection=refreshed,
                                 description="Fetch from Sentry and build Port entities (no publish).", config=LOGGING),
        sync=define_asset_job(names.job("sentry_port_sync"), selection=everything,
                              description="Fetch from Sentry, map, and publish to Port in one run.", config=LOGGING),
        publish=define_asset_job(names.job("publish_to_port"), selection=catalog,
                                 description="Publish the latest entity materializations to Port (or the local "
                                             "catalog).", config=LOGGING),
        releases=define_asset_job(
            names.job("sentry_release_sync"), selection=AssetSelection.assets(*kind_asset_keys(names, release_kinds))
            | catalog, config=partial,
            description="Fetch, map and publish releases and deploys alone (no delete): what sentry_release_sensor "
                        "launches when Sentry has a new release or deploy."),
    )


_default = build_jobs()
sentry_refresh, sentry_port_sync, publish_to_port = _default.refresh, _default.sync, _default.publish
sentry_release_sync = _default.releases
