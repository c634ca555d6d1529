"""The Sentry webhook receiver over real HTTP on loopback, and the `webhooks serve` command."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.cli import main as webhooks_main
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets.webhooks.receiver import (
    HANDLED_ACTIONS,
    MAX_BODY_BYTES,
    WebhookSecretMissing,
    _read_body,
    create_receiver,
    sign,
)

SECRET = "test-client-secret-5f1c9a"
URL_PATH = "/webhooks/sentry"

# The seed's sample payloads (seed/sentry-port-integration.md, "Let's Test It").
SEED_ISSUE_EVENT: dict[str, Any] = {
    "action": "created",
    "installation": {"uuid": "54a3e698-f389-4d86-b9f8-50093a228449"},
    "data": {
        "issue": {
            "id": "4253613038",
            "shareId": "None",
            "shortId": "PYTHON-B",
            "title": "NameError: name 'total' is not defined",
            "culprit": "__main__ in <module>",
            "permalink": "None",
            "logger": "None",
            "level": "error",
            "status": "unresolved",
            "statusDetails": {},
            "substatus": "new",
            "isPublic": False,
            "platform": "python",
            "project": {"id": "4504989602480128", "name": "python", "slug": "python", "platform": "python"},
            "type": "error",
            "metadata": {
                "value": "name 'total' is not defined",
                "type": "NameError",
                "filename": "sentry.py",
                "function": "<module>",
                "display_title_with_tree_label": False,
            },
            "numComments": 0,
            "assignedTo": "None",
            "isBookmarked": False,
            "isSubscribed": False,
            "subscriptionDetails": "None",
            "hasSeen": False,
            "annotations": [],
            "issueType": "error",
            "issueCategory": "error",
            "isUnhandled": True,
            "count": "1",
            "userCount": 0,
            "firstSeen": "2023-06-15T17:10:09.914274Z",
            "lastSeen": "2023-06-15T17:10:09.914274Z",
        }
    },
    "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
}

SEED_COMMENT_EVENT: dict[str, Any] = {
    "action": "created",
    "installation": {"uuid": "d5a2de51-0138-496a-8e79-c17747c3a40d"},
    "data": {
        "comment_id": "1729635072",
        "issue_id": "4253613038",
        "project_slug": "python",
        "timestamp": "2023-06-15T17:15:53.383120Z",
        "comment": "Hello admin please take a look at this",
    },
    "actor": {"type": "user", "id": 2683666, "name": "user@domain.com"},
}


def sentry_bytes(payload: Any) -> bytes:
    """Serialised the way Sentry does: compact separators, non-ASCII as \\uXXXX escapes."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def headers(body: bytes, resource: str = "issue", request_id: str | None = "req-1", **extra: str) -> dict[str, str]:
    out = {
        "Content-Type": "application/json",
        "Sentry-Hook-Resource": resource,
        "Sentry-Hook-Timestamp": str(int(time.time())),
        "Sentry-Hook-Signature": sign(SECRET, body),
    }
    if request_id is not None:
        out["Request-ID"] = request_id
    out.update(extra)
    return out


class Receiver:
    def __init__(self, server: ServerThread, inbox: Inbox) -> None:
        self.server = server
        self.inbox = inbox
        self.url = server.url + URL_PATH

    def post(self, body: bytes, hdrs: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url, content=body, headers=hdrs, timeout=10)

    def health(self) -> dict[str, Any]:
        r = httpx.get(self.server.url + "/healthz", timeout=10)
        assert r.status_code == 200
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Inbox(tmp_path / "inbox.sqlite") as inbox, ServerThread(create_receiver(SECRET, inbox)) as server:
        yield Receiver(server, inbox)


def nothing_stored(inbox: Inbox) -> bool:
    return inbox.count_pending() == 0 and inbox.last_id() == 0


# -- accepted events ---------------------------------------------------------------------------------------------


