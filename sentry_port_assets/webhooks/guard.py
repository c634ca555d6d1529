"""Slow or greedy clients cannot starve the receiver.

uvicorn waits for a request's headers for ever, and a client that trickles them (or its body) keeps a connection and a
file descriptor: about a thousand such connections exhaust the process's file limit, and then neither Sentry's
deliveries nor `/healthz` get through. The receiver therefore runs uvicorn with `GuardedH11Protocol`, which

- closes a connection whose request headers are not complete `SENTRY_WEBHOOK_HEADER_TIMEOUT_SECONDS` (default 10)
  after it opened or after its previous response;
- refuses (closes at once) a connection beyond `SENTRY_WEBHOOK_MAX_CONNECTIONS_PER_CLIENT` (default 20) open from one
  address, or beyond `SENTRY_WEBHOOK_MAX_CONNECTIONS` (default 500) in all;

and the endpoint itself gives a body `SENTRY_WEBHOOK_BODY_TIMEOUT_SECONDS` (default 10) to arrive (408 after that).
Sentry sends one small request per connection and expects an answer within a second, so none of this touches it.
Behind a load balancer every client has the balancer's address: raise the per-client limit there.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from sentry_port_assets.config import number_setting


def header_timeout() -> float:
    return number_setting("SENTRY_WEBHOOK_HEADER_TIMEOUT_SECONDS")


def body_timeout() -> float:
    return number_setting("SENTRY_WEBHOOK_BODY_TIMEOUT_SECONDS")


def check_settings() -> None:
    """Raises ConfigError (a ValueError) naming a setting that is not usable (called when the receiver starts)."""
    for name in _SETTINGS:
        number_setting(name)


_SETTINGS = ("SENTRY_WEBHOOK_HEADER_TIMEOUT_SECONDS", "SENTRY_WEBHOOK_BODY_TIMEOUT_SECONDS",
             "SENTRY_WEBHOOK_MAX_CONNECTIONS_PER_CLIENT", "SENTRY_WEBHOOK_MAX_CONNECTIONS", "SENTRY_WEBHOOK_MAX_SKEW_SECONDS")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and connection limits (see the module doc)."""

    open_by_client: Counter[str] = Counter()
    open_total = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._peer = "?"
        self._counted = False
        self._header_seconds = header_timeout()
        self._per_client = int(number_setting("SENTRY_WEBHOOK_MAX_CONNECTIONS_PER_CLIENT"))
        self._overall = int(number_setting("SENTRY_WEBHOOK_MAX_CONNECTIONS"))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = self.client[0] if self.client else "?"
        cls = type(self)
        if cls.open_total >= self._overall or cls.open_by_client[self._peer] >= self._per_client:
            transport.abort()
            return
        cls.open_total += 1
        cls.open_by_client[self._peer] += 1
        self._counted = True
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted:
            cls = type(self)
            cls.open_total -= 1
            cls.open_by_client[self._peer] -= 1
            if cls.open_by_client[self._peer] <= 0:
                del cls.open_by_client[self._peer]
            self._counted = False
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the headers are in: the body has its own deadline in the endpoint

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # a kept-alive connection must send its next headers in time too

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._header_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.abort()
