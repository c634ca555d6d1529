"""The mapping sensor: launches sentry_port_sync when the active mapping changes.

The mapping comes from the `mapping` resource (`MappingResource`): the mapping file (PORT_MAPPING_FILE, or the
bundled default), or Port's integration config when PORT_INTEGRATION_IDENTIFIER is set (polled every minute).

The cursor is JSON: `{"sha256": <the content hash>, "changes": <changes seen>, "source": …}` (plus Port's
`updatedAt` in the remote mode). The sha256 is of the file's bytes, or of the canonical JSON of the integration's
`config`. Decisions:
- The very first evaluation (no cursor) only records the hash: the initial load is the resync schedule's (or a
  first manual `sentry_port_sync`'s) job, and turning the sensor on must not launch a full sync by itself.
- A mapping that cannot be read or does not load (bad YAML, unknown key, bad jq, Port unreachable) is skipped with
  a SkipReason naming the source and the error, and the cursor keeps the last good hash: a broken edit must not
  launch a sync that would fail; once fixed, the next evaluation launches it.
- The run key is `<sha256>:<changes>`, deterministic from the cursor, so a tick retried from the same cursor
  never launches twice for one change, while a revert (A -> B -> A) still launches: Dagster never launches a run
  key twice for a sensor, so a key of the bare hash would silently skip the revert.
- A change of Port's `updatedAt` alone (the same config saved again) only updates the cursor.
- Incomplete settings (PORT_INTEGRATION_IDENTIFIER without Port credentials) fail the tick loudly: that is a
  configuration to fix, not a transient state.
- No wait for a running sentry_refresh / sentry_port_sync: a sync launched while another runs is harmless, and the
  run key makes each change launch once.
- The launched run is tagged with the sha256 (`sentry_port/mapping_sha256`) and the content is kept in the
  instance: the run maps with exactly the mapping the sensor saw (`resources/mapping.py`).
"""

from __future__ import annotations

import json
from typing import Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from sentry_port_assets.jobs import sentry_port_sync
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.mapping.loader import MappingConfigError
from sentry_port_assets.port.errors import PortError
from sentry_port_assets.resources.mapping import MAPPING_SHA_TAG, MappingResource, MappingSettingsError, store_snapshot

TAG_PREFIX = "sentry_port/"


def read_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The recorded state, or None before the first evaluation. A bare hash (older cursor) is accepted."""
    if not cursor:
        return None
    try:
        data = json.loads(cursor)
    except ValueError:
        return {"sha256": cursor.strip(), "changes": 0}
    if isinstance(data, dict) and isinstance(data.get("sha256"), str):
        return data
    return None


def _short(digest: str) -> str:
    return digest[:12]


def build_mapping_sensor(names: Names = DEFAULT, job: Any = sentry_port_sync) -> SensorDefinition:
    """The mapping sensor of one instance (`names`), launching its `job` (its sentry_port_sync)."""

    @sensor(
        name=names.job("port_mapping_sensor"),
        job=job,
        required_resource_keys={names.resource("mapping")},
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Launches sentry_port_sync when the mapping changes: the mapping file's content "
                    "(PORT_MAPPING_FILE or the bundled default), or Port's integration config when "
                    "PORT_INTEGRATION_IDENTIFIER is set. A mapping that does not load launches nothing.",
    )
    def port_mapping_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        mapping: MappingResource = names.resources_of(context).mapping
        previous = read_cursor(context.cursor)
        source = mapping.source
        try:
            snapshot = mapping.snapshot()
        except MappingSettingsError:
            raise
        except (MappingConfigError, PortError) as exc:
            return SkipReason(f"cannot read the mapping from {source}, no sync launched (cursor kept): {exc}")

        state: dict[str, Any] = {"sha256": snapshot.sha256, "source": snapshot.source}
        if snapshot.updated_at is not None:
            state["updatedAt"] = snapshot.updated_at

        if previous is not None and previous["sha256"] == snapshot.sha256:
            unchanged = f"mapping unchanged in {snapshot.source} (sha256 {_short(snapshot.sha256)})"
            if previous.get("updatedAt") != state.get("updatedAt") or previous.get("source") != state["source"]:
                state["changes"] = previous.get("changes", 0)
                return SensorResult(
                    skip_reason=SkipReason(f"{unchanged}; updatedAt {state.get('updatedAt')} recorded"),
                    cursor=json.dumps(state, sort_keys=True),
                )
            return SkipReason(unchanged)

        try:
            mapping.compile(snapshot)
        except MappingConfigError as exc:
            return SkipReason(
                f"the mapping in {snapshot.source} changed but does not load, so no sync was launched (the last good "
                f"mapping stays recorded; fix it and the next evaluation launches the sync): {exc}"
            )

        if previous is None:
            state["changes"] = 0
            return SensorResult(
                skip_reason=SkipReason(
                    f"first evaluation: recorded the mapping in {snapshot.source} (sha256 {_short(snapshot.sha256)}) "
                    "without launching; the resync schedule or a first sentry_port_sync loads it"
                ),
                cursor=json.dumps(state, sort_keys=True),
            )

        state["changes"] = int(previous.get("changes", 0)) + 1
        tags = {
            f"{TAG_PREFIX}reason": "mapping changed",
            f"{TAG_PREFIX}mapping_source": snapshot.source,
            MAPPING_SHA_TAG: snapshot.sha256,
            f"{TAG_PREFIX}previous_mapping_sha256": str(previous["sha256"]),
        }
        if snapshot.updated_at is not None:
            tags[f"{TAG_PREFIX}integration_updated_at"] = snapshot.updated_at
        # The run maps with exactly this content, whatever the source says when its steps start.
        store_snapshot(context.instance, snapshot)
        context.log.info(
            f"mapping changed in {snapshot.source}: sha256 {_short(str(previous['sha256']))} -> "
            f"{_short(snapshot.sha256)}, launching sentry_port_sync"
        )
        return SensorResult(
            run_requests=[RunRequest(run_key=f"{snapshot.sha256}:{state['changes']}", tags=tags)],
            cursor=json.dumps(state, sort_keys=True),
        )

    return port_mapping_sensor


port_mapping_sensor = build_mapping_sensor()
