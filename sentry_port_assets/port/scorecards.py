"""Port's scorecards: checked as Port's API checks them, evaluated as Port evaluates them, and ensured like blueprints.

A scorecard (Port's docs: scorecards/concepts-and-structure, and the API's create-a-scorecard schema) is
`{identifier, title, levels?: [{title, color}], rules: [{identifier, title, level, query: {combinator,
conditions}}], filter?}` on one blueprint. Levels run from the lowest, where every entity starts and which no rule
may name (Port's default: Basic, Bronze, Silver, Gold), upwards; an entity reaches the highest level whose rules pass
together with every lower level's. A condition is a search rule on a property (`property`, meta-properties such as
`$team` included, aggregation and mirror properties too) or on a relation (`relation`), with Port's comparison
operators; `relatedTo` is refused. Port's docs do not say how `>`/`<` treat an empty value: here such a rule fails,
which is what a scorecard on a missing crash-free rate should say.

Read back, each entity carries `scorecards: {<identifier>: {level, rules: [{identifier, status: SUCCESS|FAILURE,
level}]}}`, as Port's entity API returns it.

Ensuring (PORT_INITIALIZE_RESOURCES, after the blueprints): a scorecard that does not exist is created with
`POST /v1/blueprints/{blueprint}/scorecards`, as Ocean's `create_scorecard` does; one that exists is left as it is,
so a scorecard edited in Port keeps its edits.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from sentry_port_assets.port.query import OPERATORS, QueryError, matches

Scorecard = dict[str, Any]
DEFAULT_LEVELS = ({"title": "Basic", "color": "paleBlue"}, {"title": "Bronze", "color": "bronze"},
                  {"title": "Silver", "color": "silver"}, {"title": "Gold", "color": "gold"})
COLORS = frozenset({"blue", "turquoise", "orange", "purple", "pink", "yellow", "green", "red", "gold", "silver",
                    "paleBlue", "darkGray", "lightGray", "bronze", "lime", "olive", "brown"})
IDENTIFIER = re.compile(r"^(?!\.{1,2}$)[\w@.+:\\/=-]+$")
RULE_IDENTIFIER = re.compile(r"^[A-Za-z0-9@_=\\-]+$")
SUCCESS, FAILURE = "SUCCESS", "FAILURE"


def levels_of(scorecard: Mapping[str, Any]) -> list[str]:
    return [level["title"] for level in scorecard.get("levels") or DEFAULT_LEVELS]


def problem(scorecard: Any) -> str | None:
    """Why Port would refuse this scorecard (a 422), or None."""
    if not isinstance(scorecard, Mapping):
        return "a scorecard must be an object"
    ident = scorecard.get("identifier")
    if not isinstance(ident, str) or not IDENTIFIER.match(ident) or len(ident) > 100:
        return f"scorecard identifier {ident!r} does not match Port's pattern"
    if not isinstance(scorecard.get("title"), str) or not isinstance(scorecard.get("rules"), list):
        return f"scorecard {ident!r} needs a title and rules"
    extra = set(scorecard) - {"identifier", "title", "levels", "rules", "filter"}
    if extra:
        return f"scorecard {ident!r}: unknown keys {sorted(extra)}"
    for level in scorecard.get("levels") or []:
        if not isinstance(level, Mapping) or not isinstance(level.get("title"), str) or level.get("color") not in COLORS:
            return f"scorecard {ident!r}: a level needs a title and one of Port's colors ({sorted(COLORS)})"
    titles = levels_of(scorecard)
    for rule in scorecard["rules"]:
        if not isinstance(rule, Mapping) or not isinstance(rule.get("identifier"), str) \
                or not RULE_IDENTIFIER.match(rule["identifier"]):
            return f"scorecard {ident!r}: rule {rule!r} needs an identifier matching {RULE_IDENTIFIER.pattern}"
        if rule.get("level") not in titles[1:]:
            return (f"scorecard {ident!r}: rule {rule['identifier']!r} names level {rule.get('level')!r}; rules "
                    f"take one of {titles[1:]} (the first level, {titles[0]!r}, has no rules)")
        query = rule.get("query")
        if not isinstance(query, Mapping) or query.get("combinator") not in ("and", "or") \
                or not isinstance(query.get("conditions"), list) or not query["conditions"]:
            return f"scorecard {ident!r}: rule {rule['identifier']!r} needs query {{combinator, conditions: [..]}}"
        for condition in query["conditions"]:
            if not isinstance(condition, Mapping) or ("property" in condition) == ("relation" in condition):
                return f"scorecard {ident!r}: a condition names either a property or a relation: {condition!r}"
            if condition.get("operator") not in OPERATORS:
                return (f"scorecard {ident!r}: operator {condition.get('operator')!r} is not one a scorecard takes "
                        f"({', '.join(OPERATORS)})")
    return None


def evaluate(scorecard: Mapping[str, Any], entity: Mapping[str, Any]) -> dict[str, Any]:
    """`{level, rules: [{identifier, status, level}]}` for one entity (with its computed properties)."""
    results = []
    for rule in scorecard.get("rules") or []:
        query = rule["query"]
        try:
            passed = matches(entity, {"combinator": query["combinator"], "rules": query["conditions"]})
        except QueryError:
            passed = False
        results.append({"identifier": rule["identifier"], "status": SUCCESS if passed else FAILURE,
                        "level": rule["level"]})
    titles = levels_of(scorecard)
    level = titles[0]
    for title in titles[1:]:
        if any(r["status"] == FAILURE for r in results if r["level"] == title):
            break
        level = title
    return {"level": level, "rules": results}


def applies(scorecard: Mapping[str, Any], entity: Mapping[str, Any]) -> bool:
    """Whether the scorecard's `filter` (same shape as a rule's query) admits the entity."""
    flt = scorecard.get("filter")
    if not flt:
        return True
    return matches(entity, {"combinator": flt.get("combinator", "and"), "rules": flt.get("conditions") or []})


async def ensure_scorecards(
    get: Callable[[str, str], Awaitable[Scorecard | None]],
    create: Callable[[str, Scorecard], Awaitable[Any]],
    scorecards: Iterable[Mapping[str, Any]],
) -> tuple[list[str], list[str]]:
    """Creates the missing scorecards of `[{blueprint, data: [scorecard]}]` (Ocean's scorecards.json shape);
    returns (`blueprint/identifier` created, `blueprint/identifier` already there and left as they are)."""
    created, kept = [], []
    for group in scorecards:
        blueprint = group["blueprint"]
        for scorecard in group.get("data") or []:
            name = f"{blueprint}/{scorecard['identifier']}"
            if await get(blueprint, scorecard["identifier"]) is not None:
                kept.append(name)
                continue
            await create(blueprint, dict(scorecard))
            created.append(name)
    return created, kept
