"""Releases and deploys as the sync reads them: incrementally, and then exactly as a from-scratch read would.

Each scenario changes the emulated organization the way Sentry's write endpoints would (a release created and
deployed, an old one redeployed, one archived, health moving, one deleted while the sync runs), then compares an
incremental resync (on an instance that kept the last one's state) with a resync on a fresh instance."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from sentry_port_assets.assets import fetch_state
from sentry_port_assets.assets.entities import ENTITY_ASSET_KEYS, entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests.conftest import RunningSentry

RELEASES, DEPLOYS = AssetKey(["sentry", "releases"]), AssetKey(["sentry", "deploys"])
LIST, DEPLOY_LIST = "/organizations/{org}/releases/", "/organizations/{org}/releases/{version}/deploys/"
ONE = "/organizations/{org}/releases/{version}/"
KINDS = ("release", "deploy", "project", "project-tag")


class Resync:
    def __init__(self, sentry: RunningSentry, instance: DagsterInstance) -> None:
        resources = {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                              max_retries=1, backoff_seconds=0.01),
                     "mapping": MappingResource()}
        self.result = materialize([*raw_assets, *entity_assets], resources=resources, instance=instance)
        assert self.result.success
        self.releases = self.result.asset_value(RELEASES)
        self.deploys = self.result.asset_value(DEPLOYS)
        self.entities = {kind: sorted(self.result.asset_value(ENTITY_ASSET_KEYS[kind]),
                                      key=lambda e: (e["blueprint"], str(e["identifier"]))) for kind in KINDS}

    def meta(self, key: AssetKey) -> dict[str, Any]:
        [event] = [m for m in self.result.get_asset_materialization_events() if m.asset_key == key]
        return {k: v.value for k, v in event.materialization.metadata.items()}


def requests(sentry: RunningSentry, endpoint: str) -> int:
    stats = sentry.state.endpoints.get(endpoint)
    return stats.requests if stats else 0


def counts(sentry: RunningSentry) -> tuple[int, int, int]:
    return requests(sentry, LIST), requests(sentry, DEPLOY_LIST), requests(sentry, ONE)


def comparable(value: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    return {key: sorted(items, key=lambda i: str(i.get("version") or i.get("id"))) for key, items in value.items()}


@pytest.fixture
def big(sentry_emulator: Callable[..., RunningSentry]) -> RunningSentry:
    """Three pages of releases: what changed sits on page one, page three, or anywhere."""
    return sentry_emulator(build_org(releases_per_project=50))


def test_a_resync_with_nothing_changed_reads_one_page_and_no_deploys(big: RunningSentry) -> None:
    kept = DagsterInstance.ephemeral()
    first = Resync(big, kept)
    assert "full read" in first.meta(RELEASES)["incremental"]
    assert len(first.releases["query='' statsPeriod=90d"]) > 200
    before = counts(big)
    again = Resync(big, kept)
    lists, deploys, singles = (now - was for now, was in zip(counts(big), before))
    # page one (unchanged: stop), the archived list (one page), health of the adopted releases (one page)
    assert (lists, deploys, singles) == (3, 0, 0), again.meta(RELEASES)["incremental"]
    assert "reused" in again.meta(DEPLOYS)["incremental"]
    assert comparable(again.releases) == comparable(first.releases) and again.deploys == first.deploys
    assert again.entities == first.entities


def test_incremental_equals_from_scratch_after_releases_were_made_deployed_and_archived(big: RunningSentry) -> None:
    data = big.state.dataset
    store = data.releases
    kept = DagsterInstance.ephemeral()
    first = Resync(big, kept)
    now = datetime.now(timezone.utc)
    project = data.org_projects()[0]
    pid, slug = project["id"], project["slug"]
    newest_first = sorted((r for r in store.releases.values() if r.status == "open"),
                          key=lambda r: r.date_created, reverse=True)
    # on page one: a new release, deployed; an archived one
    made = store.create(f"{slug}@3.0.0", [pid], now - timedelta(minutes=30), commit_count=4)
    store.deploy(made.version, "staging", now - timedelta(minutes=10))
    store.archive(newest_first[2].version)
    # far below page one: a rollback (an old release deployed again), an archived one, new issues on another
    old = next(r for r in newest_first[220:] if pid in r.projects)
    store.deploy(old.version, "production", now - timedelta(minutes=5))
    store.archive(newest_first[180].version)
    # health moves without any field of the list moving: the adopted release's crash free rate drops
    adopted = next(r for r in store.releases.values() if r.stages.get((pid, "production")) == "adopted"
                   and r.version != old.version)
    adopted.health[pid] = {**adopted.health[pid], "crashFreeSessions": 91.5}

    before = counts(big)
    incremental = Resync(big, kept)
    lists, deploys, singles = (now_ - was for now_, was in zip(counts(big), before))
    assert singles == 1, "the redeployed old release, read on its own"
    assert deploys == 2, "the deploys of the new release and the redeployed one only"
    assert lists < 6
    with DagsterInstance.ephemeral() as fresh:
        scratch = Resync(big, fresh)
    assert comparable(incremental.releases) == comparable(scratch.releases)
    assert comparable(incremental.deploys) == comparable(scratch.deploys)
    assert incremental.entities == scratch.entities
    versions = {e["identifier"] for e in incremental.entities["release"]}
    assert made.version in versions and newest_first[2].version not in versions
    assert newest_first[180].version not in versions
    [old_entity] = [e for e in incremental.entities["release"] if e["identifier"] == old.version]
    assert old_entity["properties"]["lastDeployEnvironment"] == "production"
    assert old_entity["properties"]["lastDeployFinished"][:16] == (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    [healthy] = [e for e in incremental.entities["release"] if e["identifier"] == adopted.version]
    assert healthy["properties"]["crashFreeSessions"] == 91.5
    assert first.entities != incremental.entities


def test_releases_past_the_window_leave_and_a_deleted_one_leaves_at_the_full_read(
        big: RunningSentry, monkeypatch: pytest.MonkeyPatch) -> None:
    store = big.state.dataset.releases
    kept = DagsterInstance.ephemeral()
    Resync(big, kept)
    oldest = min((r for r in store.releases.values() if r.status == "open"), key=lambda r: r.date_created)
    # Time passes: the oldest release's date added falls out of the 90-day window (moved back in Sentry and in what
    # the last resync kept, as if the resync had run 40 days ago).
    oldest.date_created -= timedelta(days=40)
    key = fetch_state.entry_key("fetch_state/releases", big.url, big.organization)
    state, last_full = fetch_state.begin(kept, key)
    for release in state.previous["query='' statsPeriod=90d health"]:
        if release["version"] == oldest.version:
            release["dateCreated"] = oldest.date_created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    state.kept = state.previous
    fetch_state.finish(kept, key, state, last_full)
    deleted = sorted((r for r in store.releases.values() if r.status == "open"),
                     key=lambda r: r.date_created)[60]
    store.delete(deleted.version)
    incremental = Resync(big, kept)
    versions = {r["version"] for r in incremental.releases["query='' statsPeriod=90d"]}
    assert oldest.version not in versions
    assert "1 past the window" in incremental.meta(RELEASES)["incremental"]
    # Sentry says nothing of a deleted release below page one: it stays until the next full read
    assert deleted.version in versions
    monkeypatch.setenv("SENTRY_PORT_FULL_REFRESH_HOURS", "0.0000001")
    full = Resync(big, kept)
    assert "full read" in full.meta(RELEASES)["incremental"]
    assert deleted.version not in {r["version"] for r in full.releases["query='' statsPeriod=90d"]}


def test_a_release_deleted_between_the_list_and_its_deploys_is_left_out(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    store = sentry.state.dataset.releases
    doomed = next(r for r in store.releases.values() if r.total_deploys and r.status == "open")
    deleted: list[str] = []

    def delete_on_deploys(endpoint: str, params: dict[str, list[str]]) -> None:
        if endpoint == DEPLOY_LIST and not deleted:
            store.delete(doomed.version)
            deleted.append(doomed.version)

    sentry.state.config.before_answer = delete_on_deploys
    run = Resync(sentry, DagsterInstance.ephemeral())
    meta = run.meta(DEPLOYS)
    assert deleted and meta["vanished"] >= 1
    rows = run.deploys["query='' statsPeriod=90d"]
    assert rows and not any(d["__release"] == doomed.version for d in rows)


def test_demo_releases_deploys_and_environments_in_the_mapped_entities(
        sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    run = Resync(sentry, DagsterInstance.ephemeral())
    releases = {e["identifier"]: e for e in run.entities["release"]}
    quoted = releases["my-app@1.0.0+build.5"]
    assert quoted["properties"]["link"] == "https://test-org.sentry.io/releases/my-app%401.0.0%2Bbuild.5/"
    assert quoted["relations"]["projects"] == ["python-fastapi"]
    assert quoted["properties"]["crashFreeSessions"] is not None
    assert any(len(v) == 40 for v in releases), "commit-sha versions"
    deploys = run.entities["deploy"]
    assert {d["properties"]["environment"] for d in deploys} == {"production", "staging", "development"}
    shared = [d for d in deploys if d["relations"]["release"] == "a3f9c2e17b4d8e6051c2a9f3d7e8b1c4a5f60718"]
    assert shared and all(len(d["relations"]["project"]) == 1 for d in shared)
    assert all(d["relations"]["projectEnvironment"] == [f"{d['relations']['project'][0]}-{d['properties']['environment']}"]
               for d in shared)
    assert len({d["relations"]["project"][0] for d in shared}) == 2, "each project's own deploys of the release"
    envs = [e for e in run.entities["project-tag"] if e["relations"].get("project")]
    assert envs and all(e["identifier"].startswith(e["relations"]["project"] + "-") for e in envs)
