"""A rate-limit governor per Sentry endpoint, with windows shared between endpoints that share a bucket.

Sentry limits each caller with fixed windows plus a concurrency cap, and says so in `X-Sentry-Rate-Limit-*`
headers on every answer. Endpoints that declare limits of their own have a bucket each; every other endpoint
shares one default bucket per caller (Sentry's `get_rate_limit_key` leaves the view out of the key for the default
group). The headers carry no bucket name, so buckets are told apart by what the headers do say: endpoints that
report the same `Limit` are counted against one window. Two unrelated buckets with equal limits are then paced as
one, which only costs speed; two endpoints of one bucket paced apart would cost 429s.

The governor learns the numbers from the first answer (it probes with one request), then keeps as many requests
in flight as the concurrency cap allows and as many per window as the window has left, and sleeps until `Reset`
once a window is spent (windows of a second or of a minute alike), so a well-behaved run sees no 429 at all.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

# With no rate-limit headers at all (some self-hosted setups), this many requests run at once.
DEFAULT_CONCURRENCY = 8
# Sleep a little past `Reset`: it is whole epoch seconds and clocks differ by a few milliseconds.
RESET_MARGIN_SECONDS = 0.02
# How often a request checks for news while its window's numbers are unknown (between two windows).
ANSWER_POLL_SECONDS = 0.05


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


class Window:
    """One rate-limit bucket's window, as the answers describe it; shared by the endpoints counted against it."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset: float | None = None
        self.waited_until = 0.0
        self.in_flight: set[int] = set()  # tickets of every endpoint counted against this window
        # The reset after which a fresh window was assumed: once per reset, until an answer tells the new numbers.
        self.refilled_for: float | None = None

    def absorb(self, other: Window) -> None:
        """Take over what another endpoint's window knew, keeping the more cautious numbers."""
        self.in_flight |= other.in_flight
        if other.reset is not None and (self.reset is None or other.reset > self.reset):
            self.reset, self.remaining = other.reset, other.remaining
        elif other.reset == self.reset and other.remaining is not None:
            self.remaining = other.remaining if self.remaining is None else min(self.remaining, other.remaining)


class EndpointGovernor:
    """Admits requests to one endpoint within its window and concurrency limits."""

    def __init__(self, clock: Callable[[], float] = time.time, seq: Iterator[int] | None = None,
                 shared: Callable[[int], Window] | None = None) -> None:
        self._clock = clock
        self._changed = asyncio.Condition()
        self._seq = seq or itertools.count()
        self._shared = shared
        self._in_flight: set[int] = set()
        self._learned = False
        self.window = Window()
        self.concurrent_limit: int | None = None
        self.wait_seconds = 0.0
        self.max_in_flight = 0

    # The window's numbers, as attributes of the endpoint (what tests and metadata read).
    @property
    def limit(self) -> int | None:
        return self.window.limit

    @property
    def remaining(self) -> int | None:
        return self.window.remaining

    @property
    def reset(self) -> float | None:
        return self.window.reset

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
                w = self.window
                if w.remaining is not None and w.remaining <= 0:
                    now = self._clock()
                    if w.reset is not None and now < w.reset + RESET_MARGIN_SECONDS:
                        until = w.reset + RESET_MARGIN_SECONDS
                        # Waiters of one window wait together: count the wall time once per endpoint.
                        self.wait_seconds += max(until - max(now, w.waited_until), 0.0)
                        w.waited_until = max(w.waited_until, until)
                        # Pass the news on (the next waiter sleeps too, or finds a slot), then sleep outside the
                        # lock's hold so answers still update the state meanwhile.
                        self._changed.notify(1)
                        self._changed.release()
                        try:
                            await asyncio.sleep(until - now)
                        finally:
                            await self._changed.acquire()
                        continue
                    if w.refilled_for == w.reset:
                        # The assumed fresh window is spent as well, and no answer has told its reset yet: wait
                        # for one (answers to any endpoint of this window update it).
                        self._changed.release()
                        try:
                            await asyncio.sleep(ANSWER_POLL_SECONDS)
                        finally:
                            await self._changed.acquire()
                        continue
                    # The spent window is over: assume one fresh window until an answer tells its numbers.
                    w.refilled_for = w.reset
                    w.remaining = w.limit
                ticket = next(self._seq)
                self._in_flight.add(ticket)
                w.in_flight.add(ticket)
                self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
                if w.remaining is not None:
                    w.remaining -= 1
                return ticket

    async def release(self, ticket: int, headers: RateLimitHeaders | None, rate_limited: bool = False) -> None:
        """Hand the slot back and learn from the answer's headers (None when there was no answer)."""
        async with self._changed:
            self._in_flight.discard(ticket)
            if headers is not None:
                self._learn(ticket, headers, rate_limited)
            self.window.in_flight.discard(ticket)
            # Wake only as many waiters as can now go (one slot freed, more if the answer raised the concurrency
            # cap): waking every waiter on every answer made n requests cost O(n^2).
            self._changed.notify(max(self._capacity() - len(self._in_flight), 1))

    def _learn(self, ticket: int, h: RateLimitHeaders, rate_limited: bool) -> None:
        self._learned = True
        if h.concurrent_limit:
            self.concurrent_limit = h.concurrent_limit
        if h.limit is not None and self._shared is not None and self.window.limit != h.limit:
            shared = self._shared(h.limit)
            if shared is not self.window:
                shared.absorb(self.window)
                self.window = shared
        w = self.window
        if h.limit is not None:
            w.limit = h.limit
        if h.reset is None or h.remaining is None:
            return
        if rate_limited and h.remaining > 0:
            return  # a concurrency 429: the window itself still has room
        if h.reset <= self._clock() - RESET_MARGIN_SECONDS:
            return  # the answer speaks of a window that is already over
        # Requests sent after this one (to any endpoint of the window) and still in flight were most likely
        # counted after it.
        newer = sum(1 for t in w.in_flight if t > ticket)
        estimate = 0 if rate_limited else max(h.remaining - newer, 0)
        if w.reset is None or h.reset > w.reset:
            w.reset = h.reset
            w.remaining = estimate
        else:
            w.remaining = estimate if w.remaining is None else min(w.remaining, estimate)


class RateLimitGovernor:
    """One EndpointGovernor per endpoint template, created on first use; endpoints whose answers report the same
    `Limit` share one window (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seq = itertools.count()
        self.endpoints: dict[str, EndpointGovernor] = {}
        self.windows: dict[int, Window] = {}

    def _window_for(self, limit: int) -> Window:
        return self.windows.setdefault(limit, Window())

    def for_endpoint(self, endpoint: str) -> EndpointGovernor:
        governor = self.endpoints.get(endpoint)
        if governor is None:
            governor = self.endpoints[endpoint] = EndpointGovernor(self._clock, self._seq, self._window_for)
        return governor

    @property
    def wait_seconds(self) -> float:
        return sum(g.wait_seconds for g in self.endpoints.values())
