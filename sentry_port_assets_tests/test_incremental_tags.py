"""Incremental issue tags: a resync asks Sentry for the tag values of the issues that changed only, and produces
exactly the entities a from-scratch resync produces. The per-issue path is what is cached, so these resyncs map with
the default mapping set to `tagValues: per-issue` (left to itself, it lists environments instead)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from sentry_port_assets.assets.entities import ENTITY_ASSET_KEYS, entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests.conftest import RunningSentry, tag_values, write_mapping

TAGS = AssetKey(["sentry", "issue_tags"])
TAG_ENDPOINT = "/organizations/{org}/issues/{issue}/tags/{key}/values/"


@pytest.fixture(scope="module")
def per_issue(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_mapping(tmp_path_factory.mktemp("mapping"), tag_values("per-issue"))


def resync(sentry: RunningSentry, instance: DagsterInstance, mapping: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Raw and entity assets once; returns {kind: entities} and the issue_tags metadata."""
    resources = {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                          max_retries=1, backoff_seconds=0.01),
                 "mapping": MappingResource(path=mapping)}
    result = materialize([*raw_assets, *entity_assets], resources=resources, instance=instance)
    assert result.success
    [tags] = [m for m in result.get_asset_materialization_events() if m.asset_key == TAGS]
    entities = {kind: sorted(result.asset_value(key), key=lambda e: (e["blueprint"], str(e["identifier"])))
                for kind, key in ENTITY_ASSET_KEYS.items() if kind in ("issue-tag", "issue")}
    return entities, {k: v.value for k, v in tags.materialization.metadata.items()}


def tag_requests(sentry: RunningSentry) -> int:
    stats = sentry.state.endpoints.get(TAG_ENDPOINT)
    return stats.requests if stats else 0


def test_an_incremental_resync_equals_one_from_scratch(sentry_emulator: Callable[..., RunningSentry],
                                                       per_issue: str) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    kept = DagsterInstance.ephemeral()
    first, meta = resync(sentry, kept, per_issue)
    assert meta["tag_values_reused"] == 0 and "full fetch" in meta["tag_cache"]

    before = tag_requests(sentry)
    again, meta = resync(sentry, kept, per_issue)
    assert tag_requests(sentry) == before, "nothing changed in Sentry: no tag values are asked for"
    assert meta["tag_values_fetched"] == 0 and meta["tag_values_reused"] > 0
    assert again == first

    unresolved = [i for i in data.issues if i["status"] == "unresolved"]
    evented, resolved, deleted = unresolved[:3]
    aged = next(i for i in unresolved[3:] if len(data.issue_tag_values.get((i["id"], "environment"), [])) > 1)
    template = next(i for i in unresolved[3:] if i is not aged)
    # an event in a new environment: count and lastSeen move, a value appears
    data.issue_tag_values[(evented["id"], "environment")].append(
        {"key": "environment", "name": "canary", "value": "canary", "count": 1,
         "firstSeen": evented["lastSeen"], "lastSeen": evented["lastSeen"]})
    data.record_event(evented["id"])
    resolved.update(status="resolved", substatus=None)  # no event: only the issue list says so
    # retention: the events of one environment aged out, so the count dropped and the value is gone
    values = data.issue_tag_values[(aged["id"], "environment")]
    data.issue_tag_values[(aged["id"], "environment")] = values[1:]
    aged["count"] = str(int(aged["count"]) - int(values[0].get("count") or 1))
    data.remove_issue(deleted["id"])
    created = copy.deepcopy(template)
    created.update(id="4999999999", shortId="NEW-1", firstSeen=created["lastSeen"])
    data.issues.append(created)
    data.issue_tag_values[(created["id"], "environment")] = copy.deepcopy(
        data.issue_tag_values[(template["id"], "environment")])

    before = tag_requests(sentry)
    incremental, meta = resync(sentry, kept, per_issue)
    assert tag_requests(sentry) - before == 3, "the evented, the aged and the new issue only"
    assert meta["tag_values_fetched"] == 3
    with DagsterInstance.ephemeral() as fresh:
        scratch, scratch_meta = resync(sentry, fresh, per_issue)
    assert scratch_meta["tag_values_reused"] == 0
    assert incremental == scratch
    ids = {e["identifier"] for e in incremental["issue-tag"]}
    assert f"{evented['id']}-canary" in ids
    assert any(i.startswith(f"{created['id']}-") for i in ids)
    assert not any(i.startswith(f"{deleted['id']}-") for i in ids)
    assert not any(i.startswith(f"{resolved['id']}-") for i in ids)
    assert f"{aged['id']}-{values[0]['name']}" not in ids


def test_an_unreadable_cache_means_a_full_fetch(sentry_emulator: Callable[..., RunningSentry],
                                                per_issue: str) -> None:
    from sentry_port_assets.assets import tag_cache

    sentry = sentry_emulator()
    kept = DagsterInstance.ephemeral()
    first, _ = resync(sentry, kept, per_issue)
    key = tag_cache.cache_key(sentry.url, sentry.organization)
    kept.run_storage.set_cursor_values({key: "not a cache"})
    before = tag_requests(sentry)
    again, meta = resync(sentry, kept, per_issue)
    assert "full fetch" in meta["tag_cache"] and "unreadable" in meta["tag_cache"]
    assert tag_requests(sentry) > before and again == first


