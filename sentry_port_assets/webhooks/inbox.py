"""A durable SQLite inbox for Sentry webhook events.

The receiver appends every accepted event here and answers Sentry at once; a consumer (the Dagster
`sentry_webhook_sensor`) reads the pending events after its cursor, processes them, and marks them done
only when that processing succeeded. The file is the hand-off between two processes, so:

- WAL journal: the receiver keeps writing while the consumer reads (readers never block the writer), and a
  second process may open the same file at any time; `busy_timeout` covers the short write-write overlaps
  (`append` against `mark_done`).
- `synchronous=FULL`: every commit fsyncs the WAL before `append` returns. The receiver answers 202 right
  after `append`, and Sentry does not send an acknowledged event again, so an event lost to a power cut or an
  OS crash after the 202 would be lost for good. `NORMAL` is only safe against an application crash; it can
  roll back the last commits on power loss. The price is one fsync per event (milliseconds), far inside
  Sentry's 1 s budget.
- `id` is `INTEGER PRIMARY KEY AUTOINCREMENT`: it only grows, and is never reused even after rows are purged,
  so it is a safe cursor across receiver restarts.
- `request_id` is UNIQUE: Sentry's `Request-ID` sent twice (a retry, a replay) is stored once.

Nothing secret is stored: no headers, no signature; the body is the raw bytes Sentry signed (kept byte for
byte, so what the consumer parses is exactly what was verified).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from sentry_port_assets.config import inbox_path


PENDING = "pending"
DONE = "done"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id     TEXT    NOT NULL UNIQUE,
    resource       TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    issue_id       TEXT,
    received_at    TEXT    NOT NULL,
    hook_timestamp TEXT,
    body           BLOB    NOT NULL,
    status         TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    done_at        TEXT
);
CREATE INDEX IF NOT EXISTS events_status_id ON events (status, id);
CREATE TABLE IF NOT EXISTS failures (
    event_id   INTEGER PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    attempts   INTEGER NOT NULL,
    last_error TEXT    NOT NULL,
    last_run   TEXT,
    dead_at    TEXT
);
"""

# Pending events a consumer still applies: not dead-lettered.
_NOT_DEAD = "id NOT IN (SELECT event_id FROM failures WHERE dead_at IS NOT NULL)"

_COLUMNS = "id, request_id, resource, action, issue_id, received_at, hook_timestamp, body, status"


def default_inbox_path() -> Path:
    """`$SENTRY_WEBHOOK_INBOX`, else `state_dir()/webhook_inbox.sqlite` (config.py)."""
    return inbox_path()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class InboxEvent:
    """One stored webhook event, as the consumer gets it."""

    id: int  # the cursor: strictly increasing, never reused
    request_id: str  # Sentry's `Request-ID` (or `sha256:<body hash>` when Sentry sent none)
    resource: str  # "issue" | "comment"
    action: str  # issue: created/resolved/assigned/ignored/archived/unresolved; comment: created/updated/deleted
    issue_id: str | None  # issue: data.issue.id; comment: data.issue_id (always a string)
    received_at: datetime  # when the receiver stored it (UTC, aware)
    hook_timestamp: str | None  # `Sentry-Hook-Timestamp` as sent (epoch seconds), if any
    body: bytes  # the raw body Sentry signed
    status: str  # "pending" | "done"

    def payload(self) -> dict[str, Any]:
        """The parsed envelope: `{action, installation, data, actor}`."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def data(self) -> dict[str, Any]:
        """The envelope's `data` (for comments, the raw item the `comment` mapping resource maps)."""
        data: dict[str, Any] = self.payload().get("data") or {}
        return data


def _event(row: tuple[Any, ...]) -> InboxEvent:
    id_, request_id, resource, action, issue_id, received_at, hook_timestamp, body, status = row
    return InboxEvent(
        id=int(id_),
        request_id=request_id,
        resource=resource,
        action=action,
        issue_id=issue_id,
        received_at=datetime.fromisoformat(received_at),
        hook_timestamp=hook_timestamp,
        body=bytes(body),
        status=status,
    )


