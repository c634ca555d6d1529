"""The Sentry webhook receiver: verify, append to the inbox, answer 202. Nothing else happens in a request.

`POST /webhooks/sentry`, in this order:
1. no `Sentry-Hook-Signature` → 401 (the body is not read);
2. `Content-Length` over 1 MiB → 413; then the body is streamed, at most 1 MiB + 1 bytes read → 413 if larger,
   and within SENTRY_WEBHOOK_BODY_TIMEOUT_SECONDS → 408 if slower (slow clients: `guard.py`);
3. the signature is the hex HMAC-SHA256 of the RAW body bytes keyed with the integration's client secret,
   compared in constant time (never against a re-serialised body: Sentry escapes non-ASCII) → 401 if wrong.
   One receiver may serve several Sentry installations, each with its own secret (`secrets` a mapping, from
   SENTRY_WEBHOOK_INSTALLATIONS): the body's `installation.uuid` (what Sentry's `AppPlatformEvent` puts in every
   delivery, getsentry/sentry src/sentry/sentry_apps/api/serializers/app_platform_event.py; no header names the
   installation) picks the secret, read from the body BEFORE it is verified and
   trusted only once the signature matches → 400 if the body is not JSON, 401 if it names no installation or
   one not configured;
4. `Sentry-Hook-Timestamp` within SENTRY_WEBHOOK_MAX_SKEW_SECONDS (default 300) of now → 400 otherwise (only the
   body is signed, so this stops stale replays, not a forger; what makes replays harmless is that every event is
   re-read from Sentry before it is applied);
5. the body must be a JSON object (UTF-8, no lone surrogates, not absurdly nested) → 400 otherwise;
6. a resource or action this project does not handle → 202 `{"status": "ignored"}`, not stored;
   a handled event without a decimal issue id → 400;
7. append to the inbox with its installation (in a worker thread, so the event loop never waits on SQLite's
   fsync) →
   202 `{"status": "accepted", "request_id": …}`, or `{"status": "duplicate", …}` for a `Request-ID` already stored.

`GET /healthz` → 200 `{"status": "ok", "pending": N, "last_event_received_at": ISO time or null}` (503 if the
inbox cannot be read).

The secret and the signature are never logged or echoed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sentry_port_assets.config import INSTALLATIONS_ENV, SECRET_ENV, number_setting
from sentry_port_assets.webhooks.guard import body_timeout, check_settings
from sentry_port_assets.webhooks.inbox import Inbox

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/sentry"
MAX_BODY_BYTES = 1024 * 1024

SIGNATURE_HEADER = "Sentry-Hook-Signature"
RESOURCE_HEADER = "Sentry-Hook-Resource"
TIMESTAMP_HEADER = "Sentry-Hook-Timestamp"
REQUEST_ID_HEADER = "Request-ID"
MAX_SKEW_ENV = "SENTRY_WEBHOOK_MAX_SKEW_SECONDS"

# resource -> the actions that change what Port holds. `archived` is what older installs send for `ignored`.
HANDLED_ACTIONS: dict[str, frozenset[str]] = {
    "issue": frozenset({"created", "resolved", "assigned", "ignored", "archived", "unresolved"}),
    "comment": frozenset({"created", "updated", "deleted"}),
}


class WebhookSecretMissing(RuntimeError):
    """Raised when the receiver would start without a secret (it would have to accept unsigned events)."""


def sign(secret: str, body: bytes) -> str:
    """The signature Sentry sends for `body`: hex HMAC-SHA256 keyed with the client secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, provided: str) -> bool:
    expected = sign(secret, body).encode("ascii")
    # Starlette decodes header values as latin-1; compare bytes so any header value compares (in constant time).
    return hmac.compare_digest(expected, provided.strip().lower().encode("latin-1", errors="replace"))


