"""Issue tag values kept between resyncs, so that a resync asks Sentry only for the issues that changed.

An issue's tag values change when it receives events, and every event moves its `lastSeen` and `count`; when old
events age out of retention its `count` drops. So a value fetched for an issue is reused while none of
`CHANGE_FIELDS` moved, and fetched again otherwise; every `SENTRY_PORT_FULL_REFRESH_HOURS` (default 24) everything is
fetched again, which bounds any drift the fields do not reveal.

The cache is kept the way `fetch_state.py` keeps every fetch's state (the instance's key-value store, one entry per
Sentry host and organization); a missing, unreadable, foreign or wrongly shaped entry means a full fetch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterInstance

from sentry_port_assets.assets import fetch_state

CHANGE_FIELDS = ("lastSeen", "count", "userCount", "firstSeen")
_VERSION = 1

Item = dict[str, Any]


def signature(issue: Mapping[str, Any]) -> list[Any]:
    return [issue.get(name) for name in CHANGE_FIELDS]


@dataclass
class TagCache:
    full_refresh_at: float
    # "<issue id>\t<tag key>" -> [*signature, values]
    entries: dict[str, list[Any]] = field(default_factory=dict)

    def reusable(self, wanted: Mapping[tuple[str, str], Item]) -> dict[tuple[str, str], list[Item]]:
        """The cached values of the wanted (issue id, tag key) pairs whose issue did not move."""
        out: dict[tuple[str, str], list[Item]] = {}
        for (issue_id, key), issue in wanted.items():
            entry = self.entries.get(f"{issue_id}\t{key}")
            if entry is not None and entry[:-1] == signature(issue):
                out[(issue_id, key)] = entry[-1]
        return out


def cache_key(host: str, organization: str) -> str:
    return fetch_state.entry_key("issue_tag_cache", host, organization)


def load(instance: DagsterInstance, key: str) -> tuple[TagCache | None, str]:
    """The cache, or None and why there is none."""
    data, why = fetch_state.load_blob(instance, key, _VERSION)
    if data is None:
        return None, why
    problem = _shape_problem(data)
    if problem:
        return None, f"the cache is unreadable ({problem})"
    return TagCache(float(data["full_refresh_at"]), data["entries"]), ""


def _shape_problem(data: Mapping[str, Any]) -> str | None:
    """What makes a decoded entry unusable, checked whole here so that nothing later can raise on it (an entry
    written by another release, or by hand, must mean a full fetch, never a failed run)."""
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return "entries is not a mapping"
    width = len(CHANGE_FIELDS) + 1
    for key, entry in entries.items():
        if key.count("\t") != 1 or not isinstance(entry, list) or len(entry) != width:
            return "an entry is not [*signature, values] under '<issue id>\\t<tag key>'"
        values = entry[-1]
        if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
            return "an entry's values are not a list of objects"
    return None


def save(instance: DagsterInstance, key: str, cache: TagCache) -> None:
    fetch_state.save_blob(instance, key, _VERSION, {"full_refresh_at": cache.full_refresh_at, "entries": cache.entries})


def plan(cache: TagCache | None, why_none: str, now: float | None = None) -> tuple[bool, str]:
    """Whether this resync fetches everything, and why."""
    return fetch_state.plan(None if cache is None else cache.full_refresh_at, why_none, now,
                            f"issues whose {', '.join(CHANGE_FIELDS)} did not move reuse their values")


def rebuilt(rows: Mapping[str, Mapping[str, Sequence[Item]]], full_refresh_at: float) -> TagCache:
    """The cache after a resync: every row it produced, with its issue's signature now."""
    entries: dict[str, list[Any]] = {}
    for per_key in rows.values():
        for key, items in per_key.items():
            for row in items:
                entries[f"{row['id']}\t{key}"] = [*signature(row), row.get("__tags", [])]
    return TagCache(full_refresh_at, entries)
