"""Port's search queries, evaluated the way Port evaluates them.

A query is `{"combinator": "and"|"or", "rules": [rule | query, ...]}`; a rule is
`{"property": "$identifier"|"$title"|"$team"|"$blueprint"|"$datasource"|<property name>, "operator": op, "value": v}`.
Used by the local catalog (search, search relations, search identifiers) and by the reconciler (to compare
a search relation with the identifier Port resolved it to).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sentry_port_assets.timestamps import parse_iso

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "in", "notIn", "contains", "doesNotContains", "containsAny",
             "beginsWith", "doesNotBeginsWith", "endsWith", "doesNotEndsWith", "isEmpty", "isNotEmpty", "between",
             "notBetween")
# Comparisons: on numbers only (and on text, the same type on both sides); an empty value fails them.
_ORDER = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
# The date presets of `between` (Port's docs, search-and-query/operators/comparison-operators): the ranges that end
# now, as days back (`today`, `yesterday` and `tomorrow` are calendar days, in UTC here).
PRESET_DAYS = {"lastDay": 1, "lastWeek": 7, "last2Weeks": 14, "lastMonth": 30, "last3Months": 90, "last6Months": 180,
               "last12Months": 365, "last2Years": 730, "last3Years": 1095}


class QueryError(ValueError):
    """The query is malformed (unknown operator or combinator, missing keys)."""


def is_search_query(value: Any) -> bool:
    return isinstance(value, Mapping) and "combinator" in value and "rules" in value


def _field(entity: Mapping[str, Any], prop: str) -> Any:
    if prop == "$identifier":
        return entity.get("identifier")
    if prop == "$title":
        return entity.get("title")
    if prop == "$team":
        return entity.get("team")
    if prop == "$blueprint":
        return entity.get("blueprint")
    if prop == "$icon":
        return entity.get("icon")
    if prop == "$datasource":  # the writer's User-Agent, which Port records on every entity
        return entity.get("$datasource")
    if prop in ("$createdAt", "$updatedAt"):
        return entity.get(prop[1:])
    return (entity.get("properties") or {}).get(prop)


def _rule_matches(entity: Mapping[str, Any], rule: Mapping[str, Any]) -> bool:
    if is_search_query(rule):
        return matches(entity, rule)
    try:
        op = rule["operator"]
        # a scorecard's condition may test a relation instead of a property
        actual = ((entity.get("relations") or {}).get(rule["relation"]) if "relation" in rule
                  else _field(entity, rule["property"]))
    except (KeyError, TypeError) as exc:
        raise QueryError(f"a search rule needs 'property' (or 'relation') and 'operator': {rule!r}") from exc
    value = rule.get("value")
    if op == "=":
        if isinstance(actual, list):
            return value in actual
        return actual == value and actual is not None
    if op == "!=":
        return actual != value
    if op in _ORDER:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (actual, value))
        return (numbers or (isinstance(actual, str) and isinstance(value, str))) and _ORDER[op](actual, value)
    if op in ("doesNotContains", "doesNotBeginsWith", "doesNotEndsWith"):
        positive = {"doesNotContains": "contains", "doesNotBeginsWith": "beginsWith", "doesNotEndsWith": "endsWith"}
        return not _rule_matches(entity, {**rule, "operator": positive[op]})
    if op == "in":
        if not isinstance(value, list):
            raise QueryError(f"operator 'in' needs a list value: {rule!r}")
        if isinstance(actual, list):
            return any(a in value for a in actual)
        return actual is not None and actual in value
    if op == "notIn":
        if not isinstance(value, list):
            raise QueryError(f"operator 'notIn' needs a list value: {rule!r}")
        return actual not in value
    if op == "contains":
        if isinstance(actual, str) and isinstance(value, str):
            return value in actual
        if isinstance(actual, list):
            return value in actual
        return False
    if op == "containsAny":
        values = value if isinstance(value, list) else [value]
        if isinstance(actual, str):
            return any(isinstance(v, str) and v in actual for v in values)
        if isinstance(actual, list):
            return any(v in actual for v in values)
        return False
    if op == "beginsWith":
        return isinstance(actual, str) and isinstance(value, str) and actual.startswith(value)
    if op == "endsWith":
        return isinstance(actual, str) and isinstance(value, str) and actual.endswith(value)
    if op == "isEmpty":
        return actual in (None, "", [], {})
    if op == "isNotEmpty":
        return actual not in (None, "", [], {})
    if op in ("between", "notBetween"):
        start, end = date_range(value, rule)
        moment = parse_iso(actual)
        inside = moment is not None and start <= moment <= end
        return inside if op == "between" else moment is not None and not inside
    raise QueryError(f"unknown search operator {op!r} (expected one of {', '.join(OPERATORS)})")


def date_range(value: Any, rule: Any = None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The range a `between` rule's value names: `{"preset": …}` or `{"from": …, "to": …}`."""
    now = now or datetime.now(timezone.utc)
    if isinstance(value, Mapping) and "preset" in value:
        preset = value["preset"]
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        calendar = {"today": (midnight, midnight + timedelta(days=1)),
                    "yesterday": (midnight - timedelta(days=1), midnight),
                    "tomorrow": (midnight + timedelta(days=1), midnight + timedelta(days=2))}
        if preset in calendar:
            return calendar[preset]
        if preset in PRESET_DAYS:
            return now - timedelta(days=PRESET_DAYS[preset]), now
        raise QueryError(f"unknown date preset {preset!r} (expected one of {', '.join([*PRESET_DAYS, *calendar])})")
    if isinstance(value, Mapping) and "from" in value and "to" in value:
        start, end = parse_iso(value["from"]), parse_iso(value["to"])
        if start is None or end is None:
            raise QueryError(f"'between' needs date-times in from/to: {rule!r}")
        return start, end
    raise QueryError(f"'between' needs {{\"preset\": …}} or {{\"from\": …, \"to\": …}}: {rule!r}")


def matches(entity: Mapping[str, Any], query: Mapping[str, Any] | None) -> bool:
    """Whether `entity` satisfies `query` (None or an empty rule list matches everything)."""
    if not query:
        return True
    combinator = query.get("combinator", "and")
    rules = query.get("rules") or []
    if combinator not in ("and", "or"):
        raise QueryError(f"unknown combinator {combinator!r} (expected 'and' or 'or')")
    if not isinstance(rules, list):
        raise QueryError("'rules' must be a list")
    if not rules:
        return True
    results = (_rule_matches(entity, rule) for rule in rules)
    return all(results) if combinator == "and" else any(results)


def resolve(query: Mapping[str, Any], entities: Iterable[Mapping[str, Any]]) -> list[str]:
    """The identifiers of the entities matching `query`, in the order given."""
    return [e["identifier"] for e in entities if matches(e, query)]
