"""Rows as Dagster table metadata (`MetadataValue.table` with a schema), which the UI renders as a sortable table
inline. Cells are plain values: booleans read yes/no, nested values are summarised or shown as compact JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

PREVIEW_ROWS = 5
CELL_CHARS = 120


def cell(value: Any) -> str | int | float | None:
    """One table cell: numbers and text as they are, booleans as yes/no, anything nested as compact JSON."""
    if value is None or isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, limit: int | None = 50) -> Any:
    """The first `limit` rows (None: all) as a table; columns default to every key, in first-seen order."""
    shown = list(rows if limit is None else rows[:limit])
    names = list(columns) if columns is not None else list(dict.fromkeys(k for row in shown for k in row))
    records = [TableRecord({name: cell(row.get(name)) for name in names}) for row in shown]
    types = {name: _type([r.data[name] for r in records]) for name in names}
    return MetadataValue.table(records, schema=TableSchema(columns=[TableColumn(n, types[n]) for n in names]))


def _type(values: Sequence[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) for v in present):
        return "int"
    if present and all(isinstance(v, (int, float)) for v in present):
        return "float"
    return "string"


def preview_table(items: Sequence[dict[str, Any]], columns: Sequence[str]) -> Any:
    """The first items, with the given (possibly dotted) columns."""
    return table([{c: _dig(item, c) for c in columns} for item in items[:PREVIEW_ROWS]], columns)


def _dig(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, (list, dict)):
        return f"{len(value)} {'values' if isinstance(value, list) else 'fields'}"
    return value