class Inbox:
    """The inbox file. Thread-safe (one connection behind a lock); other processes may open the same file.

    `with Inbox(path) as inbox: ...` closes the connection on exit; `close()` does too.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path) if path is not None else default_inbox_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Autocommit mode (isolation_level=None): every statement commits by itself, multi-statement writes
        # use an explicit BEGIN IMMEDIATE, so no transaction is ever left open between calls (an open read
        # transaction would pin the WAL and hide the other process's commits).
        self._conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"the webhook inbox {self.path} could not switch to WAL (journal_mode={mode})")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise

    # -- the receiver's side ---------------------------------------------------------------------------------

    def append(
        self,
        *,
        request_id: str,
        resource: str,
        action: str,
        issue_id: str | None,
        body: bytes,
        hook_timestamp: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Store one event as pending. False when an event with this `request_id` is already stored."""
        if not request_id:
            raise ValueError("request_id is required")
        when = (received_at or _utcnow()).astimezone(timezone.utc).isoformat()
        with self._lock:
            cur = self._conn.execute(
                # NOT EXISTS first: a conflicting INSERT would still consume an AUTOINCREMENT id (a gap in
                # the cursor); ON CONFLICT stays as the backstop against another process appending the same id.
                "INSERT INTO events (request_id, resource, action, issue_id, received_at, hook_timestamp, body)"
                " SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM events WHERE request_id = ?)"
                " ON CONFLICT (request_id) DO NOTHING",
                (request_id, resource, action, issue_id, when, hook_timestamp, sqlite3.Binary(body), request_id),
            )
            return cur.rowcount == 1

    # -- the consumer's side ---------------------------------------------------------------------------------

    def pending_after(self, cursor: int, limit: int = 1000) -> list[InboxEvent]:
        """Pending events with `id > cursor`, oldest first, at most `limit`. `cursor=0` gives all pending."""
        if limit <= 0:
            return []
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE status = ? AND id > ? AND {_NOT_DEAD} ORDER BY id LIMIT ?",
                (PENDING, int(cursor), int(limit)),
            ).fetchall()
        return [_event(row) for row in rows]

    def mark_done(self, ids: Iterable[int]) -> int:
        """Mark these events done (in one transaction); returns how many went from pending to done."""
        id_list = sorted({int(i) for i in ids})
        if not id_list:
            return 0
        when = _utcnow().isoformat()
        changed = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(id_list), 500):
                    chunk = id_list[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    cur = self._conn.execute(
                        f"UPDATE events SET status = ?, done_at = ? WHERE status = ? AND id IN ({marks})",
                        (DONE, when, PENDING, *chunk),
                    )
                    changed += cur.rowcount
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return changed

    def count_pending(self) -> int:
        """Events still to apply (dead letters excluded)."""
        with self._lock:
            return int(self._conn.execute(f"SELECT count(*) FROM events WHERE status = ? AND {_NOT_DEAD}",
                                          (PENDING,)).fetchone()[0])

    # -- failures and dead letters -------------------------------------------------------------------------------

    def record_failure(self, ids: Iterable[int], error: str, run_id: str) -> dict[int, int]:
        """One more failed attempt for each of these events, counted once per run (a sensor that evaluates the same
        failed run twice, after losing its cursor, does not count it twice); returns their attempt counts."""
        id_list = sorted({int(i) for i in ids})
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for event_id in id_list:
                    self._conn.execute(
                        "INSERT INTO failures (event_id, attempts, last_error, last_run) VALUES (?, 1, ?, ?) "
                        "ON CONFLICT (event_id) DO UPDATE SET attempts = attempts + "
                        "(CASE WHEN last_run IS excluded.last_run THEN 0 ELSE 1 END), "
                        "last_error = excluded.last_error, last_run = excluded.last_run", (event_id, error, run_id))
                rows = self._conn.execute(
                    f"SELECT event_id, attempts FROM failures WHERE event_id IN ({','.join('?' * len(id_list))})",
                    id_list).fetchall() if id_list else []
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return {int(i): int(n) for i, n in rows}

    def dead_letter(self, ids: Iterable[int], error: str) -> None:
        """Set these events aside: no longer pending for the consumer, kept (with why) for an operator to look at."""
        when = _utcnow().isoformat()
        with self._lock:
            for event_id in sorted({int(i) for i in ids}):
                self._conn.execute(
                    "INSERT INTO failures (event_id, attempts, last_error, dead_at) VALUES (?, 0, ?, ?) "
                    "ON CONFLICT (event_id) DO UPDATE SET dead_at = excluded.dead_at, last_error = excluded.last_error",
                    (event_id, error, when))

    def dead_letters(self, limit: int = 100) -> list[tuple[InboxEvent, int, str, datetime]]:
        """Dead-lettered events, newest first: (event, attempts, last error, when set aside)."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join('e.' + c.strip() for c in _COLUMNS.split(','))}, f.attempts, f.last_error, "
                "f.dead_at FROM events e JOIN failures f ON f.event_id = e.id WHERE f.dead_at IS NOT NULL "
                "ORDER BY f.dead_at DESC, e.id DESC LIMIT ?", (int(limit),)).fetchall()
        return [(_event(row[:9]), int(row[9]), str(row[10]), datetime.fromisoformat(row[11])) for row in rows]

    def count_dead(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM failures WHERE dead_at IS NOT NULL").fetchone()[0])

    def last_received_at(self) -> datetime | None:
        """When the newest stored event arrived (None for an empty inbox)."""
        with self._lock:
            row = self._conn.execute("SELECT received_at FROM events ORDER BY id DESC LIMIT 1").fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def last_id(self) -> int:
        """The highest id ever assigned (0 for a new inbox); survives purges."""
        with self._lock:
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0

    def get(self, ids: Iterable[int]) -> list[InboxEvent]:
        """These events, whatever their status, oldest first."""
        id_list = sorted({int(i) for i in ids})
        if not id_list:
            return []
        events: list[InboxEvent] = []
        with self._lock:
            for start in range(0, len(id_list), 500):
                chunk = id_list[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE id IN ({marks}) ORDER BY id", chunk
                ).fetchall()
                events.extend(_event(row) for row in rows)
        return events

    def received_since(self, when: datetime, limit: int = 1000) -> list[InboxEvent]:
        """Events received at or after `when`, done or pending (not dead-lettered), oldest first, at most `limit`:
        what must be applied again after a resync that began reading Sentry at `when`."""
        cutoff = when.astimezone(timezone.utc).isoformat()
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE received_at >= ? AND {_NOT_DEAD} ORDER BY id LIMIT ?",
                (cutoff, limit)).fetchall()
        return [_event(row) for row in rows]

    def purge_done(self, older_than: datetime) -> int:
        """Delete done events marked done before `older_than` (retention); returns how many were deleted.

        A purged event's `request_id` is forgotten, so a replay of it after the purge would be stored again.
        """
        with self._lock:
            cutoff = older_than.astimezone(timezone.utc).isoformat()
            cur = self._conn.execute("DELETE FROM events WHERE status = ? AND done_at < ?", (DONE, cutoff))
            self._conn.execute("DELETE FROM failures WHERE event_id NOT IN (SELECT id FROM events)")
            return cur.rowcount

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
