"""A rate-limit governor per Sentry endpoint.

Sentry limits each caller per endpoint with fixed windows plus a concurrency cap, and says so in
`X-Sentry-Rate-Limit-*` headers on every answer. The governor learns those numbers from the first answer
(it probes with one request), then keeps as many requests in flight as the concurrency cap allows and as many
per window as the window has left, and sleeps until `Reset` once a window is spent, so a well-behaved run
sees no 429 at all.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# With no rate-limit headers at all (some self-hosted setups), this many requests run at once.
DEFAULT_CONCURRENCY = 8
# Sleep a little past `Reset`: it is whole epoch seconds and clocks differ by a few milliseconds.
RESET_MARGIN_SECONDS = 0.02


@dataclass(frozen=True)
class RateLimitHeaders:
    limit: int | None
    remaining: int | None
    reset: float | None
    concurrent_limit: int | None
    concurrent_remaining: int | None

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        def number(name: str) -> int | None:
            value = headers.get(f"x-sentry-rate-limit-{name}")
            try:
                return int(float(value)) if value is not None else None
            except ValueError:
                return None

        return cls(
            limit=number("limit"),
            remaining=number("remaining"),
            reset=number("reset"),
            concurrent_limit=number("concurrentlimit"),
            concurrent_remaining=number("concurrentremaining"),
        )

    @property
    def present(self) -> bool:
        return self.limit is not None or self.concurrent_limit is not None


class EndpointGovernor:
    """Admits requests to one endpoint within its window and concurrency limits."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._changed = asyncio.Condition()
        self._seq = itertools.count()
        self._in_flight: set[int] = set()
        self._learned = False
        self.concurrent_limit: int | None = None
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset: float | None = None
        self.wait_seconds = 0.0
        self._waited_until = 0.0
        self.max_in_flight = 0

    def _capacity(self) -> int:
        if self.concurrent_limit:
            return self.concurrent_limit
        return DEFAULT_CONCURRENCY if self._learned else 1

    async def acquire(self) -> int:
        """Wait for a slot; returns a ticket to hand back to `release`."""
        async with self._changed:
            while True:
                if len(self._in_flight) >= self._capacity():
                    await self._changed.wait()
                    continue
                if self.remaining is not None and self.remaining <= 0:
                    now = self._clock()
                    if self.reset is not None and now < self.reset + RESET_MARGIN_SECONDS:
                        until = self.reset + RESET_MARGIN_SECONDS
                        delay = until - now
                        # Waiters of one window wait together: count the wall time once.
                        if until > self._waited_until:
                            self.wait_seconds += until - max(now, self._waited_until)
                            self._waited_until = until
                        # Sleep outside the lock's hold so answers still update the state meanwhile.
                        self._changed.release()
                        try:
                            await asyncio.sleep(delay)
                        finally:
                            await self._changed.acquire()
                        continue
                    # The spent window is over: assume a fresh one until an answer tells its numbers.
                    self.remaining = self.limit
                ticket = next(self._seq)
                self._in_flight.add(ticket)
                self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
                if self.remaining is not None:
                    self.remaining -= 1
                return ticket

    async def release(self, ticket: int, headers: RateLimitHeaders | None, rate_limited: bool = False) -> None:
        """Hand the slot back and learn from the answer's headers (None when there was no answer)."""
        async with self._changed:
            self._in_flight.discard(ticket)
            if headers is not None:
                self._learn(ticket, headers, rate_limited)
            self._changed.notify_all()

    def _learn(self, ticket: int, h: RateLimitHeaders, rate_limited: bool) -> None:
        self._learned = True
        if h.concurrent_limit:
            self.concurrent_limit = h.concurrent_limit
        if h.limit is not None:
            self.limit = h.limit
        if h.reset is None or h.remaining is None:
            return
        if rate_limited and h.remaining > 0:
            return  # a concurrency 429: the window itself still has room
        if h.reset <= self._clock() - RESET_MARGIN_SECONDS:
            return  # the answer speaks of a window that is already over
        # Requests sent after this one and still in flight were most likely counted after it.
        newer = sum(1 for t in self._in_flight if t > ticket)
        estimate = 0 if rate_limited else max(h.remaining - newer, 0)
        if self.reset is None or h.reset > self.reset:
            self.reset = h.reset
            self.remaining = estimate
        else:
            self.remaining = estimate if self.remaining is None else min(self.remaining, estimate)


class RateLimitGovernor:
    """One EndpointGovernor per endpoint template, created on first use."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.endpoints: dict[str, EndpointGovernor] = {}

    def for_endpoint(self, endpoint: str) -> EndpointGovernor:
        governor = self.endpoints.get(endpoint)
        if governor is None:
            governor = self.endpoints[endpoint] = EndpointGovernor(self._clock)
        return governor

    @property
    def wait_seconds(self) -> float:
        return sum(g.wait_seconds for g in self.endpoints.values())
