"""A durable inbox for Sentry webhook events: a SQLite file (the default) or a PostgreSQL database.

The receiver appends every accepted event here and answers Sentry at once; a consumer (the Dagster
`sentry_webhook_sensor`) reads the pending events, processes them, and marks them done only when that processing
succeeded. `SENTRY_WEBHOOK_INBOX` is a file path, or a `postgresql://user:password@host/db` URL so that the receiver
and the Dagster daemon can run on different machines or pods. One implementation (SQLAlchemy Core) over both:

- SQLite: WAL journal (the receiver keeps writing while the consumer reads, and a second process may open the same
  file at any time), `busy_timeout` for the short write-write overlaps, and `synchronous=FULL`: every commit
  fsyncs before `append` returns. The receiver answers 202 right after `append`, and Sentry does not send an
  acknowledged event again, so an event lost to a power cut after the 202 would be lost for good. Writes take the
  lock at once (`BEGIN IMMEDIATE`), so two writers never deadlock upgrading a read lock.
- PostgreSQL: a commit is durable when it returns (the server's default `synchronous_commit`); concurrent
  receivers are fine (the `request_id` unique index decides).
- `id` only grows and is never reused, even after rows are purged. `request_id` is UNIQUE: Sentry's `Request-ID`
  sent twice (a retry, a replay) is stored once.
- `installation` is the envelope's `installation.uuid`: one receiver serves several Sentry installations, and each
  instance's consumer reads only its own (`installation=` on the reading methods; None reads every event). Inboxes
  made before the column existed get it when first opened (their events have none, and only a consumer without an
  installation reads them).

Nothing secret is stored: no headers, no signature; the body is the raw bytes Sentry signed (kept byte for
byte, so what the consumer parses is exactly what was verified). A URL's password is never shown: `description`
hides it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    case,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url

from sentry_port_assets.config import inbox_location

PENDING = "pending"
DONE = "done"
# Serialises the schema's creation when the receiver and the daemon open a new PostgreSQL inbox at once.
_SCHEMA_LOCK = 0x5E17_0B0C

_metadata = MetaData()
events = Table(
    "events", _metadata,
    # SQLite's AUTOINCREMENT needs INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", Text, nullable=False, unique=True),
    Column("resource", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("issue_id", Text),
    Column("received_at", Text, nullable=False),  # ISO 8601, UTC: sorts as text
    Column("hook_timestamp", Text),
    Column("body", LargeBinary, nullable=False),
    Column("installation", Text),  # added after the first release: `_migrate` adds it to older inboxes
    Column("status", Text, nullable=False, server_default=PENDING),
    Column("done_at", Text),
    CheckConstraint("status IN ('pending', 'done')", name="events_status"),
    Index("events_status_id", "status", "id"),
    sqlite_autoincrement=True,
)
_BY_INSTALLATION = Index("events_installation_status_id", events.c.installation, events.c.status, events.c.id)
failures = Table(
    "failures", _metadata,
    Column("event_id", BigInteger().with_variant(Integer, "sqlite"), ForeignKey("events.id", ondelete="CASCADE"),
           primary_key=True, autoincrement=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("last_run", Text),
    Column("dead_at", Text),
)
_COLUMNS = [events.c.id, events.c.request_id, events.c.resource, events.c.action, events.c.issue_id,
            events.c.received_at, events.c.hook_timestamp, events.c.body, events.c.status, events.c.installation]
# Pending events a consumer still applies: not dead-lettered.
_NOT_DEAD = events.c.id.not_in(select(failures.c.event_id).where(failures.c.dead_at.is_not(None)))


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def default_inbox_path() -> str:
    """`$SENTRY_WEBHOOK_INBOX` (a file or a postgresql:// URL), else `state_dir()/webhook_inbox.sqlite`."""
    return inbox_location()


def inbox_exists(location: str | Path) -> bool:
    """Whether there is an inbox to read: the SQLite file exists (a database server is assumed to)."""
    return is_url(location) or Path(location).exists()


def describe(location: str | Path) -> str:
    """The location as it may be shown: a URL's password hidden."""
    return make_url(str(location)).render_as_string(hide_password=True) if is_url(location) else str(location)


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
    installation: str | None = None  # the envelope's installation.uuid (None: stored before it was recorded)

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
    id_, request_id, resource, action, issue_id, received_at, hook_timestamp, body, status, installation = row
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
        installation=installation,
    )


def _of(installation: str | None) -> list[Any]:
    """The WHERE clause restricting a read to one installation's events (none: every event)."""
    return [] if installation is None else [events.c.installation == installation]


def _migrate(conn: Connection) -> None:
    """Brings an inbox made by an earlier release up to this schema (inside the schema lock; a new inbox got the
    column and its index from `create_all`, and both are added in one transaction, so neither exists alone)."""
    if "installation" not in {c["name"] for c in inspect(conn).get_columns("events")}:
        conn.execute(text("ALTER TABLE events ADD COLUMN installation TEXT"))
        _BY_INSTALLATION.create(conn)


