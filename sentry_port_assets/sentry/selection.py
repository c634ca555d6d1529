"""Which issues a Sentry issue list returns: a search query and stats period (`IssueFilter`), and the default
90-day window of the issue list (`seen_within`). What a mapping asks for is worked out in `assets/plan.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

Item = dict[str, Any]
# Without statsPeriod/start/end Sentry's issue list covers the last 90 days (MAX_STATS_PERIOD in Sentry's
# src/sentry/api/utils.py): an issue with no event in that window is not listed, whatever its status.
DEFAULT_ISSUE_WINDOW = timedelta(days=90)


def seen_within(issue: Item, window: timedelta = DEFAULT_ISSUE_WINDOW, now: datetime | None = None) -> bool:
    """Whether the issue's last event falls in the window ending now (an issue without `lastSeen` counts)."""
    last = issue.get("lastSeen")
    if not last:
        return True
    seen = datetime.fromisoformat(str(last).replace("Z", "+00:00"))
    return seen >= (now or datetime.now(timezone.utc)) - window


@dataclass(frozen=True, order=True)
class IssueFilter:
    """The Sentry side of an issue resource's selector: its search query and stats period."""

    query: str
    stats_period: str | None = None

    @property
    def key(self) -> str:
        period = "" if self.stats_period is None else f" statsPeriod={self.stats_period}"
        return f"query={self.query!r}{period}"
