"""Releases and deploys without a resync: `sentry_release_sensor` polls the organization's project list (one request
per 100 projects) and launches `sentry_release_sync` when a release or deploy appears or moves; that run publishes
releases and deploys alone and deletes nothing. Against the Sentry emulator on loopback; the job runs as users run it,
`dagster job execute` in a subprocess, into a local catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, build_sensor_context

from sentry_port_assets.emulators.sentry_data import demo_dataset
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.sensors.releases import build_release_sensor
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests.conftest import RunningSentry

PROJECTS = "/organizations/{org}/projects/"


def requests(sentry: RunningSentry, endpoint: str) -> int:
    stats = sentry.state.endpoints.get(endpoint)
    return stats.requests if stats else 0


def test_the_sensor_launches_on_a_new_release_a_deploy_or_a_rollback_and_reads_one_page_a_minute(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(demo_dataset())
    store = sentry.state.dataset.releases
    sensor = build_release_sensor()
    instance = DagsterInstance.ephemeral()
    resource = SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token)

    def tick(cursor: str | None) -> object:
        return sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor,
                                                         resources={"sentry": resource}))

    first = tick(None)
    assert not first.run_requests and "first poll" in first.skip_message
    before = sentry.state.total_requests
    same = tick(first.cursor)
    assert not same.run_requests and same.skip_message == "no new release or deploy"
    assert sentry.state.total_requests - before == 1 == requests(sentry, PROJECTS) - 1, "one request a poll"

    # an old release deployed again: the newest-first release list would not show it, the projects do
    now = datetime.now(timezone.utc)
    old = sorted(store.releases.values(), key=lambda r: r.date_created)[0]
    store.deploy(old.version, "production", now - timedelta(seconds=5))
    rollback = tick(same.cursor)
    [request] = rollback.run_requests
    assert f"deploy of {old.version} to production" in request.tags["sentry_port/reason"]
    assert not tick(rollback.cursor).run_requests, "launched once"

    # while that run is in flight, a new release waits for it; once it has finished, it is launched
    queued = DagsterRun(job_name="sentry_release_sync", run_id="a" * 36, status=DagsterRunStatus.STARTED)
    instance.add_run(queued)
    project = sentry.state.dataset.org_projects()[1]
    store.create(f"{project['slug']}@9.9.9", [project["id"]], now)
    waiting = tick(rollback.cursor)
    assert not waiting.run_requests and "waiting for the sentry_release_sync run" in waiting.skip_message
    assert waiting.cursor == rollback.cursor
    instance.delete_run(queued.run_id)  # it ended
    [new] = tick(waiting.cursor).run_requests
    assert f"release {project['slug']}@9.9.9" in new.tags["sentry_port/reason"]


def test_the_release_run_publishes_releases_and_deploys_alone_and_deletes_nothing(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(demo_dataset())
    data = sentry.state.dataset
    catalog_path = tmp_path / "catalog.sqlite"
    (tmp_path / "home").mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__"))},
           "DAGSTER_HOME": str(tmp_path / "home"), "SENTRY_HOST": sentry.url,
           "SENTRY_ORGANIZATION": sentry.organization, "SENTRY_TOKEN": sentry.token,
           "PORT_LOCAL_CATALOG": str(catalog_path)}

    def job(name: str) -> str:
        run = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j",
                              name], cwd=tmp_path / "home", env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout + run.stderr

    job("sentry_port_sync")
    with LocalCatalog(catalog_path) as catalog:
        before = {bp: catalog.entities(bp) for bp in ("sentryIssue", "sentryProject", "sentryTeam", "sentryMonitor")}
        deploys_before = {e["identifier"] for e in catalog.entities("sentryDeploy")}
    # meanwhile in Sentry: an issue resolved (stale for a resync) and a release deployed to production
    resolved = next(i for i in data.issues if i["status"] == "unresolved")
    resolved.update(status="resolved", substatus=None)
    release = sorted(data.releases.releases.values(), key=lambda r: r.date_created)[-1]
    deploy = data.releases.deploy(release.version, "production", datetime.now(timezone.utc), name="hotfix")

    out = job("sentry_release_sync")
    assert "sentry__issues" not in out and "sentry__members" not in out, "only releases and deploys are read"
    with LocalCatalog(catalog_path) as catalog:
        assert deploy.id in {e["identifier"] for e in catalog.entities("sentryDeploy")} - deploys_before
        assert {bp: catalog.entities(bp) for bp in before} == before, "no other kind written, nothing deleted"
        assert any(e["identifier"].startswith(f"{resolved['id']}-") for e in catalog.entities("sentryIssue"))
