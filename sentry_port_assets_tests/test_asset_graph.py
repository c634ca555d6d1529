"""The asset graph users inspect as lineage: a snapshot, and the same graph served by dagster-webserver."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from dagster import AssetKey

from sentry_port_assets.definitions import defs
from sentry_port_assets_tests.conftest import stop

# The data flow (docs/architecture.md): asset -> its upstream assets.
EXPECTED_GRAPH: dict[str, set[str]] = {
    "sentry/members": set(),
    "sentry/teams": set(),
    "sentry/projects": set(),
    "sentry/project_tags": {"sentry/projects"},
    "sentry/project_details": {"sentry/projects"},
    "sentry/issues": {"sentry/projects"},
    "sentry/issue_tags": {"sentry/issues"},
    "sentry/releases": {"sentry/projects"},
    "sentry/deploys": {"sentry/releases"},
    "sentry/monitors": set(),
    "sentry/alert_rules": {"sentry/projects"},
    "port/entities_user": {"sentry/members"},
    "port/entities_team": {"sentry/teams"},
    "port/entities_project": {"sentry/project_details"},
    "port/entities_project_tag": {"sentry/project_tags"},
    "port/entities_issue": {"sentry/issues"},
    "port/entities_issue_tag": {"sentry/issue_tags"},
    "port/entities_release": {"sentry/releases"},
    "port/entities_deploy": {"sentry/deploys"},
    "port/entities_monitor": {"sentry/monitors"},
    "port/entities_alert_rule": {"sentry/alert_rules"},
    "port/catalog": {"port/entities_user", "port/entities_team", "port/entities_project",
                     "port/entities_project_tag", "port/entities_issue", "port/entities_issue_tag",
                     "port/entities_release", "port/entities_deploy",
                     "port/entities_monitor", "port/entities_alert_rule"},
}
EXPECTED_GROUPS = {"sentry/": "sentry", "port/": "port"}


def graph_of_definitions() -> dict[str, set[str]]:
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
            for key in graph.get_all_asset_keys()}


def test_asset_graph_snapshot() -> None:
    assert graph_of_definitions() == EXPECTED_GRAPH


def test_jobs_schedule_and_sensor_are_defined() -> None:
    repo = defs.get_repository_def()
    assert {"sentry_port_sync", "sentry_refresh", "publish_to_port"} <= set(repo.job_names)
    assert repo.get_job("publish_to_port").asset_layer.executable_asset_keys == {AssetKey(["port", "catalog"])}
    refresh = {k.to_user_string() for k in repo.get_job("sentry_refresh").asset_layer.executable_asset_keys}
    # the bundled mapping maps no `issue` resource (the seed's issue-tag one instead): its entity asset is in no job
    assert refresh == set(EXPECTED_GRAPH) - {"port/catalog", "port/entities_issue"}
    assert repo.get_schedule_def("sentry_resync_schedule").cron_schedule == "0 * * * *"
    assert repo.get_sensor_def("publish_on_new_entities").job_name == "publish_to_port"


def test_every_asset_is_in_its_group() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name = key.to_user_string()
        [group] = [g for prefix, g in EXPECTED_GROUPS.items() if name.startswith(prefix)]
        assert graph.get(key).group_name == group, name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("dagster_home")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env.pop("SENTRY_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "sentry_port_assets", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("dagster-webserver did not answer within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        stop(proc, timeout=20)


def test_webserver_serves_the_asset_graph(webserver: str) -> None:
    query = "{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }"
    deadline = time.monotonic() + 120
    while True:  # the code location may still be loading when the server first answers
        body = httpx.post(f"{webserver}/graphql", json={"query": query}, timeout=30).json()
        nodes = (body.get("data") or {}).get("assetNodes") or []
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    served = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    assert served == graph_of_definitions() == EXPECTED_GRAPH


def test_webserver_shows_the_jobs_schedule_and_sensors(webserver: str) -> None:
    query = ("{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } "
             "schedules { name cronSchedule } sensors { name } } } } }")
    deadline = time.monotonic() + 120
    while True:
        body = httpx.post(f"{webserver}/graphql", json={"query": query}, timeout=30).json()
        nodes = ((body.get("data") or {}).get("repositoriesOrError") or {}).get("nodes") or []
        if nodes or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    [repo] = nodes
    assert {"sentry_port_sync", "sentry_refresh", "publish_to_port", "sentry_webhook_sync", "sentry_release_sync"} <= {
        j["name"] for j in repo["jobs"]}
    assert repo["schedules"] == [{"name": "sentry_resync_schedule", "cronSchedule": "0 * * * *"}]
    assert {s["name"] for s in repo["sensors"]} == {
        "publish_on_new_entities", "sentry_webhook_sensor", "port_mapping_sensor", "sentry_release_sensor"}