def _answer(status_code: int, status: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": status, **extra}, status_code=status_code)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` (at most `limit + 1` bytes are read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            pass  # the server rejects a malformed Content-Length before we get here
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        room = limit + 1 - size
        chunks.append(chunk[:room])
        size += min(len(chunk), room)
        if size > limit:
            return None
    return b"".join(chunks)


_DECIMAL_ID = re.compile(r"[0-9]{1,20}")


def _decimal(value: Any) -> str | None:
    """Sentry's ids are decimal numbers (sent as strings or numbers); anything else is refused at the door, so it
    can never reach an API path or fail a batch later."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if _DECIMAL_ID.fullmatch(text) else None


def _issue_id(resource: str, data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    if resource == "issue":
        issue = data.get("issue")
        return _decimal(issue.get("id")) if isinstance(issue, dict) else None
    return _decimal(data.get("issue_id"))


def _timestamp_problem(value: str | None, max_skew: float) -> str | None:
    """Why `Sentry-Hook-Timestamp` (Unix seconds when Sentry sent the delivery) is unacceptable, or None."""
    if value is None:
        return f"missing {TIMESTAMP_HEADER}"
    try:
        sent = float(value.strip())
    except ValueError:
        return f"{TIMESTAMP_HEADER} is not a Unix time"
    if not math.isfinite(sent) or abs(time.time() - sent) > max_skew:
        return (f"{TIMESTAMP_HEADER} is more than {max_skew:g} s from now (a replayed or long-delayed delivery; "
                f"{MAX_SKEW_ENV} sets the tolerance)")
    return None


def _parse(body: bytes) -> dict[str, Any] | str:
    """The body as a JSON object, or why it is not one."""
    try:
        payload = json.loads(body.decode("utf-8"))
        # Lone surrogates ("\ud800") parse but cannot be stored or sent on as UTF-8.
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError):
        return "the body is not valid UTF-8 JSON"
    except RecursionError:
        return "the body's JSON is nested too deeply"
    return payload if isinstance(payload, dict) else "the body is not a JSON object"


def _installation(payload: dict[str, Any]) -> str | None:
    installation = payload.get("installation")
    uuid = installation.get("uuid") if isinstance(installation, dict) else None
    return uuid if isinstance(uuid, str) and uuid else None


def create_receiver(secrets: str | Mapping[str, str], inbox: Inbox,
                    max_skew_seconds: float | None = None) -> Starlette:
    """The receiver app. `secrets`: the client secret (any installation), or {installation uuid: its secret} for
    a receiver serving several installations. Raises `WebhookSecretMissing` (naming SENTRY_WEBHOOK_SECRET) without
    a secret.

    `max_skew_seconds`: how far `Sentry-Hook-Timestamp` may be from now (default SENTRY_WEBHOOK_MAX_SKEW_SECONDS,
    else 300)."""
    check_settings()
    body_seconds = body_timeout()
    if max_skew_seconds is None:
        max_skew_seconds = number_setting(MAX_SKEW_ENV)
    shared = secrets if isinstance(secrets, str) else None
    by_installation = None if isinstance(secrets, str) else dict(secrets)
    values = [shared] if by_installation is None else list(by_installation.values())
    if not values or not all(value and value.strip() for value in values):
        raise WebhookSecretMissing(
            f"{SECRET_ENV} is not set: the Sentry webhook receiver refuses to start without the client secret "
            "of the Sentry internal integration (Settings → Developer Settings → your integration → Client Secret)"
            + (f"; {INSTALLATIONS_ENV} names an installation without one" if by_installation is not None else "")
        )

    async def sentry_webhook(request: Request) -> JSONResponse:
        provided = request.headers.get(SIGNATURE_HEADER)
        if not provided:
            log.warning("sentry webhook rejected: no %s header", SIGNATURE_HEADER)
            return _answer(401, "unauthorized", detail=f"missing {SIGNATURE_HEADER}")
        try:
            async with asyncio.timeout(body_seconds):
                body = await _read_body(request, MAX_BODY_BYTES)
        except ClientDisconnect:
            return _answer(400, "bad_request", detail="client disconnected")
        except TimeoutError:
            log.warning("sentry webhook rejected: body not received within %gs", body_seconds)
            return _answer(408, "timeout", detail=f"body not received within {body_seconds:g} s")
        if body is None:
            log.warning("sentry webhook rejected: body over %d bytes", MAX_BODY_BYTES)
            return _answer(413, "too_large", detail=f"body over {MAX_BODY_BYTES} bytes")
        if by_installation is not None:
            # Several installations: the body says which one sent it, and so which secret must have signed it.
            payload = _parse(body)
            if isinstance(payload, str):
                return _answer(400, "bad_request", detail=payload)
            installation = _installation(payload)
            secret = by_installation.get(installation) if installation else None
            if secret is None:
                log.warning("sentry webhook rejected: installation %r is not configured", (installation or "")[:64])
                return _answer(401, "unauthorized", detail=(
                    f"installation {installation[:64]!r} is not configured ({INSTALLATIONS_ENV})" if installation
                    else "the body names no installation.uuid, so no secret can verify it"))
        else:
            secret = shared
        if not signature_matches(secret, body, provided):
            log.warning("sentry webhook rejected: signature does not match the body")
            return _answer(401, "unauthorized", detail=f"{SIGNATURE_HEADER} does not match the body")

        problem = _timestamp_problem(request.headers.get(TIMESTAMP_HEADER), max_skew_seconds)
        if problem:
            log.warning("sentry webhook rejected: %s", problem)
            return _answer(400, "bad_request", detail=problem)
        if by_installation is None:
            payload = _parse(body)
            if isinstance(payload, str):
                return _answer(400, "bad_request", detail=payload)
            installation = _installation(payload)

        resource = request.headers.get(RESOURCE_HEADER, "")
        action = payload.get("action")
        if resource not in HANDLED_ACTIONS or not isinstance(action, str) or action not in HANDLED_ACTIONS[resource]:
            log.info("sentry webhook ignored: resource=%r action=%r", resource[:40], str(action)[:40])
            return _answer(202, "ignored", resource=resource[:40], action=str(action)[:40])

        issue_id = _issue_id(resource, payload.get("data"))
        if issue_id is None:
            where = "data.issue.id" if resource == "issue" else "data.issue_id"
            return _answer(400, "bad_request", detail=f"{resource} event without a decimal {where}")

        # Sentry always sends Request-ID; without one, identical bodies count as the same delivery.
        request_id = request.headers.get(REQUEST_ID_HEADER, "").strip() or "sha256:" + hashlib.sha256(body).hexdigest()
        stored = await run_in_threadpool(
            inbox.append,
            request_id=request_id,
            resource=resource,
            action=action,
            issue_id=issue_id,
            body=body,
            hook_timestamp=request.headers.get(TIMESTAMP_HEADER),
            installation=installation,
        )
        if not stored:
            log.info("sentry webhook duplicate: request_id=%s", request_id)
            return _answer(202, "duplicate", request_id=request_id)
        log.info("sentry webhook stored: %s.%s issue=%s request_id=%s installation=%s", resource, action, issue_id,
                 request_id, installation)
        return _answer(202, "accepted", request_id=request_id)

    async def healthz(request: Request) -> JSONResponse:
        try:
            pending = await run_in_threadpool(inbox.count_pending)
            dead = await run_in_threadpool(inbox.count_dead)
            last = await run_in_threadpool(inbox.last_received_at)
        except Exception as exc:  # noqa: BLE001 - a probe reports, it does not crash
            log.error("webhook inbox unreadable: %s", type(exc).__name__)
            return _answer(503, "error", detail=f"inbox unreadable: {type(exc).__name__}")
        # Sentry delivers at most once and does not retry: a long silence is worth an alert.
        return _answer(200, "ok", pending=pending, dead_lettered=dead,
                       last_event_received_at=last.isoformat() if last else None)

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, sentry_webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.inbox = inbox
    return app
