"""`entityDeletionThreshold` divides the stale entities by what THIS integration wrote (its `$datasource`), as Ocean
does (port_ocean/core/integrations/mixins/sync_raw.py reads `search_entities(user_agent_type)`: its own entities),
not by everything the owned blueprints hold. Beside another organization's entities in the same blueprints, a Sentry
outage answering `200 []` for the issue lists used to look like a small share and delete all of ours."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.client import PortClient
from sentry_port_assets.port.datasource import Datasource
from sentry_port_assets.port.policy import PublishPolicy
from sentry_port_assets.port.reconciler import apply_changes
from sentry_port_assets.port.target import PortApiTarget
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.job_runs import execute, job_env, latest_publish

ISSUES = "sentryIssue"
OTHER_WRITER = "sentry-port-assets/0.9.0/sentry-globex/exporter"  # another organization's instance
FOREIGN = 300


def foreign_issues(count: int) -> list[dict[str, Any]]:
    return [{"identifier": f"globex-{n}-production", "title": f"globex issue {n}", "properties": {},
             "relations": {}} for n in range(count)]


def write_as(port_url: str, writer: str, blueprint: str, entities: list[dict[str, Any]]) -> None:
    """Another writer's upserts, over HTTP with its own User-Agent (Port records it as `$datasource`)."""
    async def go() -> None:
        async with PortClient(fx.CLIENT_ID, fx.CLIENT_SECRET, port_url, user_agent=writer) as client:
            results = await client.upsert_entities(blueprint, entities, merge=True, create_missing_related=False)
            assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    asyncio.run(go())



def test_a_sentry_outage_beside_another_writers_entities_deletes_nothing(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    """The issue's report, through `dagster job execute`: our resync lands the demo organization, another
    organization's instance holds 300 `sentryIssue` entities in the same Port, then Sentry answers `200 []` for every
    issue list. Every issue of ours looks stale: that share of OUR entities is over the threshold, so nothing goes,
    and the run says what share would go and of what."""
    sentry = sentry_emulator()
    data = sentry.state.dataset
    home = tmp_path / "home"
    home.mkdir()
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(fx.PORT_USER)
    mapping = tmp_path / "mapping.yaml"
    # the demo's issues are most of what Ocean's default mapping writes for it: a threshold of 0.5 stops their loss
    ocean = DEFAULT_MAPPING_FILE.parent / "examples" / "mapping-ocean-default.yaml"
    mapping.write_text(ocean.read_text() + "\nentityDeletionThreshold: 0.5\n")
    with fx.serve_port(catalog) as (port_url, port_state):
        env = job_env(home, sentry, port_url, PORT_MAPPING_FILE=str(mapping))
        execute("sentry_port_sync", env, tmp_path)
        ours = {e["identifier"] for e in catalog.entities(ISSUES)}
        assert ours
        write_as(port_url, OTHER_WRITER, ISSUES, foreign_issues(FOREIGN))

        for issue in list(data.issues):  # the outage: every issue list answers 200 []
            data.remove_issue(issue["id"])
        run = execute("sentry_port_sync", env, tmp_path)
        held = {e["identifier"] for e in catalog.entities(ISSUES)}
        assert ours <= held, f"{len(ours - held)} of our {len(ours)} issues were deleted beside {FOREIGN} foreign ones"
        assert len(held) == len(ours) + FOREIGN and port_state.stats.entities_deleted == 0

    meta = latest_publish(home)
    assert meta["stale"] == len(ours) and meta["deleted"] == 0
    assert meta["ours"] < len(ours) / 0.5, "the share is of our entities, not of everything held"
    assert meta["deletion_share"] > 0.5 and str(meta["deletes"]).startswith("skipped: ")
    line = f"{len(ours)} of the {meta['ours']} entities"
    assert line in str(meta["deletes"]) and line in run.stdout + run.stderr, "the log says what share and of what"


# -- the webhook path ------------------------------------------------------------------------------------------------

BLUEPRINT = {"identifier": "tIssue", "title": "Issue", "schema": {"properties": {}}, "relations": {}}


@pytest.fixture
def port(tmp_path: Path):
    catalog = LocalCatalog(tmp_path / "catalog.sqlite")
    catalog.create_blueprint(BLUEPRINT)
    with fx.serve_port(catalog) as (url, state):
        yield catalog, url, state
    catalog.close()


def _apply(url: str, deletes: list[str], threshold: float = 0.9) -> Any:
    policy = PublishPolicy(owned=frozenset({"tIssue"}), deletion_threshold=threshold)

    async def go() -> Any:
        async with PortApiTarget(fx.client(url, user_agent=Datasource("mine").user_agent), Datasource("mine")) as target:
            return await apply_changes(target, [], {"tIssue": deletes}, policy)
    return asyncio.run(go())


def _entities(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"identifier": f"{prefix}-{n:05d}", "title": prefix, "properties": {}, "relations": {}}
            for n in range(count)]


def test_a_webhook_batch_that_would_delete_most_of_ours_deletes_nothing_beside_foreign_entities(port) -> None:
    catalog, url, state = port
    write_as(url, Datasource("mine").user_agent, "tIssue", _entities("mine", 10))
    write_as(url, OTHER_WRITER, "tIssue", _entities("theirs", FOREIGN))
    report = _apply(url, [f"mine-{n:05d}" for n in range(10)])
    assert not report.deletes_performed and report.stale_total == 10 and report.ours_total == 10
    assert "10 of the 10 entities mine wrote" in (report.delete_skipped_reason or "")
    assert catalog.count("tIssue") == 10 + FOREIGN

    report = _apply(url, ["mine-00000"])  # one of ten: 10% goes
    assert report.deletes_performed and report.blueprints["tIssue"].deleted == 1


def test_the_webhook_threshold_reads_only_as_far_as_it_needs(port) -> None:
    """A batch deleting one entity of 2,500 reads one page of what this integration wrote (1,000 entities clear
    the threshold), not all three."""
    catalog, url, state = port
    write_as(url, Datasource("mine").user_agent, "tIssue", _entities("mine", 2500))
    before = state.stats.requests["datasource_entities"]
    report = _apply(url, ["mine-00007"])
    assert report.deletes_performed and report.ours_total >= 2 and catalog.count("tIssue") == 2499
    assert state.stats.requests["datasource_entities"] - before == 1
