"""A Port API emulator on top of the local catalog: the endpoints PortClient uses, with Port's answers.

- `POST /v1/auth/access_token` issues tokens that expire after `token_ttl_seconds` (then 401; Port documents no error identifier for it, so clients go by the status);
- blueprints `GET/POST/PATCH`, bulk upsert (200, or 207 with per-entity errors; 413 over `max_body_bytes`),
  single upsert, blueprint search with `limit`/`from`/`next`, search all, bulk delete, single delete;
- `x-ratelimit-limit/remaining/reset` on every answer and 429 once a window is spent (`rate_limit` requests per
  `window_seconds`, windows counted from the emulator's start; answered 429s do not count);
- `X-Trace-Id` on every answer;
- `GET /v1/integration/{identifier}` answers `state.integrations[identifier]` (set it, or
  `state.set_integration_config(identifier, config)`), 404 when unset;
- fault injection per route: `Fault(route, kind="status"|"slow"|"drop"|"429"|"repeat-next", times=…, skip=…)`.

`app = create_port_emulator(path_or_catalog, client_id=…, client_secret=…)`; `app.state.port` is a
`PortEmulatorState` (stats, catalog, faults, `expire_tokens()`). Serve it with `ServerThread(app)`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentry_port_assets.port.catalog import CatalogError, LocalCatalog, request_problem

MAX_BODY_BYTES = 1024 * 1024

ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/auth/access_token$"), "token"),
    ("POST", re.compile(r"^/v1/blueprints/entities/datasource-entities$"), "datasource_entities"),
    ("POST", re.compile(r"^/v1/blueprints$"), "blueprint_create"),
    ("GET", re.compile(r"^/v1/blueprints/[^/]+$"), "blueprint_get"),
    ("PATCH", re.compile(r"^/v1/blueprints/[^/]+$"), "blueprint_patch"),
    ("POST", re.compile(r"^/v1/blueprints/[^/]+/entities/bulk$"), "bulk_upsert"),
    ("POST", re.compile(r"^/v1/blueprints/[^/]+/entities/search$"), "search"),
    ("POST", re.compile(r"^/v1/blueprints/[^/]+/entities$"), "upsert"),
    ("POST", re.compile(r"^/v1/blueprints/[^/]+/bulk/entities/delete$"), "bulk_delete"),
    ("POST", re.compile(r"^/v1/blueprints/[^/]+/scorecards$"), "scorecard_create"),
    ("GET", re.compile(r"^/v1/blueprints/[^/]+/scorecards$"), "scorecards_get"),
    ("GET", re.compile(r"^/v1/blueprints/[^/]+/scorecards/[^/]+$"), "scorecard_get"),
    ("GET", re.compile(r"^/v1/blueprints/[^/]+/entities/[^/]+$"), "entity_get"),
    ("DELETE", re.compile(r"^/v1/blueprints/[^/]+/entities/[^/]+$"), "delete"),
    ("POST", re.compile(r"^/v1/entities/search$"), "search_all"),
    ("GET", re.compile(r"^/v1/integration/[^/]+$"), "integration_get"),
]


def route_name(method: str, path: str) -> str:
    for m, pattern, name in ROUTES:
        if m == method and pattern.match(path):
            return name
    return "other"


@dataclass
class Fault:
    """Affects `times` requests to `route` ("*" for any) after letting `skip` through.

    kind: "status" answers `status` (default 500); "slow" waits `delay` seconds, then answers normally;
    "drop" starts the answer and drops the connection; "429" answers 429 with a reset of `delay` seconds;
    "repeat-next" (the paged searches, `search` and `datasource_entities`) answers with `next` = STUCK_CURSOR, which
    leads back to the first page: a search whose `next` repeats for ever."""

    route: str
    kind: str = "status"
    times: int = 1
    status: int = 500
    delay: float = 0.0
    skip: int = 0
    seen: int = 0
    fired: int = 0

    def take(self, route: str) -> bool:
        if self.route not in ("*", route):
            return False
        self.seen += 1
        if self.seen > self.skip and self.fired < self.times:
            self.fired += 1
            return True
        return False


@dataclass
class EmulatorStats:
    requests: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    faults_fired: Counter = field(default_factory=Counter)
    http_429: int = 0
    tokens_issued: int = 0
    upsert_requests: int = 0
    entities_created: int = 0
    entities_updated: int = 0
    entities_failed: int = 0
    delete_requests: int = 0
    entities_deleted: int = 0
    max_batch: int = 0
    requests_refused_whole: int = 0  # bulk requests refused with a 422 before anything was written
    max_body_bytes: int = 0
    bodies_413: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def writes(self) -> int:
        return self.entities_created + self.entities_updated + self.entities_deleted

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


class _ApiError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


class PortEmulatorState:
    def __init__(
        self,
        catalog: LocalCatalog,
        *,
        client_id: str,
        client_secret: str,
        token_ttl_seconds: float,
        rate_limit: int | None,
        window_seconds: float,
        faults: Iterable[Fault],
        max_body_bytes: int,
        reset_header: str,
        clock: Callable[[], float],
    ) -> None:
        self.catalog = catalog
        self.client_id = client_id
        self._client_secret = client_secret
        self.token_ttl_seconds = token_ttl_seconds
        self.rate_limit = rate_limit
        self.window_seconds = window_seconds
        self.faults: list[Fault] = list(faults)
        self.max_body_bytes = max_body_bytes
        self.reset_header = reset_header
        self.clock = clock
        self.stats = EmulatorStats()
        # identifier -> the integration object `GET /v1/integration/{identifier}` answers ({config, updatedAt, …})
        self.integrations: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._window_index = -1
        self._window_count = 0

    def __repr__(self) -> str:
        return f"PortEmulatorState(catalog={self.catalog!r}, client_id={self.client_id!r})"

    # tokens
    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = self.clock() + self.token_ttl_seconds
        self.stats.tokens_issued += 1
        return token

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 401."""
        for token in self._tokens:
            self._tokens[token] = -math.inf

    def check_token(self, header: str | None) -> None:
        if not header or not header.lower().startswith("bearer "):
            raise _ApiError(401, "unauthorized", "missing bearer token")
        expires = self._tokens.get(header[7:].strip())
        if expires is None:
            raise _ApiError(401, "unauthorized", "invalid token")
        if self.clock() >= expires:
            raise _ApiError(401, "unauthorized", "the access token expired")

    def credentials_ok(self, client_id: Any, client_secret: Any) -> bool:
        return secrets.compare_digest(str(client_id), self.client_id) and secrets.compare_digest(
            str(client_secret), self._client_secret
        )

    def set_integration_config(self, identifier: str, config: dict[str, Any], updated_at: str | None = None) -> None:
        """Sets the integration's mapping `config`; `updatedAt` is now unless given."""
        from datetime import datetime, timezone

        stamp = updated_at or datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        self.integrations[identifier] = {"identifier": identifier, "config": config, "updatedAt": stamp}

    # rate limit: fixed windows from the emulator's start
    def admit(self) -> tuple[bool, dict[str, str]]:
        if not self.rate_limit:
            return True, {}
        elapsed = time.monotonic() - self._t0
        index = int(elapsed // self.window_seconds)
        if index != self._window_index:
            self._window_index, self._window_count = index, 0
        until_reset = (index + 1) * self.window_seconds - elapsed
        admitted = self._window_count < self.rate_limit
        if admitted:
            self._window_count += 1
        reset = f"{until_reset:.3f}" if self.reset_header == "seconds" else f"{time.time() + until_reset:.3f}"
        return admitted, {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - self._window_count)),
            "x-ratelimit-reset": reset,
        }


