"""Small helpers that turn items into Dagster metadata (previews stay small: the UI shows them inline)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from dagster import MetadataValue

PREVIEW_ROWS = 5


def preview_table(items: Sequence[dict[str, Any]], columns: Sequence[str]) -> MetadataValue:
    """A markdown table of the first items, with the given (possibly dotted) columns."""
    rows = [{c: _dig(item, c) for c in columns} for item in items[:PREVIEW_ROWS]]
    if not rows:
        return MetadataValue.md("_no items_")
    return MetadataValue.md(pd.DataFrame(rows, columns=list(columns)).to_markdown(index=False))


def _dig(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, (list, dict)):
        return f"{len(value)} {'values' if isinstance(value, list) else 'fields'}"
    return value


def table_md(rows: Sequence[dict[str, Any]], empty: str = "_none_", limit: int | None = 50) -> MetadataValue:
    """Rows of plain values as a markdown table (the first `limit`; None: all), or `empty` when there are none."""
    if not rows:
        return MetadataValue.md(empty)
    shown = list(rows if limit is None else rows[:limit])
    frame = pd.DataFrame(shown)
    more = f"\n\n_{len(rows) - len(shown)} more not shown_" if len(rows) > len(shown) else ""
    return MetadataValue.md(frame.to_markdown(index=False) + more)