def test_seed_issue_event_is_stored(receiver: Receiver) -> None:
    body = sentry_bytes(SEED_ISSUE_EVENT)
    sent = str(int(time.time()))
    r = receiver.post(body, headers(body, "issue", "req-issue", **{"Sentry-Hook-Timestamp": sent}))
    assert r.status_code == 202
    assert r.json() == {"status": "accepted", "request_id": "req-issue"}
    (event,) = receiver.inbox.pending_after(0, 10)
    assert (event.resource, event.action, event.issue_id, event.request_id) == (
        "issue",
        "created",
        "4253613038",
        "req-issue",
    )
    assert event.body == body
    assert event.hook_timestamp == sent
    assert event.payload() == SEED_ISSUE_EVENT
    assert receiver.health() == {"status": "ok", "pending": 1, "dead_lettered": 0,
                                 "last_event_received_at": event.received_at.isoformat()}


def test_seed_comment_event_is_stored_with_its_issue_id(receiver: Receiver) -> None:
    body = sentry_bytes(SEED_COMMENT_EVENT)
    r = receiver.post(body, headers(body, "comment", "req-comment"))
    assert r.status_code == 202
    (event,) = receiver.inbox.pending_after(0, 10)
    assert (event.resource, event.action, event.issue_id) == ("comment", "created", "4253613038")
    assert event.data == SEED_COMMENT_EVENT["data"]


def test_every_handled_action_is_stored(receiver: Receiver) -> None:
    sent = []
    for resource, actions in sorted(HANDLED_ACTIONS.items()):
        for action in sorted(actions):
            payload = copy.deepcopy(SEED_ISSUE_EVENT if resource == "issue" else SEED_COMMENT_EVENT)
            payload["action"] = action
            if resource == "comment":
                payload["data"]["issue_id"] = 4253613038  # an integer id is stored as a string
            body = sentry_bytes(payload)
            r = receiver.post(body, headers(body, resource, f"{resource}-{action}"))
            assert r.status_code == 202, (resource, action, r.text)
            sent.append((resource, action))
    stored = [(e.resource, e.action) for e in receiver.inbox.pending_after(0, 100)]
    assert stored == sent
    assert ("issue", "archived") in stored and len(stored) == 9
    assert {e.issue_id for e in receiver.inbox.pending_after(0, 100)} == {"4253613038"}


def test_non_ascii_payload_verifies_against_the_raw_bytes(receiver: Receiver) -> None:
    payload = copy.deepcopy(SEED_ISSUE_EVENT)
    payload["data"]["issue"]["title"] = "UnicodeError: café 日本"
    escaped = sentry_bytes(payload)
    assert b"caf\\u00e9 \\u65e5\\u672c" in escaped  # really Sentry's escaped form
    raw_utf8 = json.dumps(payload, ensure_ascii=False).encode("utf-8")  # default separators, raw UTF-8
    assert "é".encode() in raw_utf8
    for request_id, body in (("escaped", escaped), ("utf8", raw_utf8)):
        r = receiver.post(body, headers(body, "issue", request_id))
        assert r.status_code == 202, (request_id, r.text)
    events = receiver.inbox.pending_after(0, 10)
    assert [e.body for e in events] == [escaped, raw_utf8]  # byte for byte what was signed
    assert [e.payload()["data"]["issue"]["title"] for e in events] == ["UnicodeError: café 日本"] * 2


def test_replayed_request_id_is_stored_once(receiver: Receiver) -> None:
    body = sentry_bytes(SEED_ISSUE_EVENT)
    first = receiver.post(body, headers(body, "issue", "same-id"))
    again = receiver.post(body, headers(body, "issue", "same-id"))
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert (again.status_code, again.json()["status"]) == (202, "duplicate")
    assert receiver.inbox.count_pending() == 1 and receiver.inbox.last_id() == 1


def test_without_request_id_an_identical_body_counts_once(receiver: Receiver) -> None:
    body = sentry_bytes(SEED_ISSUE_EVENT)
    assert receiver.post(body, headers(body, request_id=None)).json()["status"] == "accepted"
    assert receiver.post(body, headers(body, request_id=None)).json()["status"] == "duplicate"
    (event,) = receiver.inbox.pending_after(0, 10)
    assert event.request_id.startswith("sha256:")