class _Gate:
    """Trace ids, rate limit and faults, in front of the routes."""

    def __init__(self, app: ASGIApp, state: PortEmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        route = route_name(scope["method"], scope["path"])
        state.stats.requests[route] += 1
        trace_id = uuid.uuid4().hex
        admitted, limit_headers = state.admit()
        extra = [(b"x-trace-id", trace_id.encode())] + [(k.encode(), v.encode()) for k, v in limit_headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + extra}
                state.stats.statuses[message["status"]] += 1
            await send(message)

        if not admitted:
            state.stats.http_429 += 1
            await JSONResponse({"ok": False, "error": "rate_limit_exceeded", "message": "too many requests"}, 429)(
                scope, receive, send_with_headers
            )
            return
        for fault in state.faults:
            if not fault.take(route):
                continue
            state.stats.faults_fired[f"{route}:{fault.kind}"] += 1
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
                break
            if fault.kind == "repeat-next":
                scope.setdefault("state", {})["repeat_next"] = True  # read by the paged searches (`_next`)
                break
            if fault.kind == "drop":
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"ok": tr', "more_body": True})
                raise ConnectionAbortedError("fault injection: connection dropped")
            if fault.kind == "429":
                state.stats.http_429 += 1
                extra = [h for h in extra if h[0] != b"x-ratelimit-reset"] + [(b"x-ratelimit-reset", f"{fault.delay:.3f}".encode())]
                await JSONResponse({"ok": False, "error": "rate_limit_exceeded", "message": "burst"}, 429)(scope, receive, send_with_headers)
                return
            await JSONResponse({"ok": False, "error": "internal_error", "message": "fault injection"}, fault.status)(
                scope, receive, send_with_headers
            )
            return
        await self.app(scope, receive, send_with_headers)


# The `next` a "repeat-next" fault answers: as a `from`, it is the first page again.
STUCK_CURSOR = "emulated-stuck-cursor"


def _from(body: Any) -> str | None:
    cursor = body.get("from") if isinstance(body, dict) else None
    return None if cursor == STUCK_CURSOR else cursor


def _next(request: Request, nxt: str | None) -> str | None:
    return STUCK_CURSOR if request.scope.get("state", {}).get("repeat_next") else nxt


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


async def _body(request: Request, state: PortEmulatorState) -> Any:
    raw = await request.body()
    state.stats.max_body_bytes = max(state.stats.max_body_bytes, len(raw))
    if len(raw) > state.max_body_bytes:
        state.stats.bodies_413 += 1
        raise _ApiError(413, "bad_request", f"request body of {len(raw)} bytes is over {state.max_body_bytes}")
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise _ApiError(400, "invalid_request", "the body is not JSON") from None


def create_port_emulator(
    catalog_path_or_catalog: str | Path | LocalCatalog,
    *,
    client_id: str,
    client_secret: str,
    token_ttl_seconds: float = 3 * 3600,
    rate_limit: int | None = None,
    window_seconds: float = 1.0,
    faults: Iterable[Fault] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    reset_header: str = "seconds",
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    catalog = (
        catalog_path_or_catalog
        if isinstance(catalog_path_or_catalog, LocalCatalog)
        else LocalCatalog(catalog_path_or_catalog)
    )
    state = PortEmulatorState(
        catalog,
        client_id=client_id,
        client_secret=client_secret,
        token_ttl_seconds=token_ttl_seconds,
        rate_limit=rate_limit,
        window_seconds=window_seconds,
        faults=faults,
        max_body_bytes=max_body_bytes,
        reset_header=reset_header,
        clock=clock,
    )
    stats = state.stats

    def authed(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapper(request: Request) -> Response:
            try:
                if handler is not token:
                    state.check_token(request.headers.get("authorization"))
                return await handler(request)
            except _ApiError as exc:
                return JSONResponse({"ok": False, "error": exc.error, "message": exc.message}, exc.status)
            except CatalogError as exc:
                return JSONResponse(exc.as_json(), exc.status)

        return wrapper

    async def token(request: Request) -> Response:
        body = await _body(request, state)
        if not isinstance(body, dict) or not state.credentials_ok(body.get("clientId"), body.get("clientSecret")):
            raise _ApiError(401, "unauthorized", "invalid client id or client secret")
        return JSONResponse(
            {"ok": True, "accessToken": state.issue_token(), "expiresIn": state.token_ttl_seconds, "tokenType": "Bearer"}
        )

    async def blueprint_get(request: Request) -> Response:
        bp = catalog.get_blueprint(request.path_params["bp"])
        if bp is None:
            raise _ApiError(404, "not_found", f"blueprint {request.path_params['bp']!r} does not exist")
        return JSONResponse({"ok": True, "blueprint": bp})

    async def blueprint_create(request: Request) -> Response:
        body = await _body(request, state)
        return JSONResponse({"ok": True, "blueprint": catalog.create_blueprint(body)}, 201)

    async def blueprint_patch(request: Request) -> Response:
        body = await _body(request, state)
        return JSONResponse({"ok": True, "blueprint": catalog.patch_blueprint(request.path_params["bp"], body)})

    def _upsert(bp: str, entities: list[Any], request: Request) -> list[Any]:
        if not _flag(request, "upsert"):
            for e in entities:
                if isinstance(e, dict) and isinstance(e.get("identifier"), str) and catalog.get_entity(bp, e["identifier"]):
                    raise _ApiError(409, "identifier_taken", f"entity {e['identifier']!r} already exists (upsert=false)")
        # Port records the writer's User-Agent as each written entity's `$datasource`.
        outcomes = catalog.upsert_entities(
            bp, entities, merge=_flag(request, "merge"), create_missing_related=_flag(request, "create_missing_related_entities"),
            datasource=request.headers.get("user-agent"),
        )
        stats.upsert_requests += 1
        for o in outcomes:
            if o.ok and o.created:
                stats.entities_created += 1
            elif o.ok:
                stats.entities_updated += 1
            else:
                stats.entities_failed += 1
        return outcomes

    async def bulk_upsert(request: Request) -> Response:
        body = await _body(request, state)
        entities = body.get("entities") if isinstance(body, dict) else None
        if not isinstance(entities, list) or not entities:
            raise _ApiError(422, "invalid_request", "'entities' must be a non-empty list")
        if len(entities) > 20:
            raise _ApiError(422, "invalid_request", f"at most 20 entities per request, got {len(entities)}")
        stats.max_batch = max(stats.max_batch, len(entities))
        # Port checks the whole body against the route's schema before writing anything: one entity that breaks the
        # identifier pattern, a relation's shape or the search operators fails the whole request, and nothing is
        # written. (What only the blueprint can judge, such as a property's type, is refused per entity in a 207.)
        for index, entity in enumerate(entities):
            problem = request_problem(entity, f"body/entities/{index}")
            if problem:
                stats.requests_refused_whole += 1
                raise _ApiError(422, "invalid_request", problem)
        outcomes = _upsert(request.path_params["bp"], entities, request)
        ok = [{"identifier": o.identifier, "index": o.index, "created": o.created} for o in outcomes if o.ok]
        errors = [
            {"identifier": o.identifier, "index": o.index, "statusCode": o.status, "error": o.error, "message": o.message}
            for o in outcomes
            if not o.ok
        ]
        return JSONResponse({"ok": not errors, "entities": ok, "errors": errors}, 207 if errors else 200)

    async def upsert(request: Request) -> Response:
        body = await _body(request, state)
        [outcome] = _upsert(request.path_params["bp"], [body], request)
        if not outcome.ok:
            raise _ApiError(outcome.status, outcome.error or "invalid_request", outcome.message or "")
        return JSONResponse({"ok": True, "entity": outcome.entity}, 201)

    async def search(request: Request) -> Response:
        body = await _body(request, state)
        limit = body.get("limit", 1000)
        entities, nxt = catalog.search(request.path_params["bp"], body.get("query"), limit=limit, from_=_from(body),
                                       exclude_calculated=_flag(request, "exclude_calculated_properties"))
        include = body.get("include")
        if include:
            entities = [{k: v for k, v in e.items() if k in include or k == "identifier"} for e in entities]
        return JSONResponse({"ok": True, "entities": entities, "next": _next(request, nxt)})

    async def datasource_entities(request: Request) -> Response:
        body = await _body(request, state)
        prefix, suffix = body.get("datasource_prefix"), body.get("datasource_suffix")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise _ApiError(422, "invalid_request", "datasource_prefix and datasource_suffix are required strings")
        try:
            found, nxt = catalog.datasource_entities(prefix, suffix, body.get("before"), int(body.get("limit") or 1000),
                                                     _from(body))
        except ValueError:
            raise _ApiError(422, "invalid_request", "before must be an RFC 3339 timestamp, from a `next` this endpoint returned") from None
        nxt = _next(request, nxt)
        return JSONResponse({"ok": True, "entities": found, **({"next": nxt} if nxt else {})})

    async def search_all(request: Request) -> Response:
        body = await _body(request, state)
        return JSONResponse({"ok": True, "entities": catalog.search_all(body or None)})

    async def entity_get(request: Request) -> Response:
        entity = catalog.get_entity(request.path_params["bp"], request.path_params["id"])
        if entity is None:
            raise _ApiError(404, "not_found", "entity not found")
        return JSONResponse({"ok": True, "entity": entity})

    async def bulk_delete(request: Request) -> Response:
        body = await _body(request, state)
        ids = body.get("entities") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _ApiError(422, "invalid_request", "'entities' must be a non-empty list of identifiers")
        if len(ids) > 100:
            raise _ApiError(422, "invalid_request", f"at most 100 identifiers per request, got {len(ids)}")
        stats.delete_requests += 1
        outcome = catalog.delete_entities(request.path_params["bp"], ids, delete_dependents=_flag(request, "delete_dependents"))
        stats.entities_deleted += len(outcome.deleted) + len(outcome.dependents)
        return JSONResponse({"ok": True, "deletedEntities": outcome.deleted})

    async def delete_one(request: Request) -> Response:
        bp, ident = request.path_params["bp"], request.path_params["id"]
        if catalog.get_entity(bp, ident) is None:
            raise _ApiError(404, "not_found", f"entity {ident!r} of {bp!r} not found")
        stats.delete_requests += 1
        outcome = catalog.delete_entities(bp, [ident], delete_dependents=_flag(request, "delete_dependents"))
        stats.entities_deleted += len(outcome.deleted) + len(outcome.dependents)
        return JSONResponse({"ok": True})

    async def scorecard_create(request: Request) -> Response:
        body = await _body(request, state)
        return JSONResponse({"ok": True, "scorecard": catalog.create_scorecard(request.path_params["bp"], body)}, 201)

    async def scorecards_get(request: Request) -> Response:
        if catalog.get_blueprint(request.path_params["bp"]) is None:
            raise _ApiError(404, "not_found", f"blueprint {request.path_params['bp']!r} does not exist")
        return JSONResponse({"ok": True, "scorecards": catalog.list_scorecards(request.path_params["bp"])})

    async def scorecard_get(request: Request) -> Response:
        found = catalog.get_scorecard(request.path_params["bp"], request.path_params["id"])
        if found is None:
            raise _ApiError(404, "not_found", f"scorecard {request.path_params['id']!r} does not exist")
        return JSONResponse({"ok": True, "scorecard": found})

    async def integration_get(request: Request) -> Response:
        ident = request.path_params["id"]
        integration = state.integrations.get(ident)
        if integration is None:
            raise _ApiError(404, "not_found", f"integration {ident!r} does not exist")
        return JSONResponse({"ok": True, "integration": {"identifier": ident, **integration}})

    routes = [
        Route("/v1/auth/access_token", authed(token), methods=["POST"]),
        Route("/v1/blueprints", authed(blueprint_create), methods=["POST"]),
        Route("/v1/blueprints/entities/datasource-entities", authed(datasource_entities), methods=["POST"]),
        Route("/v1/blueprints/{bp}", authed(blueprint_get), methods=["GET"]),
        Route("/v1/blueprints/{bp}", authed(blueprint_patch), methods=["PATCH"]),
        Route("/v1/blueprints/{bp}/entities/bulk", authed(bulk_upsert), methods=["POST"]),
        Route("/v1/blueprints/{bp}/entities/search", authed(search), methods=["POST"]),
        Route("/v1/blueprints/{bp}/entities", authed(upsert), methods=["POST"]),
        Route("/v1/blueprints/{bp}/bulk/entities/delete", authed(bulk_delete), methods=["POST"]),
        Route("/v1/blueprints/{bp}/scorecards", authed(scorecard_create), methods=["POST"]),
        Route("/v1/blueprints/{bp}/scorecards", authed(scorecards_get), methods=["GET"]),
        Route("/v1/blueprints/{bp}/scorecards/{id}", authed(scorecard_get), methods=["GET"]),
        Route("/v1/blueprints/{bp}/entities/{id}", authed(entity_get), methods=["GET"]),
        Route("/v1/blueprints/{bp}/entities/{id}", authed(delete_one), methods=["DELETE"]),
        Route("/v1/entities/search", authed(search_all), methods=["POST"]),
        Route("/v1/integration/{id}", authed(integration_get), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_Gate, state=state)
    app.state.port = state
    return app
