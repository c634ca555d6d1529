"""The durable webhook inbox on its own: cursor, dedup, done marks, threads, a second process, reopen."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sentry_port_assets.webhooks.inbox import Inbox, InboxEvent, default_inbox_path


def _body(issue_id: str, action: str = "resolved") -> bytes:
    return json.dumps({"action": action, "data": {"issue": {"id": issue_id}}}, separators=(",", ":")).encode()


def _append(inbox: Inbox, request_id: str, issue_id: str = "1", action: str = "resolved") -> bool:
    return inbox.append(
        request_id=request_id, resource="issue", action=action, issue_id=issue_id, body=_body(issue_id, action)
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each inbox test runs on both backends: a SQLite file, and a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "inbox.sqlite")
    return request.getfixturevalue("postgres").database()


def test_append_dedups_and_pending_after_follows_the_cursor(location: str) -> None:
    with Inbox(location) as inbox:
        assert inbox.count_pending() == 0 and inbox.last_id() == 0
        assert _append(inbox, "r1", "10") is True
        assert _append(inbox, "r2", "11") is True
        assert _append(inbox, "r1", "99") is False  # same Request-ID: not stored again, first one kept
        assert _append(inbox, "r3", "12", action="assigned") is True
        assert inbox.count_pending() == 3

        events = inbox.pending_after(0, limit=100)
        assert [e.request_id for e in events] == ["r1", "r2", "r3"]
        assert [e.issue_id for e in events] == ["10", "11", "12"]
        ids = [e.id for e in events]
        assert ids == [1, 2, 3]  # the refused duplicate did not burn an id: no gaps in the cursor
        first = events[0]
        assert isinstance(first, InboxEvent)
        assert first.resource == "issue" and first.action == "resolved" and first.status == "pending"
        assert first.body == _body("10")
        assert first.payload() == {"action": "resolved", "data": {"issue": {"id": "10"}}}
        assert first.data == {"issue": {"id": "10"}}
        assert first.received_at.tzinfo is not None
        assert abs(datetime.now(timezone.utc) - first.received_at) < timedelta(minutes=1)

        assert [e.request_id for e in inbox.pending_after(ids[0], limit=100)] == ["r2", "r3"]
        assert [e.request_id for e in inbox.pending_after(0, limit=2)] == ["r1", "r2"]
        assert inbox.pending_after(ids[-1], limit=100) == []
        assert inbox.pending_after(0, limit=0) == []

        assert inbox.mark_done([ids[1]]) == 1
        assert inbox.mark_done([ids[1]]) == 0  # already done
        assert inbox.mark_done([]) == 0
        assert inbox.count_pending() == 2
        assert [e.request_id for e in inbox.pending_after(0, limit=100)] == ["r1", "r3"]
        assert [e.status for e in inbox.get(ids)] == ["pending", "done", "pending"]
        assert inbox.last_id() == ids[-1]


def test_file_is_wal_and_commits_are_fsynced(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite"
    with Inbox(path) as inbox:
        with inbox._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    finally:
        other.close()


def test_reopen_keeps_events_and_the_cursor_never_goes_back(location: str) -> None:
    path = location
    with Inbox(path) as inbox:
        for n in range(3):
            _append(inbox, f"r{n}", str(n))
        first_ids = [e.id for e in inbox.pending_after(0, 100)]
        inbox.mark_done(first_ids)
        # retention: purge the done events; the ids they had must not be handed out again
        assert inbox.purge_done(datetime.now(timezone.utc) + timedelta(seconds=1)) == 3
        assert inbox.get(first_ids) == []
    with Inbox(path) as reopened:
        assert reopened.last_id() == max(first_ids)
        assert _append(reopened, "r9", "9") is True
        (event,) = reopened.pending_after(max(first_ids), 100)
        assert event.id > max(first_ids)
        assert event.request_id == "r9"


def test_threads_append_concurrently_each_request_id_once(location: str) -> None:
    with Inbox(location) as inbox:
        results: list[bool] = []
        results_lock = threading.Lock()
        start = threading.Barrier(8)

        def worker(t: int) -> None:
            start.wait()
            for n in range(40):
                # every thread also tries the shared ids "shared-0".."shared-9"
                rid = f"shared-{n % 10}" if n % 4 == 0 else f"t{t}-{n}"
                ok = _append(inbox, rid, str(n))
                with results_lock:
                    results.append(ok)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        unique = 8 * 30 + len({f"shared-{n % 10}" for n in range(0, 40, 4)})
        assert sum(results) == unique
        assert inbox.count_pending() == unique
        events = inbox.pending_after(0, 10_000)
        assert len({e.request_id for e in events}) == unique


def test_another_process_reads_and_marks_done_while_the_receiver_holds_the_file(location: str) -> None:
    path = location
    with Inbox(path) as receiver_side:
        for n in range(5):
            _append(receiver_side, f"r{n}", str(n))
        consumer = textwrap.dedent(
            f"""
            import json, sys
            from sentry_port_assets.webhooks.inbox import Inbox
            with Inbox({str(path)!r}) as inbox:
                events = inbox.pending_after(0, 3)
                done = inbox.mark_done([e.id for e in events])
                appended = inbox.append(request_id="from-child", resource="comment", action="created",
                                        issue_id="7", body=b'{{"action":"created","data":{{"issue_id":"7"}}}}')
                print(json.dumps({{"seen": [e.request_id for e in events], "done": done, "appended": appended}}))
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", consumer], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        report = json.loads(out.strip().splitlines()[-1])
        assert report == {"seen": ["r0", "r1", "r2"], "done": 3, "appended": True}
        # the receiver's open connection sees the other process's commits right away
        assert receiver_side.count_pending() == 3
        assert [e.request_id for e in receiver_side.pending_after(0, 100)] == ["r3", "r4", "from-child"]
        assert _append(receiver_side, "from-child") is False


