"""`sentry_release_sensor`: releases and deploys reach Port within a minute, though Sentry sends no webhook for them.

Every minute it reads the organization's project list, one request per 100 projects (`GET /organizations/{org}/
projects/`). Each project names its newest release and its newest deploy per environment (`latestRelease`,
`latestDeploys`). When that moved since the last poll (a release created, a deploy recorded, an old release deployed
again: a rollback, which the newest-first first page of the release list would not show), it launches
`sentry_release_sync`. That run reads releases and deploys alone, incrementally as a resync does
(sentry/releases.py), maps them and publishes only them. It deletes nothing: stale releases leave at the next full
resync, and the other kinds are neither read nor written. Its publish is in the Port write pool like every writer's.

The first poll only records what Sentry shows: the resync brings the state of then. While a release run is queued
or running, a move waits for it to end; the poll after launches the next.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from dagster import (
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

from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.sentry.releases import release_signals
from sentry_port_assets.sentry.resource import SentryResource

POLL_SECONDS = 60
REASON_TAG = "sentry_port/reason"
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
              DagsterRunStatus.STARTED]


def moved(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """In words, what moved between two polls (for the run's tag and the tick's log)."""
    out = []
    for pid, signal in now.items():
        old = before.get(pid) or {"release": None, "deploys": {}}
        if signal["release"] != old["release"]:
            out.append(f"release {signal['release']}")
        for env, deploy in signal["deploys"].items():
            if deploy != old["deploys"].get(env):
                out.append(f"deploy of {deploy[0]} to {env}")
    return sorted(set(out)) or ["a project left"]


async def _poll(sentry: SentryResource) -> dict[str, Any]:
    async with sentry.get_client() as client:
        return release_signals(await client.list_organization_projects())


def build_release_sensor(names: Names = DEFAULT, job_name: str = "sentry_release_sync") -> SensorDefinition:
    @sensor(
        name=names.job("sentry_release_sensor"),
        job_name=job_name,
        minimum_interval_seconds=POLL_SECONDS,
        required_resource_keys={names.resource("sentry")},
        default_status=DefaultSensorStatus.RUNNING,
        description="Polls Sentry's projects every minute (a request per 100 projects) and, when a release or deploy "
                    f"appears, launches {job_name}: releases and deploys in Port within a minute, without a resync.",
    )
    def sentry_release_sensor(context: SensorEvaluationContext) -> SensorResult:
        """Cursor: {"digest": sha256 of the last poll's signals, "signals": {project id: {release, deploys}}}."""
        sentry: SentryResource = getattr(context.resources, names.resource("sentry"))
        signals = asyncio.run(_poll(sentry))
        digest = hashlib.sha256(json.dumps(signals, sort_keys=True).encode()).hexdigest()
        state = json.loads(context.cursor) if context.cursor else None
        keep = json.dumps({"digest": digest, "signals": signals})
        if state is None:
            return SensorResult(skip_reason=SkipReason(
                f"first poll: {len(signals)} projects recorded; a new release or deploy launches {job_name}"),
                cursor=keep)
        if state.get("digest") == digest:
            return SensorResult(skip_reason=SkipReason("no new release or deploy"), cursor=context.cursor)
        if context.instance.get_run_records(RunsFilter(job_name=job_name, statuses=UNFINISHED), limit=1):
            # the cursor stays: the next poll after that run sees the move again, and launches
            return SensorResult(skip_reason=SkipReason(f"a release or deploy moved; waiting for the {job_name} run "
                                                       "in flight"), cursor=context.cursor)
        what = moved(state.get("signals") or {}, signals)
        context.log.info(f"Sentry moved: {', '.join(what[:10])}" + (f" and {len(what) - 10} more"
                                                                      if len(what) > 10 else ""))
        return SensorResult(
            run_requests=[RunRequest(run_key=f"releases-{digest[:16]}",
                                     tags={REASON_TAG: ("; ".join(what))[:200]})],
            cursor=keep)

    return sentry_release_sensor