def test_a_full_refresh_comes_every_configured_hours(sentry_emulator: Callable[..., RunningSentry],
                                                    monkeypatch: pytest.MonkeyPatch, per_issue: str) -> None:
    sentry = sentry_emulator()
    kept = DagsterInstance.ephemeral()
    resync(sentry, kept, per_issue)
    monkeypatch.setenv("SENTRY_PORT_FULL_REFRESH_HOURS", "0.0000001")
    before = tag_requests(sentry)
    _, meta = resync(sentry, kept, per_issue)
    assert "SENTRY_PORT_FULL_REFRESH_HOURS" in meta["tag_cache"] and tag_requests(sentry) > before


def test_long_fetches_say_how_far_and_how_long(sentry_emulator: Callable[..., RunningSentry],
                                               per_issue: str) -> None:
    sentry = sentry_emulator(latency_seconds=0.05)
    instance = DagsterInstance.ephemeral()
    resources = {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                          progress_interval_seconds=0.05),
                 "mapping": MappingResource(path=per_issue)}
    result = materialize([*raw_assets, *entity_assets], resources=resources, instance=instance)
    assert result.success
    lines = [e.user_message for e in instance.all_logs(result.run_id) if "issue tags:" in (e.user_message or "")]
    progress = [line for line in lines if " / " in line]
    assert progress, lines
    assert any(("left" in line) and ("per window" in line or "no rate limits" in line) for line in progress), progress
    [tags] = [m for m in result.get_asset_materialization_events() if m.asset_key == TAGS]
    meta = tags.materialization.metadata
    assert meta["planned_requests"].value == meta["done_requests"].value > 0


def _store(instance: DagsterInstance, key: str, data: Any) -> None:
    import base64
    import json
    import zlib

    blob = zlib.compress(json.dumps(data).encode())
    instance.run_storage.set_cursor_values({key: base64.b64encode(blob).decode()})


def test_a_full_refresh_dated_in_the_future_is_due(sentry_emulator: Callable[..., RunningSentry],
                                                   per_issue: str) -> None:
    """A worker whose clock ran ahead wrote the cache: its date must not postpone the full refresh for ever."""
    from sentry_port_assets.assets import tag_cache

    sentry = sentry_emulator()
    kept = DagsterInstance.ephemeral()
    first, _ = resync(sentry, kept, per_issue)
    key = tag_cache.cache_key(sentry.url, sentry.organization)
    cache, _ = tag_cache.load(kept, key)
    assert cache is not None
    cache.full_refresh_at += 365 * 86400
    tag_cache.save(kept, key, cache)
    before = tag_requests(sentry)
    again, meta = resync(sentry, kept, per_issue)
    assert "full fetch" in meta["tag_cache"] and "future" in meta["tag_cache"]
    assert tag_requests(sentry) > before and again == first
    cache, _ = tag_cache.load(kept, key)
    assert cache is not None and cache.full_refresh_at <= __import__("time").time()


@pytest.mark.parametrize("entries", [
    {"1\tenvironment": 5},                                  # not a list
    {"1\tenvironment": []},                                 # no values
    {"1\tenvironment": ["a", "b", "c", "d", "not a list"]},  # values not a list
    {"1\tenvironment": ["a", "b", "c", "d", [1, 2]]},       # values not objects
    ["not", "a", "mapping"],
    {"no tab": [None, None, None, None, []]},
])
def test_a_cache_of_the_wrong_shape_means_a_full_fetch(sentry_emulator: Callable[..., RunningSentry],
                                                       entries: Any, per_issue: str) -> None:
    from sentry_port_assets.assets import tag_cache

    sentry = sentry_emulator()
    kept = DagsterInstance.ephemeral()
    first, _ = resync(sentry, kept, per_issue)
    key = tag_cache.cache_key(sentry.url, sentry.organization)
    cache, _ = tag_cache.load(kept, key)
    assert cache is not None
    good = dict(cache.entries)
    # the wrong-shaped entry sits among good ones, under a key the resync asks for when it can be one
    wanted = next(iter(good))
    bad = entries if not isinstance(entries, dict) else {**good, **{
        (wanted if k == "1\tenvironment" else k): v for k, v in entries.items()}}
    _store(kept, key, {"version": 1, "full_refresh_at": cache.full_refresh_at, "entries": bad})
    again, meta = resync(sentry, kept, per_issue)
    assert "full fetch" in meta["tag_cache"] and "unreadable" in meta["tag_cache"]
    assert again == first


@pytest.mark.parametrize("stamp", ["soon", None, float("nan"), [1]])
def test_a_cache_with_a_bad_date_means_a_full_fetch(sentry_emulator: Callable[..., RunningSentry], stamp: Any,
                                                    per_issue: str) -> None:
    from sentry_port_assets.assets import tag_cache

    sentry = sentry_emulator()
    kept = DagsterInstance.ephemeral()
    first, _ = resync(sentry, kept, per_issue)
    key = tag_cache.cache_key(sentry.url, sentry.organization)
    cache, _ = tag_cache.load(kept, key)
    assert cache is not None
    _store(kept, key, {"version": 1, "full_refresh_at": stamp, "entries": cache.entries})
    again, meta = resync(sentry, kept, per_issue)
    assert "full fetch" in meta["tag_cache"]
    assert again == first