# -- refused events ----------------------------------------------------------------------------------------------


def test_tampered_body_is_refused_and_nothing_stored(receiver: Receiver) -> None:
    body = sentry_bytes(SEED_ISSUE_EVENT)
    hdrs = headers(body)
    tampered = body.replace(b'"status":"unresolved"', b'"status":"resolved"')
    assert tampered != body
    r = receiver.post(tampered, hdrs)
    assert r.status_code == 401
    # a re-serialised body (what Ocean verified) does not carry Sentry's signature either
    reserialised = json.dumps(json.loads(body)).encode()
    assert receiver.post(reserialised, hdrs).status_code == 401
    # signed with another secret
    other = {**hdrs, "Sentry-Hook-Signature": sign("another-secret", body)}
    assert receiver.post(body, other).status_code == 401
    assert nothing_stored(receiver.inbox)
    assert receiver.post(body, hdrs).status_code == 202  # the genuine one still goes through


@pytest.mark.parametrize("signature", [None, "", "not-hex", "00" * 32])
def test_missing_or_bogus_signature_is_refused(receiver: Receiver, signature: str | None) -> None:
    body = sentry_bytes(SEED_ISSUE_EVENT)
    hdrs = headers(body)
    if signature is None:
        del hdrs["Sentry-Hook-Signature"]
    else:
        hdrs["Sentry-Hook-Signature"] = signature
    r = receiver.post(body, hdrs)
    assert r.status_code == 401
    assert nothing_stored(receiver.inbox)


def test_uppercase_hex_signature_is_accepted(receiver: Receiver) -> None:
    body = sentry_bytes(SEED_ISSUE_EVENT)
    hdrs = headers(body)
    hdrs["Sentry-Hook-Signature"] = hdrs["Sentry-Hook-Signature"].upper()
    assert receiver.post(body, hdrs).status_code == 202


@pytest.mark.parametrize(
    "body",
    [b'{"action":"created","data":', b"\xff\xfe{}", b'["not","an","object"]', b""],
    ids=["truncated", "not-utf8", "array", "empty"],
)
def test_malformed_json_is_400(receiver: Receiver, body: bytes) -> None:
    r = receiver.post(body, headers(body))
    assert r.status_code == 400
    assert nothing_stored(receiver.inbox)


def test_handled_event_without_issue_id_is_400(receiver: Receiver) -> None:
    for resource, payload in (
        ("issue", {"action": "resolved", "data": {"issue": {"title": "x"}}}),
        ("comment", {"action": "created", "data": {"comment_id": "1"}}),
    ):
        body = sentry_bytes(payload)
        r = receiver.post(body, headers(body, resource, f"no-id-{resource}"))
        assert r.status_code == 400 and "issue" in r.json()["detail"]
    assert nothing_stored(receiver.inbox)


def test_body_over_one_mib_is_413(receiver: Receiver) -> None:
    def padded(size: int) -> bytes:
        payload = copy.deepcopy(SEED_ISSUE_EVENT)
        payload["data"]["issue"]["culprit"] = ""
        base = len(sentry_bytes(payload))
        payload["data"]["issue"]["culprit"] = "x" * (size - base)
        body = sentry_bytes(payload)
        assert len(body) == size
        return body

    at_limit = padded(MAX_BODY_BYTES)
    over = padded(MAX_BODY_BYTES + 1)
    # declared by Content-Length (correctly signed, so only the size can refuse it)
    assert receiver.post(over, headers(over, request_id="over")).status_code == 413
    # streamed without Content-Length (chunked): the size read is what counts

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(over), 64 * 1024):
            yield over[start : start + 64 * 1024]

    r = httpx.post(receiver.url, content=chunks(), headers=headers(over, request_id="over-chunked"), timeout=10)
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413
    assert nothing_stored(receiver.inbox)
    # exactly 1 MiB is still accepted
    assert receiver.post(at_limit, headers(at_limit, request_id="at-limit")).status_code == 202
    assert receiver.inbox.count_pending() == 1


