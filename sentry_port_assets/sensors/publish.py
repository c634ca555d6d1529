"""The publish sensor: launches publish_to_port when entity assets have new materializations.

When every entity asset was mapped with one mapping snapshot, the run is tagged with its sha256, so the publish
maps its policy (merge, deletion threshold, owned blueprints) with that same mapping (`resources/mapping.py`)."""

from __future__ import annotations

import json
from typing import Any

from dagster import (
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sentry_port_assets.assets.catalog import input_mapping_shas
from sentry_port_assets.assets.entities import entity_asset_keys
from sentry_port_assets.jobs import publish_to_port
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.resources.mapping import MAPPING_SHA_TAG
from sentry_port_assets.sensors.liveness import check_run

REFRESH_JOBS = ("sentry_refresh", "sentry_port_sync")
IN_PROGRESS = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
               DagsterRunStatus.STARTED]


def _latest_storage_id(context: SensorEvaluationContext, key: AssetKey) -> int | None:
    records = context.instance.fetch_materializations(key, limit=1).records
    return records[0].storage_id if records else None


def build_publish_sensor(names: Names = DEFAULT, job: Any = publish_to_port) -> SensorDefinition:
    """The publish sensor of one instance (`names`), launching its `job` (its publish_to_port)."""
    entity_keys = entity_asset_keys(names)
    catalog_key = names.key("port", "catalog")
    refresh_jobs = tuple(names.job(j) for j in REFRESH_JOBS)

    @sensor(
        name=names.job("publish_on_new_entities"),
        job=job,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Launches publish_to_port once per new set of entity materializations, after refreshes finish.",
    )
    def publish_on_new_entities(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        """The cursor holds the entity materializations last published, as {asset key: storage id}."""
        seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
        latest = {key.to_user_string(): _latest_storage_id(context, key) for key in entity_keys.values()}
        current = {k: v for k, v in latest.items() if v is not None}
        if not current:
            return SkipReason("no entity asset has been materialized yet: run sentry_refresh first")
        new = sorted(k for k, v in current.items() if v > seen.get(k, -1))
        if not new:
            return SkipReason("no new entity materializations since the last publish")

        running = context.instance.get_run_records(RunsFilter(job_name=None, statuses=IN_PROGRESS), limit=50)
        for record in running:
            run = record.dagster_run
            if run.job_name not in refresh_jobs:
                continue
            liveness = check_run(context.instance, run)
            if liveness.alive:
                return SkipReason(f"waiting: refresh run {run.run_id} is still in progress")
            context.log.warning(f"refresh run {run.run_id} is not waited for: {liveness.reason}")

        published = _latest_storage_id(context, catalog_key)
        cursor = json.dumps(current, sort_keys=True)
        if published is not None and all(v < published for v in current.values()):
            # sentry_port_sync materialized these entities and published them in the same run.
            return SensorResult(skip_reason=SkipReason("these entities were already published"), cursor=cursor)
        context.log.info(f"new entity materializations: {', '.join(new)}")  # a log line, not a long tag
        tags: dict[str, str] = {}
        shas = set(input_mapping_shas(context.instance, list(entity_keys.values())).values())
        if len(shas) == 1 and shas != {"unknown"}:
            tags[MAPPING_SHA_TAG] = shas.pop()
        return SensorResult(run_requests=[RunRequest(run_key=cursor, tags=tags)], cursor=cursor)

    return publish_on_new_entities


publish_on_new_entities = build_publish_sensor()
