"""Async client for Port's REST API: every call to Port goes through here.

- Auth: a token from PORT_CLIENT_ID/PORT_CLIENT_SECRET (`POST /v1/auth/access_token`), refreshed shortly before it
  expires and once on a 401.
- Limits: bounded concurrency and Port's `x-ratelimit-*` window (see ratelimit.py).
- Retries: 429 (after the window resets), 5xx, timeouts and dropped connections, with bounded exponential backoff
  and jitter. Explicit timeouts on every call.
- Bulk upsert in batches of at most 20 entities and 1 MiB; a 413 splits the batch in half; a 207's per-entity
  errors come back as results with identifier, status, error and message.
- Errors carry Port's X-Trace-Id and never the client secret or the token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from sentry_port_assets.config import checked_url
from sentry_port_assets.port.datasource import DEFAULT_DATASOURCE
from sentry_port_assets.port.blueprints import ensure_blueprints as _ensure
from sentry_port_assets.port.scorecards import ensure_scorecards
from sentry_port_assets.port.errors import (
    PortConfigError,
    PortAuthError,
    PortConnectionError,
    PortError,
    PortNotFoundError,
    PortRequestError,
    PortServerError,
    redact,
)
from sentry_port_assets.port.paging import SearchCursors
from sentry_port_assets.port.ratelimit import PortRateGovernor
from sentry_port_assets.port.results import DeleteResult, EnsureReport, EntityResult

log = logging.getLogger(__name__)

MAX_BATCH_ENTITIES = 20
MAX_BODY_BYTES = 1024 * 1024
MAX_DELETE_IDS = 100
MAX_SEARCH_LIMIT = 1000
# A 429 means "wait for the window", not failure; this only stops a server that never lets us through.
MAX_RATE_LIMIT_WAITS = 50
RETRY_STATUSES = frozenset({500, 502, 503, 504, 520, 522, 524})
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=60.0)

_HEAD = b'{"entities":['
_TAIL = b"]}"


@dataclass
class ClientStats:
    requests: int = 0
    by_route: Counter = field(default_factory=Counter)
    retries: int = 0
    http_429: int = 0
    token_refreshes: int = 0
    splits_413: int = 0
    splits_422: int = 0

    def as_metadata(self) -> dict[str, int | float]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "http_429": self.http_429,
            "token_refreshes": self.token_refreshes,
            "splits_413": self.splits_413,
            "splits_422": self.splits_422,
            **{f"requests_{k}": v for k, v in sorted(self.by_route.items())},
        }


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# The entity fields a mapping can write, and so all a resync compares.
COMPARED_FIELDS = ("identifier", "title", "icon", "team", "properties", "relations")


class PortClient:
    """`async with PortClient(client_id, client_secret, base_url) as port: ...`"""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        base_url: str = "https://api.getport.io",
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_concurrency: int = 8,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_batch_entities: int = MAX_BATCH_ENTITIES,
        max_body_bytes: int = MAX_BODY_BYTES,
        token_refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = DEFAULT_DATASOURCE.user_agent,
    ) -> None:
        if not client_id or not client_secret:
            raise PortConfigError("PORT_CLIENT_ID and PORT_CLIENT_SECRET must both be set to publish to Port")
        # Before httpx sees it: a password in the URL would be sent as Basic auth.
        checked_url("PORT_BASE_URL", base_url, PortConfigError)
        self.client_id = client_id
        self.__secret = client_secret
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_batch_entities = min(max_batch_entities, MAX_BATCH_ENTITIES)
        self.max_body_bytes = max_body_bytes
        self.token_refresh_margin = token_refresh_margin
        self._clock = clock
        self.governor = PortRateGovernor(max_concurrency)
        self.stats = ClientStats()
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock: asyncio.Lock | None = None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_concurrency + 2, max_keepalive_connections=max_concurrency + 2),
            transport=transport,
            # Port records it as every written entity's `$datasource` (see port/datasource.py)
            headers={"user-agent": user_agent},
        )

    def __repr__(self) -> str:
        return f"PortClient(base_url={self.base_url!r}, client_id={self.client_id!r})"

    async def __aenter__(self) -> PortClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return redact(text, [self.__secret, self._token])

    def _error(self, cls: type[PortError], method: str, path: str, resp: httpx.Response, hint: str = "") -> PortError:
        trace = resp.headers.get("x-trace-id")
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = body.get("error")
        message = body.get("message") or resp.text[:300]
        text = (
            f"Port answered {resp.status_code}{' ' + str(error) if error else ''} to {method} {path}: {message} "
            f"(X-Trace-Id: {trace or 'none'}){' ' + hint if hint else ''}"
        )
        return cls(self._scrub(text), status=resp.status_code, error=error, trace_id=trace, method=method, path=path)

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def _lock(self) -> asyncio.Lock:
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        return self._token_lock

    async def _access_token(self) -> str:
        if self._token and self._clock() < self._token_expires:
            return self._token
        async with self._lock():
            if self._token and self._clock() < self._token_expires:
                return self._token
            await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _refresh_after_401(self, used: str) -> None:
        async with self._lock():
            if self._token == used:
                self._token = None
                await self._fetch_token()

    async def _fetch_token(self) -> None:
        path = "/v1/auth/access_token"
        resp = await self._send(
            "POST", path, "token", content=_dump({"clientId": self.client_id, "clientSecret": self.__secret}), auth=False
        )
        if resp.status_code in (400, 401, 403, 404, 422):
            raise self._error(
                PortAuthError, "POST", path, resp,
                "Check PORT_CLIENT_ID and PORT_CLIENT_SECRET (Port: Settings > Credentials) and PORT_BASE_URL "
                "(EU https://api.getport.io, US https://api.us.getport.io).",
            )
        if resp.status_code >= 300:
            raise self._error(PortRequestError, "POST", path, resp)
        data = resp.json()
        ttl = float(data.get("expiresIn") or 3 * 3600)
        self._token = data["accessToken"]
        self._token_expires = self._clock() + ttl - min(self.token_refresh_margin, ttl / 10)
        self.stats.token_refreshes += 1

    async def _send(
        self,
        method: str,
        path: str,
        route: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        """One request with auth, limits and retries. Returns any answer that retrying cannot change."""
        attempts = 0
        waits_429 = 0
        refreshed = False
        while True:
            headers = {"content-type": "application/json"} if content is not None else {}
            token = None
            if auth:
                token = await self._access_token()
                headers["authorization"] = f"Bearer {token}"
            await self.governor.acquire()
            self.stats.requests += 1
            self.stats.by_route[route] += 1
            try:
                resp = await self._http.request(method, path, params=params, content=content, headers=headers)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self.governor.release(None)
                attempts += 1
                if attempts > self.max_retries:
                    raise PortConnectionError(
                        self._scrub(
                            f"{method} {path} to Port at {self.base_url} failed after {attempts} attempts: "
                            f"{type(exc).__name__}: {exc or 'no details'} (no X-Trace-Id: no answer came)"
                        ),
                        method=method, path=path,
                    ) from None
                self.stats.retries += 1
                log.warning("Port %s %s: %s, retry %d", method, path, type(exc).__name__, attempts)
                await self._backoff(attempts)
                continue
            self.governor.release(resp.headers, status=resp.status_code)
            status = resp.status_code
            if status == 401 and auth and not refreshed:
                refreshed = True
                assert token is not None
                await self._refresh_after_401(token)
                continue
            if status == 401 and auth:
                raise self._error(
                    PortAuthError, method, path, resp,
                    "A fresh token was refused too: check the credentials in PORT_CLIENT_ID / PORT_CLIENT_SECRET.",
                )
            if status == 429:
                self.stats.http_429 += 1
                waits_429 += 1
                if waits_429 > MAX_RATE_LIMIT_WAITS:
                    raise self._error(PortServerError, method, path, resp, f"(still rate limited after {waits_429} waits)")
                if "x-ratelimit-reset" not in resp.headers and "retry-after" not in resp.headers:
                    await self._backoff(min(waits_429, 6))
                continue
            if status in RETRY_STATUSES:
                attempts += 1
                if attempts > self.max_retries:
                    raise self._error(PortServerError, method, path, resp, f"(after {attempts} attempts)")
                self.stats.retries += 1
                log.warning("Port %s %s answered %d, retry %d", method, path, status, attempts)
                await self._backoff(attempts)
                continue
            return resp

    def _raise_for(self, method: str, path: str, resp: httpx.Response) -> None:
        if resp.status_code < 300:
            return
        if resp.status_code == 404:
            raise self._error(PortNotFoundError, method, path, resp)
        raise self._error(PortRequestError, method, path, resp)

    # -- blueprints -----------------------------------------------------------------------------------

    async def get_blueprint(self, identifier: str) -> dict[str, Any] | None:
        path = f"/v1/blueprints/{quote(identifier, safe='')}"
        resp = await self._send("GET", path, "blueprint_get")
        if resp.status_code == 404:
            return None
        self._raise_for("GET", path, resp)
        return resp.json()["blueprint"]

    async def create_blueprint(self, blueprint: Mapping[str, Any]) -> dict[str, Any]:
        path = "/v1/blueprints"
        resp = await self._send("POST", path, "blueprint_create", content=_dump(dict(blueprint)))
        self._raise_for("POST", path, resp)
        return resp.json().get("blueprint", {})

    async def patch_blueprint(self, identifier: str, body: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/v1/blueprints/{quote(identifier, safe='')}"
        resp = await self._send("PATCH", path, "blueprint_patch", content=_dump(dict(body)))
        self._raise_for("PATCH", path, resp)
        return resp.json().get("blueprint", {})

    async def ensure_blueprints(
        self,
        blueprints: Iterable[Mapping[str, Any]],
        fragments: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] = (),
    ) -> EnsureReport:
        """Creates missing blueprints without relations, then patches relations in; on existing ones only adds
        the properties and relations they lack (see blueprints.py)."""
        return await _ensure(self.get_blueprint, self.create_blueprint, self.patch_blueprint, blueprints, fragments)

    async def ensure_scorecards(self, scorecards: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
        """Creates the scorecards Port lacks; leaves the existing ones as they are (port/scorecards.py)."""
        return await ensure_scorecards(self.get_scorecard, self.create_scorecard, scorecards)

    async def get_scorecard(self, blueprint: str, identifier: str) -> dict[str, Any] | None:
        path = f"/v1/blueprints/{quote(blueprint, safe='')}/scorecards/{quote(identifier, safe='')}"
        resp = await self._send("GET", path, "scorecard_get")
        if resp.status_code == 404:
            return None
        self._raise_for("GET", path, resp)
        return resp.json().get("scorecard", {})

    async def create_scorecard(self, blueprint: str, scorecard: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/v1/blueprints/{quote(blueprint, safe='')}/scorecards"
        resp = await self._send("POST", path, "scorecard_create", content=_dump(dict(scorecard)))
        self._raise_for("POST", path, resp)
        return resp.json().get("scorecard", {})

    # -- integration ----------------------------------------------------------------------------------

    async def get_integration(self, identifier: str) -> dict[str, Any]:
        """The integration `identifier`: `{identifier, config: {…the mapping…}, updatedAt, …}`."""
        path = f"/v1/integration/{quote(identifier, safe='')}"
        resp = await self._send("GET", path, "integration_get")
        if resp.status_code == 404:
            raise self._error(PortNotFoundError, "GET", path, resp,
                              "Check PORT_INTEGRATION_IDENTIFIER (Port: Data sources, the integration's identifier).")
        self._raise_for("GET", path, resp)
        integration = resp.json().get("integration")
        if not isinstance(integration, dict):
            raise self._error(PortRequestError, "GET", path, resp, "(the answer has no `integration` object)")
        return integration

    # -- entities -------------------------------------------------------------------------------------

    async def _pages(self, path: str, route: str, body: Mapping[str, Any],
                     params: Mapping[str, str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """The pages of a POST search answering `{entities, next}`, continued with `from = next`, one at a time, within
        `SearchCursors`' bounds."""
        cursors = SearchCursors(f"POST {path}", int(body.get("limit") or MAX_SEARCH_LIMIT), path=path)
        cursor: str | None = None
        while True:
            page = {**body, **({"from": cursor} if cursor else {})}
            resp = await self._send("POST", path, route, content=_dump(page), params=params)
            self._raise_for("POST", path, resp)
            data = resp.json()
            yield data.get("entities") or []
            cursor = cursors.follow(data.get("next"))
            if cursor is None:
                return

    def datasource_pages(self, prefix: str, suffix: str, before: str | None = None,
                         page_size: int = MAX_SEARCH_LIMIT) -> AsyncIterator[list[dict[str, Any]]]:
        """`{identifier, blueprint}` of the entities whose `$datasource` starts with `prefix` and ends with `suffix`,
        last written before `before` (RFC 3339) when given, a page at a time."""
        body: dict[str, Any] = {"datasource_prefix": prefix, "datasource_suffix": suffix, "limit": page_size}
        if before:
            body["before"] = before
        return self._pages("/v1/blueprints/entities/datasource-entities", "datasource_entities", body)

    def entity_pages(
        self, blueprint: str, query: Mapping[str, Any] | None = None, *, page_size: int = MAX_SEARCH_LIMIT
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The entities of `blueprint` matching `query`, a page at a time. As Ocean reads before a resync: no
        calculated values, only the fields a mapping writes."""
        body: dict[str, Any] = {"limit": min(page_size, MAX_SEARCH_LIMIT), "include": list(COMPARED_FIELDS)}
        if query:
            body["query"] = dict(query)
        return self._pages(f"/v1/blueprints/{quote(blueprint, safe='')}/entities/search", "search", body,
                           params={"exclude_calculated_properties": "true"})

    async def search_entities(
        self, blueprint: str, query: Mapping[str, Any] | None = None, *, page_size: int = MAX_SEARCH_LIMIT
    ) -> list[dict[str, Any]]:
        """Every entity of `blueprint` matching `query` (all pages, see `entity_pages`)."""
        return [entity async for page in self.entity_pages(blueprint, query, page_size=page_size) for entity in page]

    def _batches(self, entities: Sequence[Mapping[str, Any]]) -> tuple[list[list[tuple[int, bytes]]], list[tuple[int, int]]]:
        """Index/encoding batches of <= max_batch_entities and <= max_body_bytes; and the (index, size) of
        entities too large to send at all."""
        batches: list[list[tuple[int, bytes]]] = []
        too_big: list[tuple[int, int]] = []
        current: list[tuple[int, bytes]] = []
        size = len(_HEAD) + len(_TAIL)
        for index, entity in enumerate(entities):
            encoded = _dump(dict(entity))
            if len(_HEAD) + len(_TAIL) + len(encoded) > self.max_body_bytes:
                too_big.append((index, len(encoded)))
                continue
            extra = len(encoded) + (1 if current else 0)
            if current and (len(current) >= self.max_batch_entities or size + extra > self.max_body_bytes):
                batches.append(current)
                current, size = [], len(_HEAD) + len(_TAIL)
                extra = len(encoded)
            current.append((index, encoded))
            size += extra
        if current:
            batches.append(current)
        return batches, too_big

    async def upsert_entities(
        self,
        blueprint: str,
        entities: Sequence[Mapping[str, Any]],
        *,
        merge: bool,
        create_missing_related: bool,
        on_done: Callable[[int], None] | None = None,
    ) -> list[EntityResult]:
        """Bulk upsert (`upsert=true`); one result per entity, in order. Batches run concurrently; `on_done(n)` is
        called as each batch of n entities is answered (progress lines)."""
        results: list[EntityResult | None] = [None] * len(entities)
        batches, too_big = self._batches(entities)
        for index, size in too_big:
            results[index] = EntityResult(
                identifier=str(entities[index].get("identifier")), ok=False, status=413, error="bad_request",
                message=f"the entity alone is {size} bytes, over Port's {self.max_body_bytes}-byte request limit",
            )
        params = {
            "upsert": "true",
            "merge": "true" if merge else "false",
            "create_missing_related_entities": "true" if create_missing_related else "false",
        }

        async def run(batch: list[tuple[int, bytes]]) -> None:
            for index, result in await self._upsert_batch(blueprint, batch, params, entities):
                results[index] = result
            if on_done is not None:
                on_done(len(batch))

        await asyncio.gather(*(run(b) for b in batches))
        return [r for r in results if r is not None]

    async def _upsert_batch(
        self,
        blueprint: str,
        batch: list[tuple[int, bytes]],
        params: Mapping[str, str],
        entities: Sequence[Mapping[str, Any]],
    ) -> list[tuple[int, EntityResult]]:
        path = f"/v1/blueprints/{quote(blueprint, safe='')}/entities/bulk"
        body = _HEAD + b",".join(e for _, e in batch) + _TAIL
        resp = await self._send("POST", path, "bulk_upsert", params=params, content=body)
        trace = resp.headers.get("x-trace-id")
        ident = lambda i: str(entities[batch[i][0]].get("identifier"))  # noqa: E731
        if resp.status_code in (413, 422) and len(batch) > 1:
            # 413: too large together; 422: Port refused the whole request for one entity's sake (its schema check
            # runs before any write). Halves until every valid entity lands and each refusal names its entity.
            if resp.status_code == 413:
                self.stats.splits_413 += 1
            else:
                self.stats.splits_422 += 1
            half = len(batch) // 2
            left, right = await asyncio.gather(
                self._upsert_batch(blueprint, batch[:half], params, entities),
                self._upsert_batch(blueprint, batch[half:], params, entities),
            )
            return left + right
        if resp.status_code in (200, 201, 207):
            data = resp.json()
            out: list[tuple[int, EntityResult]] = []
            seen: set[int] = set()
            for item in data.get("entities") or []:
                i = int(item.get("index", -1))
                if 0 <= i < len(batch):
                    seen.add(i)
                    out.append((batch[i][0], EntityResult(identifier=str(item.get("identifier", ident(i))), ok=True, created=bool(item.get("created")), status=resp.status_code, trace_id=trace)))
            for item in data.get("errors") or []:
                i = int(item.get("index", -1))
                if 0 <= i < len(batch):
                    seen.add(i)
                    out.append((batch[i][0], EntityResult(
                        identifier=str(item.get("identifier", ident(i))), ok=False,
                        status=item.get("statusCode"), error=item.get("error"),
                        message=self._scrub(str(item.get("message"))), trace_id=trace,
                    )))
            for i in range(len(batch)):
                if i not in seen:
                    out.append((batch[i][0], EntityResult(identifier=ident(i), ok=False, status=resp.status_code, error="missing_result", message=f"Port's answer did not mention this entity (X-Trace-Id: {trace})", trace_id=trace)))
            return out
        # the whole batch was refused (404 unknown blueprint, 422, a lone entity still too large, ...)
        err = self._error(PortRequestError, "POST", path, resp)
        return [
            (index, EntityResult(identifier=ident(i), ok=False, status=resp.status_code, error=err.error, message=err.message, trace_id=trace))
            for i, (index, _) in enumerate(batch)
        ]

    async def delete_entities(self, blueprint: str, ids: Sequence[str], *, delete_dependents: bool) -> DeleteResult:
        """Bulk delete, at most 100 ids a request; a refused request is reported for each of its ids."""
        path = f"/v1/blueprints/{quote(blueprint, safe='')}/bulk/entities/delete"
        params = {"delete_dependents": "true" if delete_dependents else "false"}
        result = DeleteResult()
        for start in range(0, len(ids), MAX_DELETE_IDS):
            chunk = list(ids[start : start + MAX_DELETE_IDS])
            resp = await self._send("POST", path, "bulk_delete", params=params, content=_dump({"entities": chunk}))
            if resp.status_code < 300:
                result.deleted += list(resp.json().get("deletedEntities") or [])
                continue
            err = self._error(PortRequestError, "POST", path, resp)
            result.failures += [
                EntityResult(identifier=i, ok=False, status=resp.status_code, error=err.error, message=err.message, trace_id=err.trace_id)
                for i in chunk
            ]
        return result