def test_streamed_body_reads_at_most_the_limit_plus_one() -> None:
    consumed = 0
    chunk = b"y" * 1000

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}  # never ends

    from starlette.requests import Request

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)
    assert asyncio.run(_read_body(request, 10_000)) is None
    assert consumed <= 10_000 + len(chunk)


@pytest.mark.parametrize(
    ("resource", "action"),
    [("installation", "created"), ("event_alert", "triggered"), ("metric_alert", "critical"), ("issue", "deleted"),
     ("comment", "resolved"), ("", "created")],
)
def test_unhandled_resource_or_action_is_202_and_not_stored(receiver: Receiver, resource: str, action: str) -> None:
    payload = {**copy.deepcopy(SEED_ISSUE_EVENT), "action": action}
    body = sentry_bytes(payload)
    r = receiver.post(body, headers(body, resource, f"{resource}-{action}"))
    assert r.status_code == 202
    assert r.json()["status"] == "ignored"
    assert nothing_stored(receiver.inbox)
    assert receiver.health()["pending"] == 0


def test_unhandled_resource_still_needs_a_valid_signature(receiver: Receiver) -> None:
    body = sentry_bytes({"action": "created", "data": {}})
    hdrs = headers(body, "installation")
    hdrs["Sentry-Hook-Signature"] = sign("wrong", body)
    assert receiver.post(body, hdrs).status_code == 401


# -- durability, concurrency, hygiene ----------------------------------------------------------------------------


