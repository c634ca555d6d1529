"""What a raw asset's fetch keeps between resyncs, so that the next resync asks Sentry only for what changed.

It lives in the Dagster instance's own key-value store (`run_storage.get_cursor_values`, the table sensor cursors
live in): SQLite or Postgres alike, no extra service, it survives restarts, and it goes wherever the instance goes.
One entry per fetch, Sentry host and organization, JSON compressed with zlib, stamped with the time of the last full
read. Every `SENTRY_PORT_FULL_REFRESH_HOURS` (default 24) the fetch reads everything again, which bounds any drift
the change signals miss. A missing, unreadable or foreign entry means a full read, never an error or a wrong entity;
so does a last full read dated in the future (written by a worker whose clock ran ahead).

Two users: the issue tags' cache (`tag_cache.py`) and the fetches kinds.py marks `keeps_state` (releases, deploys),
which get a `FetchState` and say what to keep in it.
"""

from __future__ import annotations

import base64
import json
import math
import time
import zlib
from dataclasses import dataclass
from typing import Any

from dagster import DagsterInstance

from sentry_port_assets.config import number_setting

PREFIX = "sentry_port"


def full_refresh_hours() -> float:
    return number_setting("SENTRY_PORT_FULL_REFRESH_HOURS")


def entry_key(name: str, host: str, organization: str) -> str:
    return f"{PREFIX}/{name}/{host.rstrip('/')}/{organization}"


def load_blob(instance: DagsterInstance, key: str, version: int) -> tuple[dict[str, Any] | None, str]:
    """The decoded entry (a dict written by `save_blob` with this `version`), or None and why there is none."""
    try:
        raw = instance.run_storage.get_cursor_values({key}).get(key)
    except Exception as exc:  # noqa: BLE001 - an unreadable entry is a full read
        return None, f"the kept state could not be read ({type(exc).__name__})"
    if not raw:
        return None, "nothing kept yet"
    try:
        data = json.loads(zlib.decompress(base64.b64decode(raw)))
    except Exception as exc:  # noqa: BLE001
        return None, f"the kept state is unreadable ({type(exc).__name__})"
    if not isinstance(data, dict) or data.get("version") != version:
        return None, "the kept state is from another version"
    stamp = data.get("full_refresh_at")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        return None, "the kept state is unreadable (full_refresh_at is not a time)"
    return data, ""


def save_blob(instance: DagsterInstance, key: str, version: int, data: dict[str, Any]) -> None:
    blob = json.dumps({**data, "version": version}, separators=(",", ":")).encode()
    instance.run_storage.set_cursor_values({key: base64.b64encode(zlib.compress(blob, 6)).decode()})


def plan(full_refresh_at: float | None, why_none: str, now: float | None = None,
         incremental_why: str = "what did not move is reused") -> tuple[bool, str]:
    """Whether this resync reads everything, and why."""
    now = time.time() if now is None else now
    if full_refresh_at is None:
        return True, why_none
    age = now - full_refresh_at
    if age < 0:
        # Written by a worker whose clock ran ahead: waiting for that date could postpone the refresh for ever.
        return True, f"the last full read is dated {-age / 3600:.1f} h in the future (a clock ahead): it is due now"
    if age >= full_refresh_hours() * 3600:
        return True, f"the last full read was {age / 3600:.1f} h ago (SENTRY_PORT_FULL_REFRESH_HOURS)"
    return False, incremental_why


@dataclass
class FetchState:
    """Handed to a `keeps_state` fetch: what it kept last time (`previous`, None when nothing usable: read
    everything) and whether this resync must read everything anyway (`full`, `why`). The fetch sets `kept` (what to
    keep for the next resync, JSON-able) and `summary` (what it reused and read, in words, for the asset's
    metadata); it must treat a `previous` of the wrong shape as None (an entry from another release of this code)."""

    previous: Any
    full: bool
    why: str
    kept: Any = None
    summary: str = ""

    @property
    def usable(self) -> Any:
        """What the fetch may reuse: `previous`, unless this resync reads everything."""
        return None if self.full else self.previous


_STATE_VERSION = 1


def begin(instance: DagsterInstance, key: str, now: float | None = None) -> tuple[FetchState, float | None]:
    """The state for this resync's fetch, and the time of the last full read it keeps (None: none)."""
    data, why_none = load_blob(instance, key, _STATE_VERSION)
    stamp = None if data is None else float(data["full_refresh_at"])
    full, why = plan(stamp, why_none, now)
    return FetchState(None if data is None else data.get("kept"), full, why), stamp


def finish(instance: DagsterInstance, key: str, state: FetchState, last_full: float | None,
           now: float | None = None) -> None:
    """Keeps what the fetch set, dated by this resync when it read everything."""
    now = time.time() if now is None else now
    stamp = now if state.full or last_full is None else last_full
    save_blob(instance, key, _STATE_VERSION, {"full_refresh_at": stamp, "kept": state.kept})
