"""ISO 8601 timestamps as Sentry and Port write them ("2026-12-07T12:00:00.123456Z", "+00:00", or naive UTC)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def parse_iso(value: Any) -> datetime | None:
    """The moment, timezone-aware (naive means UTC); None for anything that is not such a timestamp."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
