"""Progress lines for long work: "mapping issue-tag: 48,000 / 120,000 rows (40%), 5,200 rows/s, about 14 s left".

Every phase that can run for minutes (fetching, mapping, publishing) reports the same way, at most one line every
`interval` seconds, so a run of 120,000 issues is never minutes of silence; `seconds` is the phase's duration for
its metadata. Imports nothing of the project (any package may use it).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """"0.4 s", "12 s", "3 min 20 s", "1 h 05 min"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60):02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """`advance(n)` as work gets done; a line goes to `report` when `interval` seconds passed since the last one.
    `total` None: a read whose size is not known in advance (the line says how many so far)."""

    def __init__(self, label: str, total: int | None, report: Callable[[str], None], *, unit: str = "entities",
                 interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.report, self.unit, self.interval = label, total, report, unit, interval
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._last = self.started

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if now - self._last >= self.interval and (self.total is None or self.done < self.total):
            self._last = now
            self.report(self.line())

    @property
    def seconds(self) -> float:
        return self.clock() - self.started

    def line(self) -> str:
        elapsed = max(self.seconds, 1e-9)
        rate = self.done / elapsed
        if self.total is None:  # a read whose size nobody says
            return f"{self.label}: {self.done:,} {self.unit} so far, {rate:,.0f} {self.unit}/s"
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        left = (f", about {duration((self.total - self.done) / rate)} left" if rate > 0 and self.total > self.done
                else "")
        return f"{self.label}: {self.done:,} / {self.total:,} {self.unit}{share}, {rate:,.0f} {self.unit}/s{left}"