def test_default_path_from_env_else_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_WEBHOOK_INBOX", str(tmp_path / "custom" / "inbox.db"))
    assert default_inbox_path() == str(tmp_path / "custom" / "inbox.db")
    with Inbox() as inbox:
        assert inbox.path == tmp_path / "custom" / "inbox.db"
        assert inbox.path.exists()
    monkeypatch.delenv("SENTRY_WEBHOOK_INBOX")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert default_inbox_path() == str(tmp_path / "dagster_home" / "sentry_port" / "webhook_inbox.sqlite")


def test_append_requires_a_request_id(location: str) -> None:
    with Inbox(location) as inbox:
        with pytest.raises(ValueError, match="request_id"):
            _append(inbox, "")
        assert inbox.count_pending() == 0


def test_failures_dead_letters_replays_and_purges_on_either_backend(location: str) -> None:
    with Inbox(location) as inbox:
        for n in range(4):
            _append(inbox, f"r{n}", str(n))
        ids = [e.id for e in inbox.pending_after(0, 100)]
        assert inbox.record_failure(ids[:2], "boom", "run-1") == {ids[0]: 1, ids[1]: 1}
        assert inbox.record_failure(ids[:1], "boom", "run-1") == {ids[0]: 1}, "one run counts once"
        assert inbox.record_failure(ids[:1], "boom again", "run-2") == {ids[0]: 2}
        inbox.dead_letter([ids[0]], "failed alone")
        assert inbox.count_dead() == 1 and inbox.count_pending() == 3
        [(dead, attempts, error, when)] = inbox.dead_letters()
        assert (dead.id, attempts, error) == (ids[0], 2, "failed alone") and when.tzinfo is not None
        assert [e.id for e in inbox.received_since(datetime.now(timezone.utc) - timedelta(minutes=1))] == ids[1:]
        assert inbox.received_since(datetime.now(timezone.utc) + timedelta(minutes=1)) == []
        inbox.mark_done(ids[1:3])
        assert [e.id for e in inbox.received_since(datetime.now(timezone.utc) - timedelta(minutes=1))] == ids[1:], \
            "done events are replayed too"
        assert inbox.purge_done(datetime.now(timezone.utc) + timedelta(seconds=1)) == 2
        assert inbox.count_pending() == 1 and inbox.last_received_at() is not None


def test_a_database_url_never_shows_its_password(postgres, monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres.database().replace("postgres@", "postgres:s3cret-pw@")
    with Inbox(url) as inbox:
        assert "s3cret-pw" not in inbox.description and "***" in inbox.description
    monkeypatch.setenv("SENTRY_WEBHOOK_INBOX", url)
    from sentry_port_assets.cli import main

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["webhooks", "status"])
    assert "s3cret-pw" not in out.getvalue() and "0 pending" in out.getvalue()