class Inbox:
    """The inbox (a SQLite file or a PostgreSQL database). Thread-safe; other processes may open it too.

    `with Inbox(location) as inbox: ...` closes its connections on exit; `close()` does too.
    """

    def __init__(self, location: str | Path | None = None, *, busy_timeout_s: float = 10.0) -> None:
        self.location = str(location) if location is not None else default_inbox_path()
        self.description = describe(self.location)
        if is_url(self.location):
            self.path: Path | None = None
            url = make_url(self.location)
            if url.get_backend_name() != "postgresql":
                raise ValueError(f"SENTRY_WEBHOOK_INBOX={self.description}: a file path or a postgresql:// URL")
            self._engine = create_engine(url.set(drivername="postgresql+psycopg"), pool_size=2, max_overflow=4,
                                         pool_pre_ping=True)
        else:
            self.path = Path(self.location)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(f"sqlite:///{self.path}",
                                         connect_args={"timeout": busy_timeout_s, "check_same_thread": False})
            _sqlite_pragmas(self._engine, busy_timeout_s)
        self.sqlite = self.path is not None
        try:
            with self._engine.begin() as conn:
                if not self.sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                _metadata.create_all(conn)
                _migrate(conn)
        except BaseException:
            self._engine.dispose()
            raise

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _insert(self, table: Table) -> Any:
        return (sqlite_insert if self.sqlite else pg_insert)(table)

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
        installation: str | None = None,
    ) -> bool:
        """Store one event as pending. False when an event with this `request_id` is already stored."""
        if not request_id:
            raise ValueError("request_id is required")
        when = (received_at or _utcnow()).astimezone(timezone.utc).isoformat()
        with self._tx() as conn:
            # Looked up first (under the write lock on SQLite): a refused INSERT would still consume an AUTOINCREMENT
            # id there. ON CONFLICT stays as the backstop against another process appending the same id.
            if conn.execute(select(events.c.id).where(events.c.request_id == request_id)).first() is not None:
                return False
            stored = conn.execute(self._insert(events).values(
                request_id=request_id, resource=resource, action=action, issue_id=issue_id, received_at=when,
                hook_timestamp=hook_timestamp, body=body, installation=installation).on_conflict_do_nothing(index_elements=["request_id"])
                .returning(events.c.id)).first()
            return stored is not None

    # -- the consumer's side ---------------------------------------------------------------------------------

    def _select(self, *where: Any, limit: int | None = None) -> list[InboxEvent]:
        query = select(*_COLUMNS).where(*where).order_by(events.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as conn:
            return [_event(tuple(row)) for row in conn.execute(query)]

    def pending_after(self, cursor: int, limit: int = 1000, installation: str | None = None) -> list[InboxEvent]:
        """Pending events with `id > cursor`, oldest first, at most `limit`. `cursor=0` gives all pending.
        `installation`: only that Sentry installation's events."""
        if limit <= 0:
            return []
        return self._select(events.c.status == PENDING, events.c.id > cursor, _NOT_DEAD, *_of(installation),
                            limit=limit)

    def mark_done(self, ids: Iterable[int]) -> int:
        """Mark these events done (in one transaction); returns how many went from pending to done."""
        id_list = sorted({int(i) for i in ids})
        if not id_list:
            return 0
        when, changed = _utcnow().isoformat(), 0
        with self._tx() as conn:
            for chunk in _chunks(id_list):
                changed += conn.execute(events.update().where(events.c.status == PENDING, events.c.id.in_(chunk))
                                        .values(status=DONE, done_at=when)).rowcount
        return changed

    def count_pending(self, installation: str | None = None) -> int:
        """Events still to apply (dead letters excluded); `installation`: of that installation only."""
        with self._tx() as conn:
            return int(conn.execute(select(func.count()).select_from(events)
                                    .where(events.c.status == PENDING, _NOT_DEAD, *_of(installation))).scalar_one())

    def pending_by_installation(self) -> dict[str | None, int]:
        """Events still to apply, counted per installation (None: events stored before installations were)."""
        with self._tx() as conn:
            rows = conn.execute(select(events.c.installation, func.count()).where(events.c.status == PENDING,
                                                                                   _NOT_DEAD)
                                .group_by(events.c.installation)).all()
        return {installation: int(n) for installation, n in rows}

    # -- failures and dead letters -------------------------------------------------------------------------------

    def record_failure(self, ids: Iterable[int], error: str, run_id: str) -> dict[int, int]:
        """One more failed attempt for each of these events, counted once per run (a sensor that evaluates the same
        failed run twice, after losing its cursor, does not count it twice); returns their attempt counts."""
        id_list = sorted({int(i) for i in ids})
        if not id_list:
            return {}
        with self._tx() as conn:
            for event_id in id_list:
                insert = self._insert(failures).values(event_id=event_id, attempts=1, last_error=error,
                                                       last_run=run_id)
                same_run = failures.c.last_run.is_not_distinct_from(insert.excluded.last_run)
                conn.execute(insert.on_conflict_do_update(index_elements=["event_id"], set_={
                    "attempts": failures.c.attempts + case((same_run, 0), else_=1),
                    "last_error": insert.excluded.last_error, "last_run": insert.excluded.last_run}))
            rows = conn.execute(select(failures.c.event_id, failures.c.attempts)
                                .where(failures.c.event_id.in_(id_list))).all()
        return {int(i): int(n) for i, n in rows}

    def dead_letter(self, ids: Iterable[int], error: str) -> None:
        """Set these events aside: no longer pending for the consumer, kept (with why) for an operator to look at."""
        when = _utcnow().isoformat()
        with self._tx() as conn:
            for event_id in sorted({int(i) for i in ids}):
                insert = self._insert(failures).values(event_id=event_id, attempts=0, last_error=error, dead_at=when)
                conn.execute(insert.on_conflict_do_update(index_elements=["event_id"], set_={
                    "dead_at": insert.excluded.dead_at, "last_error": insert.excluded.last_error}))

    def dead_letters(self, limit: int = 100) -> list[tuple[InboxEvent, int, str, datetime]]:
        """Dead-lettered events, newest first: (event, attempts, last error, when set aside)."""
        query = (select(*_COLUMNS, failures.c.attempts, failures.c.last_error, failures.c.dead_at)
                 .join(failures, failures.c.event_id == events.c.id).where(failures.c.dead_at.is_not(None))
                 .order_by(failures.c.dead_at.desc(), events.c.id.desc()).limit(int(limit)))
        with self._tx() as conn:
            rows = [tuple(row) for row in conn.execute(query)]
        width = len(_COLUMNS)
        return [(_event(row[:width]), int(row[width]), str(row[width + 1]), datetime.fromisoformat(row[width + 2]))
                for row in rows]

    def count_dead(self, installation: str | None = None) -> int:
        """Dead-lettered events; `installation`: of that installation only."""
        with self._tx() as conn:
            return int(conn.execute(select(func.count()).select_from(failures)
                                    .join(events, failures.c.event_id == events.c.id)
                                    .where(failures.c.dead_at.is_not(None), *_of(installation))).scalar_one())

    def last_received_at(self) -> datetime | None:
        """When the newest stored event arrived (None for an empty inbox)."""
        with self._tx() as conn:
            row = conn.execute(select(events.c.received_at).order_by(events.c.id.desc()).limit(1)).first()
        return datetime.fromisoformat(row[0]) if row else None

    def last_id(self) -> int:
        """The highest id ever assigned (0 for a new inbox); survives purges."""
        with self._tx() as conn:
            if self.sqlite:
                row = conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'events'")).first()
            else:
                row = conn.execute(text("SELECT pg_sequence_last_value(pg_get_serial_sequence('events', 'id'))")
                                   ).first()
        return int(row[0]) if row and row[0] is not None else 0

    def get(self, ids: Iterable[int]) -> list[InboxEvent]:
        """These events, whatever their status, oldest first."""
        id_list = sorted({int(i) for i in ids})
        found: list[InboxEvent] = []
        for chunk in _chunks(id_list):
            found.extend(self._select(events.c.id.in_(chunk)))
        return found

    def received_since(self, when: datetime, limit: int = 1000, installation: str | None = None) -> list[InboxEvent]:
        """Events received at or after `when`, done or pending (not dead-lettered), oldest first, at most `limit`:
        what must be applied again after a resync that began reading Sentry at `when`. `installation`: only that
        installation's events."""
        cutoff = when.astimezone(timezone.utc).isoformat()
        return self._select(events.c.received_at >= cutoff, _NOT_DEAD, *_of(installation), limit=limit)

    def purge_done(self, older_than: datetime) -> int:
        """Delete done events marked done before `older_than` (retention); returns how many were deleted.

        A purged event's `request_id` is forgotten, so a replay of it after the purge would be stored again.
        """
        cutoff = older_than.astimezone(timezone.utc).isoformat()
        with self._tx() as conn:
            purged = conn.execute(events.delete().where(events.c.status == DONE, events.c.done_at < cutoff)).rowcount
            conn.execute(failures.delete().where(failures.c.event_id.not_in(select(events.c.id))))
        return purged

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _sqlite_pragmas(engine: Engine, busy_timeout_s: float) -> None:
    """WAL, FULL sync and a busy timeout on every connection; transactions begin with the write lock taken
    (SQLAlchemy's recipe for pysqlite: the driver's own transaction handling off, SQLAlchemy emits BEGIN)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"the webhook inbox could not switch to WAL (journal_mode={mode})")
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
