"""Issue tag values kept between resyncs, so that a resync asks Sentry only for the issues that changed.

An issue's tag values change when it receives events, and every event moves its `lastSeen` and `count`; when old
events age out of retention its `count` drops. So a value fetched for an issue is reused while none of
`CHANGE_FIELDS` moved, and fetched again otherwise; every `SENTRY_PORT_FULL_REFRESH_HOURS` (default 24) everything is
fetched again, which bounds any drift the fields do not reveal.

The cache lives in the Dagster instance's own key-value store (`run_storage.get_cursor_values`, the table sensor
cursors live in): SQLite or Postgres alike, no extra service, it survives restarts, and it goes wherever the
instance goes. One entry per Sentry host and organization, JSON compressed with zlib. A missing, unreadable,
foreign or wrongly shaped entry means a full fetch, never an error or a wrong entity; so does a last full fetch
dated in the future (written by a worker whose clock ran ahead).
"""

from __future__ import annotations

import base64
import json
import math
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterInstance

from sentry_port_assets.config import number_setting

CHANGE_FIELDS = ("lastSeen", "count", "userCount", "firstSeen")
_VERSION = 1

Item = dict[str, Any]


def full_refresh_hours() -> float:
    return number_setting("SENTRY_PORT_FULL_REFRESH_HOURS")


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
    return f"sentry_port/issue_tag_cache/{host.rstrip('/')}/{organization}"


def load(instance: DagsterInstance, key: str) -> tuple[TagCache | None, str]:
    """The cache, or None and why there is none."""
    try:
        raw = instance.run_storage.get_cursor_values({key}).get(key)
    except Exception as exc:  # noqa: BLE001 - an unreadable cache is a full fetch
        return None, f"the cache could not be read ({type(exc).__name__})"
    if not raw:
        return None, "no cache yet"
    try:
        data = json.loads(zlib.decompress(base64.b64decode(raw)))
    except Exception as exc:  # noqa: BLE001
        return None, f"the cache is unreadable ({type(exc).__name__})"
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return None, "the cache is from another version"
    problem = _shape_problem(data)
    if problem:
        return None, f"the cache is unreadable ({problem})"
    return TagCache(float(data["full_refresh_at"]), data["entries"]), ""


def _shape_problem(data: Mapping[str, Any]) -> str | None:
    """What makes a decoded entry unusable, checked whole here so that nothing later can raise on it (an entry
    written by another release, or by hand, must mean a full fetch, never a failed run)."""
    stamp = data.get("full_refresh_at")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        return "full_refresh_at is not a time"
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
    blob = json.dumps({"version": _VERSION, "full_refresh_at": cache.full_refresh_at, "entries": cache.entries},
                      separators=(",", ":")).encode()
    instance.run_storage.set_cursor_values({key: base64.b64encode(zlib.compress(blob, 6)).decode()})


def plan(cache: TagCache | None, why_none: str, now: float | None = None) -> tuple[bool, str]:
    """Whether this resync fetches everything, and why."""
    now = time.time() if now is None else now
    if cache is None:
        return True, why_none
    age = now - cache.full_refresh_at
    if age < 0:
        # Written by a worker whose clock ran ahead: waiting for that date could postpone the refresh for ever.
        return True, f"the last full fetch is dated {-age / 3600:.1f} h in the future (a clock ahead): it is due now"
    if age >= full_refresh_hours() * 3600:
        return True, f"the last full fetch was {age / 3600:.1f} h ago (SENTRY_PORT_FULL_REFRESH_HOURS)"
    return False, f"issues whose {', '.join(CHANGE_FIELDS)} did not move reuse their values"


def rebuilt(rows: Mapping[str, Mapping[str, Sequence[Item]]], full_refresh_at: float) -> TagCache:
    """The cache after a resync: every row it produced, with its issue's signature now."""
    entries: dict[str, list[Any]] = {}
    for per_key in rows.values():
        for key, items in per_key.items():
            for row in items:
                entries[f"{row['id']}\t{key}"] = [*signature(row), row.get("__tags", [])]
    return TagCache(full_refresh_at, entries)