def test_inbox_survives_a_receiver_restart_and_the_cursor_continues(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite"
    bodies = []
    for n in range(3):
        payload = copy.deepcopy(SEED_ISSUE_EVENT)
        payload["data"]["issue"]["id"] = str(100 + n)
        bodies.append(sentry_bytes(payload))

    with Inbox(path) as inbox, ServerThread(create_receiver(SECRET, inbox)) as server:
        for n, body in enumerate(bodies[:2]):
            assert httpx.post(server.url + URL_PATH, content=body, headers=headers(body, request_id=f"r{n}")).status_code == 202
    # the first receiver and its inbox connection are gone
    with Inbox(path) as inbox, ServerThread(create_receiver(SECRET, inbox)) as server:
        health = httpx.get(server.url + "/healthz").json()
        assert health["status"] == "ok" and health["pending"] == 2
        assert health["last_event_received_at"] == inbox.pending_after(0, 10)[-1].received_at.isoformat()
        before = inbox.pending_after(0, 10)
        assert [e.issue_id for e in before] == ["100", "101"]
        cursor = before[-1].id
        inbox.mark_done([before[0].id])
        # a replay of an event stored before the restart is still recognised
        replay = httpx.post(server.url + URL_PATH, content=bodies[0], headers=headers(bodies[0], request_id="r0"))
        assert replay.json()["status"] == "duplicate"
        assert httpx.post(server.url + URL_PATH, content=bodies[2], headers=headers(bodies[2], request_id="r2")).status_code == 202
        (new,) = inbox.pending_after(cursor, 10)
        assert new.id > cursor and new.issue_id == "102"
        assert [e.issue_id for e in inbox.pending_after(0, 10)] == ["101", "102"]


def test_fifty_concurrent_posts_are_all_stored_once(receiver: Receiver) -> None:
    def event(n: int) -> bytes:
        payload = copy.deepcopy(SEED_ISSUE_EVENT)
        payload["data"]["issue"]["id"] = str(1000 + n)
        return sentry_bytes(payload)

    async def blast() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            distinct = [
                client.post(receiver.url, content=event(n), headers=headers(event(n), request_id=f"c{n}"))
                for n in range(50)
            ]
            # and 50 deliveries of one and the same Request-ID at the same moment
            same = [
                client.post(receiver.url, content=event(0), headers=headers(event(0), request_id="dup"))
                for _ in range(50)
            ]
            return await asyncio.gather(*distinct, *same)

    responses = asyncio.run(blast())
    assert [r.status_code for r in responses] == [202] * 100
    statuses = [r.json()["status"] for r in responses]
    assert statuses[:50] == ["accepted"] * 50
    assert sorted(statuses[50:]) == ["accepted"] + ["duplicate"] * 49
    events = receiver.inbox.pending_after(0, 1000)
    assert len(events) == 51
    assert sorted(e.request_id for e in events) == sorted([f"c{n}" for n in range(50)] + ["dup"])
    assert len({e.id for e in events}) == 51


def test_secret_and_signature_never_logged_or_stored(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = sentry_bytes(SEED_ISSUE_EVENT)
    good = headers(body, request_id="good")
    assert receiver.post(body, good).status_code == 202
    bad = {**good, "Request-ID": "bad", "Sentry-Hook-Signature": sign("guess", body)}
    assert receiver.post(body, bad).status_code == 401
    ignored_body = sentry_bytes({"action": "created", "data": {}})
    assert receiver.post(ignored_body, headers(ignored_body, "installation", "inst")).status_code == 202
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "sentry webhook" in logged  # the receiver did log, through these records
    for secret_text in (SECRET, good["Sentry-Hook-Signature"], bad["Sentry-Hook-Signature"]):
        assert secret_text not in logged
        assert secret_text.encode() not in receiver.inbox.path.read_bytes()
    for response_text in (receiver.post(body, bad).text, receiver.post(body, good).text):
        assert SECRET not in response_text and good["Sentry-Hook-Signature"] not in response_text


def test_create_receiver_refuses_without_a_secret(tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.sqlite") as inbox:
        for empty in ("", "   "):
            with pytest.raises(WebhookSecretMissing, match="SENTRY_WEBHOOK_SECRET"):
                create_receiver(empty, inbox)


def test_cli_refuses_to_start_without_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_WEBHOOK_SECRET", raising=False)
    inbox_path = tmp_path / "inbox.sqlite"
    with pytest.raises(SystemExit) as exited:
        webhooks_main(["webhooks", "serve", "--port", "0", "--inbox", str(inbox_path)])
    assert "SENTRY_WEBHOOK_SECRET" in str(exited.value.code)
    assert not inbox_path.exists()  # refused before opening anything


def test_cli_serves_and_the_inbox_survives_kill_9(tmp_path: Path) -> None:
    """The real command in its own process: events acknowledged with 202 are on disk even after SIGKILL."""
    inbox_path = tmp_path / "inbox.sqlite"
    env = {k: v for k, v in os.environ.items() if k != "SENTRY_WEBHOOK_INBOX"}
    env["SENTRY_WEBHOOK_SECRET"] = SECRET
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentry_port_assets.cli", "webhooks", "serve",
         "--host", "127.0.0.1", "--port", "0", "--inbox", str(inbox_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        port = None
        for line in proc.stderr:  # blocks until uvicorn reports the bound port (or the process dies)
            seen.append(line)
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "".join(seen)
        base = f"http://127.0.0.1:{port}"
        for n, (resource, payload) in enumerate((("issue", SEED_ISSUE_EVENT), ("comment", SEED_COMMENT_EVENT))):
            body = sentry_bytes(payload)
            assert httpx.post(base + URL_PATH, content=body, headers=headers(body, resource, f"k{n}")).status_code == 202
        health = httpx.get(base + "/healthz").json()
        assert health["status"] == "ok" and health["pending"] == 2 and health["last_event_received_at"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    with Inbox(inbox_path) as inbox:
        assert [(e.resource, e.request_id) for e in inbox.pending_after(0, 10)] == [("issue", "k0"), ("comment", "k1")]


def test_healthz_says_when_the_last_event_arrived(receiver: Receiver) -> None:
    """Sentry delivers at most once, so silence is what a probe can watch: null until the first event."""
    assert receiver.health() == {"status": "ok", "pending": 0, "dead_lettered": 0, "last_event_received_at": None}
    body = sentry_bytes(SEED_ISSUE_EVENT)
    assert receiver.post(body, headers(body, "issue", "first")).status_code == 202
    [event] = receiver.inbox.pending_after(0, 10)
    assert receiver.health()["last_event_received_at"] == event.received_at.isoformat()
