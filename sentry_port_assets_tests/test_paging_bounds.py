"""Paging that never ends (issue 21, item 5): a Sentry `Link` whose next page is always there at the same cursor, or a
Port search whose `next` repeats, used to page for ever (holding every page, and Port's write pool with it). Every
paging loop now stops on a repeated cursor and on a page count far beyond the list's size, with an error naming the
endpoint, before anything is deleted. Against the emulators over loopback; the timeouts turn the old hang into a
failure. And the bundled and deploy instances bound every run's time, so no run holds the pool for ever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentry_port_assets.emulators.port import Fault as PortFault
from sentry_port_assets.emulators.sentry_api import Fault
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.errors import PortPagingError
from sentry_port_assets.port.target import PortApiTarget
from sentry_port_assets.sentry.errors import SentryPagingError
from sentry_port_assets.sentry.pagination import MIN_PAGES
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.test_port_reconciler import everything, run
from sentry_port_assets_tests.test_sentry_client import client_for

REPO = Path(__file__).resolve().parents[1]
MEMBERS = "/organizations/{org}/members/"
ISSUES = "/organizations/{org}/issues/"
FOR_EVER = 10**9  # a fault that fires on every request


def sentry_list(sentry: RunningSentry, endpoint: str) -> tuple[BaseException | None, Any, float]:
    """Reads the list at `endpoint` as the sync does; (the error raised, the client's stats, seconds taken)."""
    client = client_for(sentry)

    async def go() -> None:
        async with client:
            if endpoint == MEMBERS:
                await client.list_members()
                return
            projects = await client.list_projects()
            await client.list_issues(projects[0], "", None)

    started = time.monotonic()
    try:
        asyncio.run(go())
    except SentryPagingError as exc:
        return exc, client.stats, time.monotonic() - started
    return None, client.stats, time.monotonic() - started


@pytest.mark.timeout(60)
@pytest.mark.parametrize("endpoint", [MEMBERS, ISSUES])
def test_a_sentry_list_whose_next_page_repeats_its_cursor_fails_naming_the_endpoint(sentry_emulator, endpoint):
    sentry = sentry_emulator(faults=[Fault("repeat-cursor", endpoint=endpoint, times=None)])
    error, stats, seconds = sentry_list(sentry, endpoint)
    assert error is not None, "the list ended although its cursor repeats"
    assert f"GET {endpoint}" in str(error) and "a second time" in str(error) and "SENTRY_HOST" in str(error)
    # the second sight of the cursor stops it: a page or two held, not hundreds of thousands of items
    assert sentry.state.stats(endpoint).requests <= 3 and stats.items <= 3 * 100
    assert seconds < 10


@pytest.mark.timeout(60)
def test_a_sentry_list_that_always_has_more_stops_at_its_hits(sentry_emulator):
    """Cursors that move on but never end: the issue list says how many issues match (`X-Hits`), so the walk stops a
    generous factor past the pages those need, not at the hard cap."""
    sentry = sentry_emulator(faults=[Fault("endless", endpoint=ISSUES, times=None)])
    error, stats, _ = sentry_list(sentry, ISSUES)
    assert error is not None and f"GET {ISSUES}" in str(error) and "X-Hits" in str(error)
    assert sentry.state.stats(ISSUES).requests == MIN_PAGES  # the demo's project fits one page: the floor applies


@pytest.fixture
def port(tmp_path):
    catalog = LocalCatalog(tmp_path / "catalog.sqlite")
    catalog.create_blueprint(fx.PORT_USER)
    with fx.serve_port(catalog) as (url, state):
        yield catalog, url, state
    catalog.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("route, path", [
    ("search", "POST /v1/blueprints/tUser/entities/search"),
    ("datasource_entities", "POST /v1/blueprints/entities/datasource-entities"),
])
def test_a_port_search_whose_next_repeats_fails_naming_the_endpoint(port, route, path):
    catalog, url, state = port
    run(lambda: PortApiTarget(fx.client(url)), everything())
    state.faults.append(PortFault(route, kind="repeat-next", times=FOR_EVER))
    before = state.stats.requests[route]

    async def read() -> None:
        async with PortApiTarget(fx.client(url)) as target:
            if route == "search":
                await target.search_entities("tUser")
            else:
                await target.owned()

    with pytest.raises(PortPagingError) as info:
        asyncio.run(read())
    assert path in str(info.value) and "a second time" in str(info.value)
    assert state.stats.requests[route] - before <= 3, "the second sight of the cursor stops it"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("route", ["search", "datasource_entities"])
def test_a_publish_against_a_port_whose_next_repeats_fails_and_deletes_nothing(port, route):
    """The read of what Port holds (`search`) comes before any write, the read of what we own (`datasource_entities`)
    after the upserts and before the deletes: either way the publish fails before its delete phase."""
    catalog, url, state = port
    target = lambda: PortApiTarget(fx.client(url))  # noqa: E731
    run(target, everything())
    fewer = [e for e in everything() if e["identifier"] != "ISSUE-3"]  # ISSUE-3 is resolved away: stale
    state.faults.append(PortFault(route, kind="repeat-next", times=FOR_EVER))
    with pytest.raises(PortPagingError):
        run(target, fewer)
    assert state.stats.delete_requests == 0 and catalog.get_entity("tIssue", "ISSUE-3") is not None

    state.faults.clear()  # the same publish against a Port that pages right deletes it: it was stale indeed
    assert run(target, fewer).blueprints["tIssue"].deleted == 1


# -- no run holds the pool for ever -----------------------------------------------------------------------------------

def instance(path: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / path).read_text())


@pytest.mark.parametrize("path", ["dagster_home/dagster.yaml", "deploy/dagster.yaml"])
def test_the_bundled_and_deploy_instances_bound_every_run(path):
    monitoring = instance(path)["run_monitoring"]
    assert monitoring["enabled"] is True
    # generous (a full refresh of a large organization takes hours) but finite, and the same in both
    assert 4 * 3600 <= monitoring["max_runtime_seconds"] <= 24 * 3600
    assert monitoring["max_runtime_seconds"] == instance("deploy/dagster.yaml")["run_monitoring"]["max_runtime_seconds"]
    # a run stopped mid-step hands its `sentry_port_writes` slot back
    assert 0 < monitoring["free_slots_after_run_end_seconds"] <= 600


def test_the_helm_recipe_bounds_every_run_the_same_way():
    """The chart writes its own dagster.yaml, whose run_monitoring has no max runtime: Kubernetes ends the run's Job at
    the same deadline, and run monitoring (on in the chart) fails the run and frees its slots."""
    values = instance("deploy/helm/values.yaml")
    deadline = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"]["activeDeadlineSeconds"]
    assert deadline == instance("deploy/dagster.yaml")["run_monitoring"]["max_runtime_seconds"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is True and 0 < monitoring["freeSlotsAfterRunEndSeconds"] <= 600
