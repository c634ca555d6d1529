"""Bounded concurrency plus Port's per-organization request window (`x-ratelimit-limit/remaining/reset`).

Port counts requests per organization in windows and says so on every answer. The governor keeps at most
`max_concurrency` requests in flight and, once it has seen the headers, sends no more in a window than the window
has left (the answer's `remaining` minus what is still in flight); when the window is spent it sleeps until
`reset`, then starts the next window with `limit` requests. `reset` is read as epoch seconds when above 10,000,
else as seconds until the reset. A 429 empties the window (and sets its reset when the answer says it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

EPOCH_THRESHOLD = 10_000
# Sleep a little past the reset: clocks differ by a few milliseconds.
RESET_MARGIN_SECONDS = 0.01
# A window whose reset moved by more than this is a new window.
SAME_WINDOW_TOLERANCE = 0.25


def _number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def seconds_until_reset(value: float, wall: Callable[[], float] = time.time) -> float:
    return max(0.0, value - wall()) if value > EPOCH_THRESHOLD else max(0.0, value)


class PortRateGovernor:
    def __init__(
        self,
        max_concurrency: int = 8,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self.max_concurrency = max_concurrency
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._semaphore: asyncio.Semaphore | None = None
        self._answered: asyncio.Event | None = None
        self.limit: int | None = None
        self.remaining: float | None = None
        self.reset_at: float | None = None
        self.in_flight = 0
        self.wait_seconds = 0.0
        self.max_in_flight = 0

    def _sem(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._answered = asyncio.Event()
        return self._semaphore

    async def acquire(self) -> None:
        await self._sem().acquire()
        try:
            while True:
                now = self._clock()
                if self.reset_at is not None and now >= self.reset_at:
                    self.reset_at = None
                    self.remaining = self.limit
                if self.remaining is None or self.remaining >= 1:
                    if self.remaining is not None:
                        self.remaining -= 1
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    return
                started = self._clock()
                if self.reset_at is not None:
                    await self._sleep(self.reset_at - now + RESET_MARGIN_SECONDS)
                else:  # a new window is spent before any answer told us when it ends: wait for one
                    assert self._answered is not None
                    self._answered.clear()
                    try:
                        await asyncio.wait_for(self._answered.wait(), timeout=0.05)
                    except asyncio.TimeoutError:
                        pass
                self.wait_seconds += self._clock() - started
        except BaseException:
            self._sem().release()
            raise

    def release(self, headers: Mapping[str, str] | None, *, status: int | None = None) -> None:
        """Hands the slot back and learns from the answer's headers (None when no answer came)."""
        self.in_flight -= 1
        self._sem().release()
        if headers is not None:
            self._learn(headers, status)
        if self._answered is not None:
            self._answered.set()

    def _learn(self, headers: Mapping[str, str], status: int | None) -> None:
        limit = _number(headers, "x-ratelimit-limit")
        remaining = _number(headers, "x-ratelimit-remaining")
        reset = _number(headers, "x-ratelimit-reset")
        retry_after = _number(headers, "retry-after")
        now = self._clock()
        if limit is not None:
            self.limit = int(limit)
        reset_at = now + seconds_until_reset(reset, self._wall) if reset is not None else None
        if status == 429:
            self.remaining = 0
            if reset_at is None and retry_after is not None:
                reset_at = now + retry_after
            if reset_at is not None:
                self.reset_at = max(self.reset_at or 0.0, reset_at)
            return
        if remaining is None or reset_at is None:
            return
        if self.reset_at is None or reset_at > self.reset_at + SAME_WINDOW_TOLERANCE:
            self.reset_at = reset_at  # a new window
        elif reset_at < self.reset_at - SAME_WINDOW_TOLERANCE:
            return  # a late answer from a window that is over
        self.remaining = remaining - self.in_flight
