"""Port's aggregation properties, computed the way Port's docs define them (build-your-software-catalog/…/
setup-blueprint/properties/aggregation-property, and the blueprint schema of Port's published API spec).

A blueprint's `aggregationProperties: {name: {title, type: "number", target, calculationSpec, query?, pathFilter?}}`:
- the entities counted are those of the `target` blueprint related to the entity, directly or not, upstream or
  downstream: by default along every path between the two blueprints (here: every chain of relations that visits
  no blueprint twice, at most MAX_HOPS long); with `pathFilter: [{path: [relation, …], fromBlueprint?}]` only along
  those paths, followed forwards from the entity (no `fromBlueprint`) or from the target entities to it
  (`fromBlueprint` = the target);
- `query` (Port's search rules, `between` date presets included) keeps some of them;
- `calculationSpec`: `{calculationBy: entities, func: count}` counts them; `{calculationBy: property, func:
  sum|min|max|median, property}` aggregates a number property over them (entities without it are left out).
  Averages over time (`func: average` with `averageOf`) are not computed here: their value is null.

Port recalculates aggregations in the background (its docs: within minutes); the local catalog computes them when
entities are read, so they are always current there.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sentry_port_assets.port.query import matches

Entity = dict[str, Any]
# (blueprint, identifier, relation, forwards) -> the (blueprint, identifier) at the other end
Step = Callable[[str, str, str, bool], Iterable[tuple[str, str]]]
MAX_HOPS = 4


# The calculation specs Port's blueprint schema accepts (its API spec: calculationSpec oneOf).
SPECS = {("entities", "count"): {"func", "calculationBy"},
         ("entities", "average"): {"func", "calculationBy", "averageOf", "measureTimeBy"},
         ("property", "sum"): {"func", "calculationBy", "property"}, ("property", "min"): {"func", "calculationBy", "property"},
         ("property", "max"): {"func", "calculationBy", "property"},
         ("property", "median"): {"func", "calculationBy", "property"},
         ("property", "average"): {"func", "calculationBy", "property", "averageOf", "measureTimeBy"}}


def spec_problem(name: str, spec: Any) -> str | None:
    """Why Port would refuse this aggregation property in a blueprint (None: it would not)."""
    if not isinstance(spec, Mapping):
        return f"aggregation property {name!r} is not an object"
    if spec.get("type", "number") != "number":
        return f"aggregation property {name!r}: type must be 'number'"
    if not isinstance(spec.get("target"), str) or not isinstance(spec.get("title"), str):
        return f"aggregation property {name!r} needs a title and a target blueprint"
    if len(spec.get("pathFilter") or []) > 1:
        return f"aggregation property {name!r}: pathFilter takes one path"
    calc = spec.get("calculationSpec")
    if not isinstance(calc, Mapping):
        return f"aggregation property {name!r} needs a calculationSpec"
    allowed = SPECS.get((calc.get("calculationBy"), calc.get("func")))
    if allowed is None:
        return (f"aggregation property {name!r}: calculationBy {calc.get('calculationBy')!r} with func "
                f"{calc.get('func')!r} is not one Port accepts")
    if set(calc) - allowed or ("property" in allowed and not isinstance(calc.get("property"), str)):
        return f"aggregation property {name!r}: calculationSpec takes {sorted(allowed)}"
    return None


def blueprint_paths(blueprints: Mapping[str, Mapping[str, Any]], source: str, target: str,
                    max_hops: int = MAX_HOPS) -> list[list[tuple[str, bool]]]:
    """Every chain of (relation, forwards) from `source` to `target` that visits no blueprint twice."""
    edges: dict[str, list[tuple[str, bool, str]]] = {}
    for bp_id, bp in blueprints.items():
        for name, rel in (bp.get("relations") or {}).items():
            dst = (rel or {}).get("target")
            if isinstance(dst, str):
                edges.setdefault(bp_id, []).append((name, True, dst))
                edges.setdefault(dst, []).append((name, False, bp_id))
    found: list[list[tuple[str, bool]]] = []

    def walk(at: str, seen: set[str], path: list[tuple[str, bool]]) -> None:
        if at == target and path:
            found.append(list(path))
            return
        if len(path) == max_hops:
            return
        for name, forwards, nxt in edges.get(at, []):
            if nxt in seen and nxt != target:  # no blueprint twice (a path may end where it began)
                continue
            path.append((name, forwards))
            walk(nxt, seen | {nxt}, path)
            path.pop()

    walk(source, {source}, [])
    return found


def _filter_paths(spec: Mapping[str, Any], source: str, target: str,
                  blueprints: Mapping[str, Mapping[str, Any]]) -> list[list[tuple[str, bool]]] | None:
    """The paths `pathFilter` names, as (relation, forwards) steps from the source entity; None: no filter."""
    filters = spec.get("pathFilter")
    if not filters:
        return None
    paths = []
    for entry in filters:
        names = list((entry or {}).get("path") or [])
        if (entry or {}).get("fromBlueprint") in (None, source):
            paths.append([(name, True) for name in names])
        else:  # from the target to the source: walked backwards from the entity
            paths.append([(name, False) for name in reversed(names)])
    return paths


def related(entity: tuple[str, str], paths: list[list[tuple[str, bool]]], step: Step, target: str) -> set[str]:
    """The identifiers of the `target` entities at the end of any of the paths from `entity`."""
    found: set[str] = set()
    for path in paths:
        frontier = {entity}
        for name, forwards in path:
            frontier = {nxt for bp, ident in frontier for nxt in step(bp, ident, name, forwards)}
            if not frontier:
                break
        found |= {ident for bp, ident in frontier if bp == target}
    return found


def value(spec: Mapping[str, Any], entities: list[Mapping[str, Any]]) -> Any:
    """The aggregation's value over the target entities (already related and filtered)."""
    calc = spec.get("calculationSpec") or {}
    func = calc.get("func")
    if calc.get("calculationBy") == "entities":
        return len(entities) if func == "count" else None
    if calc.get("calculationBy") == "property":
        numbers = [v for v in ((e.get("properties") or {}).get(calc.get("property")) for e in entities)
                   if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if func == "sum":
            return sum(numbers)
        if not numbers:
            return None
        if func == "min":
            return min(numbers)
        if func == "max":
            return max(numbers)
        if func == "median":
            return statistics.median(numbers)
        if func == "average" and calc.get("averageOf") == "total":
            return statistics.fmean(numbers)
    return None


def compute(spec: Mapping[str, Any], source: str, identifier: str, blueprints: Mapping[str, Mapping[str, Any]],
            step: Step, load: Callable[[str, set[str]], list[Entity]]) -> Any:
    """One aggregation property's value for one entity; `load(blueprint, ids)` reads target entities."""
    target = spec.get("target")
    if not isinstance(target, str) or target not in blueprints:
        return None
    paths = _filter_paths(spec, source, target, blueprints)
    if paths is None:
        paths = blueprint_paths(blueprints, source, target)
    ids = related((source, identifier), paths, step, target)
    entities = [e for e in load(target, ids) if matches(e, spec.get("query"))] if ids else []
    return value(spec, entities)
