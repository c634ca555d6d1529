"""The mapping engine: raw Sentry items -> Port entities, with Ocean's semantics, one jq program per resource.

API (what the entity assets, the publisher, the webhook job and the CLI call):

- `compile_resource(resource, index) -> CompiledResource`: compiles the resource's whole mapping into ONE jq
  program (and checks every leaf on its own first, raising `MappingConfigError` naming the resource index, kind,
  field path, expression and jq's message). `load_mapping()` does this for every resource at load time.
- `CompiledResource.map(items) -> MappingResult`: maps raw items (the resource's own items: which ones a raw
  asset value holds for a resource is `assets/plan.py`'s business).
- `MappingResult`: `entities` (Port entity dicts, in input order), `misconfigurations` (one
  `Misconfiguration` per resource and field: how many rows, one example item id, jq's message), `dropped`
  (entities without identifier or blueprint), `filtered` (rows the selector rejected), `errors`
  (`ResourceError`: a selector that did not yield a boolean; the resource counts as failed, as in Ocean).

Semantics (Ocean's JQ entity processor, port_ocean/core/handlers/entity_processor/jq_entity_processor.py): each leaf's first output, null when
it yields nothing, null or an error (recorded as a misconfiguration); falsy values kept; `title`, `icon`, `team`
present only when the mapping sets them, `properties`/`relations` always present; an entity whose identifier or
blueprint is falsy (null, "", 0, false, empty) is dropped and counted; nested dicts/lists (search queries) are
evaluated leaf by leaf; `itemsToParse` rows are `{**parent_without_the_array, <itemsToParseName>: element}`
(the parent is kept whole with `itemsToParseTopLevelTransform: false`); an item whose `itemsToParse` is not a
list yields nothing and is reported as a misconfiguration of `itemsToParse`.

Speed: items go to jq in batches as one newline-separated JSON text; the program emits one value per item. If
jq fails on a batch, or yields other than one output per item (`halt`, `empty`), each item of the batch runs alone,
and an item that still fails is mapped field by field (`NaiveResource`, Ocean's way: every leaf compiled and run on
its own), so no item can take another's output. `NaiveResource` is also the benchmark's baseline. Only the
top-level keys the mapping provably reads are serialised for jq (`jqcompile.observed_keys`; mappings that may read
unnamed keys get whole items).

Safety: jq runs only in forked workers bounded in time and memory (`bounded.py`, SENTRY_PORT_JQ_TIMEOUT_SECONDS,
SENTRY_PORT_JQ_MEMORY_MB); a program past a limit fails its resource with the field and expression named. Inputs of
`PARALLEL_MIN_ITEMS` items or more are split over `SENTRY_PORT_MAPPING_WORKERS` workers (default the CPU count;
1 disables), each returning its share's result; same result and order as serial mapping.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any, Iterable, Iterator, Sequence

import jq

from sentry_port_assets.config import number_setting
from sentry_port_assets.mapping.config import ResourceConfig
from sentry_port_assets.mapping.bounded import LimitExceeded, Limits, run_bounded
from sentry_port_assets.mapping.jqcompile import (
    JqCompileError,
    Leaf,
    build_resource_program,
    ERROR_KEY,
    compile_expression,
    observed_keys,
    reads_input,
    walk_template,
)

Item = dict[str, Any]
BATCH_SIZE = 500
_dumps = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode


class MappingConfigError(ValueError):
    """A mapping file that cannot be used; the message names what to fix. `problems`: each thing to fix, when there
    are several (every broken expression of a mapping is named at once)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass
class Misconfiguration:
    """A field that did not yield a value on `count` rows: a jq error (`null` False), or null / no output."""

    resource_index: int
    kind: str
    field: str
    expression: str
    count: int
    example_item_id: Any
    message: str
    null: bool = False
    # null rows whose raw item holds the null itself (`"assignedTo": null` for `.assignedTo.email`)
    explained: int = 0

    def describe(self) -> str:
        return (
            f"resources[{self.resource_index}] ({self.kind}) {self.field}: {self.expression!r} -> {self.message} "
            f"on {self.count} row(s), e.g. item {self.example_item_id!r}"
        )


@dataclass
class ResourceError:
    resource_index: int
    kind: str
    field: str
    expression: str
    message: str
    example_item_id: Any = None
    count: int = 1

    def describe(self) -> str:
        return (
            f"resources[{self.resource_index}] ({self.kind}) {self.field}: {self.expression!r}: {self.message} "
            f"({self.count} row(s), e.g. item {self.example_item_id!r})"
        )


@dataclass
class MappingResult:
    entities: list[dict[str, Any]] = field(default_factory=list)
    misconfigurations: list[Misconfiguration] = field(default_factory=list)
    dropped: int = 0
    filtered: int = 0
    items: int = 0
    errors: list[ResourceError] = field(default_factory=list)
    # fields that were null on some rows because the data is (see `classify_nulls`): not misconfigurations
    nulls: list[Misconfiguration] = field(default_factory=list)

    def extend(self, other: MappingResult) -> MappingResult:
        self.entities.extend(other.entities)
        self.misconfigurations.extend(other.misconfigurations)
        self.nulls.extend(other.nulls)
        self.dropped += other.dropped
        self.filtered += other.filtered
        self.items += other.items
        self.errors.extend(other.errors)
        return self

    @property
    def ok(self) -> bool:
        return not self.errors


def item_id(item: Any) -> Any:
    if isinstance(item, dict):
        for key in ("id", "slug", "email", "identifier", "comment_id", "name"):
            value = item.get(key)
            if value is not None:
                return value
    return None


NULL_MESSAGE = "yielded null or nothing"


def outcome_message(outcome: list[Any]) -> str:
    if len(outcome) == 0 or (len(outcome) == 1 and outcome[0] is None):
        return NULL_MESSAGE
    if len(outcome) == 1:
        return f"yielded {json.dumps(outcome[0])[:80]}"
    message = outcome[1]
    return f"jq error: {message if isinstance(message, str) else json.dumps(message)}"


def _template_of(resource: ResourceConfig) -> dict[str, Any]:
    """The entity template: Ocean's `mappings.dict(exclude_unset=True)`, with properties/relations always."""
    m = resource.port.entity.mappings
    template: dict[str, Any] = {}
    for key in ("identifier", "title", "icon", "blueprint", "team", "properties", "relations"):
        value = getattr(m, key)
        if key in ("properties", "relations"):
            template[key] = dict(value or {})
        elif key in m.model_fields_set and value is not None:
            template[key] = value
    return template


class _Collector:
    """Accumulates one resource's result: misconfigurations keyed by field."""

    def __init__(self, compiled: CompiledResource):
        self.c = compiled
        self.result = MappingResult()
        self._mis: dict[str, Misconfiguration] = {}
        self._err: dict[str, ResourceError] = {}

    def misconfigured(self, path: str, expression: str, message: str, item: Any) -> None:
        m = self._mis.get(path)
        if m is None:
            self._mis[path] = Misconfiguration(
                self.c.index, self.c.kind, path, expression, 1, item_id(item), message
            )
        else:
            m.count += 1
            m.null = False  # an error on any row makes the field misconfigured

    def null(self, path: str, expression: str, item: Any) -> None:
        """The field yielded null or nothing on this row (`classify_nulls` decides, once every row is mapped,
        whether that is the data's null or a misconfiguration)."""
        m = self._mis.get(path)
        if m is None:
            m = self._mis[path] = Misconfiguration(
                self.c.index, self.c.kind, path, expression, 0, item_id(item), NULL_MESSAGE, null=True
            )
        m.count += 1
        if null_in_data(expression, item, self.c.items_to_parse_name if self.c.items_to_parse else None):
            m.explained += 1

    def error(self, path: str, expression: str, message: str, item: Any) -> None:
        e = self._err.get(path)
        if e is None:
            self._err[path] = ResourceError(self.c.index, self.c.kind, path, expression, message, item_id(item))
        else:
            e.count += 1

    def entity(self, entity: dict[str, Any]) -> None:
        if entity.get("identifier") and entity.get("blueprint"):
            self.result.entities.append(entity)
        else:
            self.result.dropped += 1

    def finish(self) -> MappingResult:
        self.result.misconfigurations = list(self._mis.values())
        self.result.errors = list(self._err.values())
        return self.result


def share_relations(result: MappingResult, shared: dict[str, Any]) -> MappingResult:
    """Equal relation values that are objects or lists (a search relation on the same email, the same list of
    teams) become one object, batch after batch: an organization's 300,000 issue entities would otherwise hold
    300,000 copies of a few dozen assignee rules (a third of their memory). Nothing mutates a relation value in place
    (writers replace them), so sharing is safe; the IO manager's pickle keeps it."""
    for entity in result.entities:
        relations = entity.get("relations")
        if type(relations) is not dict:
            continue
        for name, value in relations.items():
            if type(value) is dict or type(value) is list:
                relations[name] = shared.setdefault(_dumps(value), value)
    return result


class NaiveResource:
    """Ocean's way, field by field: every leaf compiled on its own and run on each row separately.

    Used for the one item on which the combined program fails, and as the benchmark's baseline.
    """

    def __init__(self, compiled: CompiledResource):
        self.c = compiled

    @staticmethod
    def _first(expr: str, row: Any) -> list[Any]:
        """Outcome of one leaf: [value], [] (no output) or [None, message] (error)."""
        try:
            it = compile_expression(expr).input_value(row)
            try:
                return [next(iter(it))]
            except StopIteration:
                return []
        except Exception as exc:  # jq raises ValueError; anything else is equally a failed leaf
            return [None, str(exc)]

    def _build(self, template: Any, row: Any, path: str, col: _Collector, item: Any) -> Any:
        if isinstance(template, dict):
            return {
                k: self._build(v, row, f"{path}.{k}" if path else str(k), col, item) for k, v in template.items()
            }
        if isinstance(template, list):
            return [self._build(v, row, f"{path}[{i}]", col, item) for i, v in enumerate(template)]
        outcome = self._first(template, row)
        value = outcome[0] if outcome else None
        if len(outcome) == 2:
            col.misconfigured(path, template, outcome_message(outcome), item)
        elif value is None:
            col.null(path, template, item)
        return value

    def map_item(self, item: Any, col: _Collector) -> None:
        c = self.c
        rows: list[Any] = [item]
        if c.items_to_parse:
            outcome = self._first(c.items_to_parse, item)
            if len(outcome) != 1 or not isinstance(outcome[0], list):
                col.misconfigured("itemsToParse", c.items_to_parse, _itp_message(outcome), item)
                return
            base = item
            if c.top_level_transform:
                cut = self._first(f"del({c.items_to_parse}\n)", item)
                if len(cut) == 1:
                    base = cut[0]
            if not isinstance(base, dict):
                base = {}
            rows = [{**base, c.items_to_parse_name: element} for element in outcome[0]]
        for row in rows:
            if c.selector.strip() != "true":
                sel = self._first(c.selector, row)
                if len(sel) == 1 and sel[0] is False:
                    col.result.filtered += 1
                    continue
                if not (len(sel) == 1 and sel[0] is True):
                    col.error("selector.query", c.selector, _selector_message(sel), item)
                    continue
            col.entity(self._build(c.template, row, "", col, item))

    def map(self, items: Iterable[Any]) -> MappingResult:
        col = _Collector(self.c)
        for item in items:
            col.result.items += 1
            self.map_item(item, col)
        return classify_nulls(col.finish())


def _getter(keys: tuple[Any, ...]) -> Any:
    """A fast accessor for one leaf's value in an entity: `lambda e: e["properties"]["link"]`."""
    return eval("lambda e: e" + "".join(f"[{k!r}]" for k in keys))  # noqa: S307 - keys are str/int reprs


def _set(entity: Any, keys: tuple[Any, ...], value: Any) -> None:
    for k in keys[:-1]:
        entity = entity[k]
    entity[keys[-1]] = value


def _itp_message(outcome: list[Any]) -> str:
    if len(outcome) == 1:
        return f"expected a list, got {_jq_type(outcome[0])}"
    return outcome_message(outcome)


def _selector_message(outcome: list[Any]) -> str:
    if len(outcome) == 1:
        return f"selector must yield a boolean, got {_jq_type(outcome[0])} {json.dumps(outcome[0])[:80]}"
    return f"selector must yield a boolean: {outcome_message(outcome)}"


def _jq_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class CompiledResource:
    """One mapping resource compiled into ONE jq program (see `jqcompile.build_resource_program`)."""

    def __init__(self, resource: ResourceConfig, index: int):
        self.resource = resource
        self.index = index
        self.kind: str = resource.kind
        self.selector: str = resource.selector.query
        port = resource.port
        self.items_to_parse: str | None = port.items_to_parse
        self.items_to_parse_name: str = port.items_to_parse_name
        self.top_level_transform: bool = port.items_to_parse_top_level_transform
        self.template = _template_of(resource)
        # Every leaf on its own first: the error names the exact field.
        checks: list[tuple[str, Any]] = [("selector.query", self.selector)]
        if self.items_to_parse is not None:
            checks.append(("port.itemsToParse", self.items_to_parse))
        leaves: list[Leaf] = []
        walk_template(self.template, leaves, "", inline_constants=False)
        checks += [(f"port.entity.mappings.{leaf.path}", leaf.expression) for leaf in leaves]
        self.checks: list[tuple[str, str]] = checks
        # Every broken expression is named at once: fixing them one load at a time is a slow loop.
        problems: list[str] = []
        for path, expr in checks:
            if not isinstance(expr, str):
                problems.append(
                    f"resources[{index}] (kind {self.kind!r}) {path}: expected a jq expression (a string), got "
                    f"{type(expr).__name__} {expr!r}; quote it, e.g. '{json.dumps(expr)}'"
                )
                continue
            try:
                compile_expression(expr)
            except JqCompileError as exc:
                problems.append(
                    f"resources[{index}] (kind {self.kind!r}) {path}: jq expression {expr!r} does not compile: "
                    f"{exc.message}"
                )
        if problems:
            raise MappingConfigError("\n".join(problems), problems)
        text, self.leaves = build_resource_program(
            self.template, self.selector, self.items_to_parse, self.items_to_parse_name, self.top_level_transform
        )
        self.program_text = text
        self._getters = [(_getter(leaf.keys), leaf) for leaf in self.leaves]
        try:
            self.program = jq.compile(text)
        except ValueError as exc:  # every leaf compiled alone, so this is our bug or a jq corner case
            raise MappingConfigError(
                f"resources[{index}] (kind {self.kind!r}): the combined jq program does not compile "
                f"although each expression does: {exc}"
            ) from None
        self.batch_size = 1 if any(reads_input(e) for _, e in checks) else BATCH_SIZE
        # Send jq only the top-level keys the mapping can read, when that is provable (see observed_keys).
        keys: set[str] | None = set()
        for _, expr in checks:
            seen = observed_keys(expr)
            if seen is None:
                keys = None
                break
            keys |= seen
        self.projected_keys: tuple[str, ...] | None = tuple(sorted(keys)) if keys is not None else None
        self.naive = NaiveResource(self)

    def _collect(self, item: Any, rows: list[Any], col: _Collector) -> None:
        for row in rows:
            if type(row) is list and row[0] == "N":
                # a leaf without any output emptied the constructor: this item goes field by field
                self.naive.map_item(item, col)
                return
        for row in rows:
            if type(row) is dict:
                for get, leaf in self._getters:
                    try:
                        value = get(row)
                    except (KeyError, IndexError, TypeError):  # cannot happen: the template made the entity
                        value = None
                    if value is None:
                        col.null(leaf.path, leaf.expression, item)
                    elif type(value) is dict and ERROR_KEY in value:
                        _set(row, leaf.keys, None)
                        col.misconfigured(leaf.path, leaf.expression, outcome_message([None, value[ERROR_KEY]]), item)
                col.entity(row)
                continue
            tag = row[0]
            if tag == "F":
                col.result.filtered += 1
            elif tag == "S":
                col.error("selector.query", self.selector, _selector_message(row[1]), item)
            else:  # "P"
                col.misconfigured("itemsToParse", self.items_to_parse or "", _itp_message(row[1]), item)

    def map(self, items: Sequence[Any], workers: int | None = None, limits: Limits | None = None,
            progress: Callable[[int], None] | None = None) -> MappingResult:
        """Map raw items in forked workers bounded in time and memory (`bounded.py`): one, or for large inputs
        `workers` (default: the CPU count, or SENTRY_PORT_MAPPING_WORKERS) each mapping a share. The result is the
        same as mapping serially, in the same order. A program that runs out of its limits fails the resource
        (`errors`) with the field and expression that did, and nothing else of the resource is mapped.
        `progress(n)`: called as n more items are mapped."""
        items = items if isinstance(items, list) else list(items)
        workers = _default_workers() if workers is None else workers
        limits = limits or Limits.from_env()
        n = len(items)
        shares = workers if workers > 1 and n >= PARALLEL_MIN_ITEMS else 1
        size = max(1, -(-n // shares))
        bounds = [(a, min(n, a + size)) for a in range(0, n, size)] or [(0, 0)]
        shared: dict[str, Any] = {}

        def collect(slot: int, piece: tuple[int, str | MappingResult]) -> MappingResult:
            start, out = piece  # jq's text is turned into entities here while the workers go on
            end = min(bounds[slot][1], start + self.batch_size)
            if progress is not None:
                progress(end - start)
            if isinstance(out, MappingResult):
                return out
            return share_relations(self._collect_text(items[start:end], out), shared)

        try:
            chunks = run_bounded([partial(self._jq_range, items, a, b) for a, b in bounds], limits, collect)
        except LimitExceeded as exc:
            return self._limit_error(items, self._locate(items, exc, limits), limits)
        return classify_nulls(_merge_parts(self, [part for chunk in chunks for part in chunk]))

    def _jq_range(self, items: list[Any], a: int, b: int,
                  tick: Callable[[int], None]) -> Iterator[tuple[int, str | MappingResult]]:
        """In a bounded worker: per batch of items[a:b], jq's output text when it is one plain row list per item
        (the parent turns it into entities without running jq), else the batch mapped here with every fallback.
        Only text and the rare fallback batches travel back: pickling every entity would cost more than jq."""
        with _gc_paused():
            for start in range(a, b, self.batch_size):
                end = min(b, start + self.batch_size)
                tick(start)
                try:
                    text = self.program.input_text("\n".join(map(_dumps, self._project(items[start:end])))).text()
                except Exception:
                    text = None
                if text is None or _output_count(text) != end - start:
                    # jq failed, or an item yielded nothing (`halt`): item by item
                    yield start, self._map_range(items, start, end, tick)
                elif _NO_OUTPUT_ROW in text:  # a leaf without output: those items go field by field, here
                    yield start, self._collect_text(items[start:end], text)
                else:
                    yield start, text

    def _collect_text(self, batch: list[Any], text: str) -> MappingResult:
        col = _Collector(self)
        col.result.items = len(batch)
        with _gc_paused():
            for item, rows in zip(batch, json.loads("[" + text.replace("\n", ",") + "]")):
                self._collect(item, rows, col)
        return col.finish()

    def _locate(self, items: list[Any], exc: LimitExceeded, limits: Limits) -> LimitExceeded:
        """The item a batch ran out of its limits on: the batch again, item by item, within the same limits."""
        start = max(exc.position, 0)
        try:
            end = min(len(items), start + self.batch_size)
            run_bounded([lambda tick: [self._map_range(items, start, end, tick)]], limits)
        except LimitExceeded as inner:
            return inner
        return exc

    def _map_range(self, items: list[Any], a: int, b: int, tick: Callable[[int], None]) -> MappingResult:
        """In a bounded worker: items[a:b], with `tick(i)` as each item i is done."""
        with _gc_paused():
            col = _Collector(self)
            col.result.items = b - a
            for start in range(a, b, self.batch_size):
                batch = items[start:min(b, start + self.batch_size)]
                outputs = self._run_batch(batch, start, tick)
                if outputs is not None:
                    for item, rows in zip(batch, outputs):
                        self._collect(item, rows, col)
                    continue
                # jq failed, or yielded no output for some item (`halt`, `empty` at the top): outputs can no longer
                # be matched to items by position, so each item of the batch is run alone.
                for k, item in enumerate(batch):
                    one = self._run_batch([item], start + k, tick)
                    if one is None:
                        self.naive.map_item(item, col)  # field by field: the failing leaf is recorded
                    else:
                        self._collect(item, one[0], col)
            return col.finish()

    def _run_batch(self, batch: list[Any], start: int, tick: Callable[[int], None]) -> list[Any] | None:
        """jq's output per item of `batch`, or None when jq failed or did not yield exactly one output per item."""
        text = "\n".join(map(_dumps, self._project(batch)))
        out: list[Any] = []
        tick(start)
        try:
            for rows in self.program.input_text(text):
                out.append(rows)
                tick(start + len(out))
        except Exception:
            return None
        return out if len(out) == len(batch) else None

    def _limit_error(self, items: list[Any], exc: LimitExceeded, limits: Limits) -> MappingResult:
        """The resource's failure when a worker ran out of a limit: which item, and which field (found by running
        each field alone on that item, within the same limits)."""
        item = items[exc.position] if 0 <= exc.position < len(items) else None
        field_name, expression = "(the resource's combined program)", self.program_text
        try:
            run_bounded([lambda tick: [self._run_checks(item, tick)]], limits)
        except LimitExceeded as inner:
            if 0 <= inner.position < len(self.checks):
                field_name, expression = self.checks[inner.position]
        result = MappingResult(items=len(items))
        result.errors.append(ResourceError(self.index, self.kind, field_name, expression,
                                           f"the jq program {exc} and was stopped", item_id(item)))
        return result

    def _run_checks(self, item: Any, tick: Callable[[int], None]) -> None:
        """In a bounded worker: every field of the resource alone on `item` (its rows), `tick(k)` before field k."""
        rows: list[Any] = [item]
        for k, (path, expression) in enumerate(self.checks):
            tick(k)
            if path == "port.itemsToParse":
                parsed = NaiveResource._first(expression, item)
                if len(parsed) == 1 and isinstance(parsed[0], list):
                    rows = [{**(item if isinstance(item, dict) else {}), self.items_to_parse_name: e}
                            for e in parsed[0][:10]]
                continue
            for row in rows:
                NaiveResource._first(expression, row)

    def _project(self, batch: list[Any]) -> list[Any]:
        keys = self.projected_keys
        if keys is None:
            return batch
        return [{k: it[k] for k in keys if k in it} if isinstance(it, dict) else it for it in batch]

    def map_naive(self, items: Iterable[Any]) -> MappingResult:
        return self.naive.map(items)


PARALLEL_MIN_ITEMS = 5000
def _output_count(text: str) -> int:
    """How many values jq's output text holds (one compact JSON value per line; none at all is "")."""
    return text.count("\n") + 1 if text else 0


# How the combined program marks a row whose leaf yielded nothing (it must go field by field): see jqcompile.
_NO_OUTPUT_ROW = '["N"'


def _default_workers() -> int:
    configured = int(number_setting("SENTRY_PORT_MAPPING_WORKERS"))
    return configured or os.cpu_count() or 1


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Mapping allocates many small acyclic dicts; the cyclic GC would re-scan the whole heap (raw items
    included) again and again meanwhile. Paused for the duration, restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _merge_parts(compiled: CompiledResource, parts: list[MappingResult]) -> MappingResult:
    """Chunks of one resource, in order, merged into one result (misconfigurations summed per field)."""
    result = MappingResult()
    mis: dict[str, Misconfiguration] = {}
    err: dict[str, ResourceError] = {}
    for part in parts:
        result.entities.extend(part.entities)
        result.dropped += part.dropped
        result.filtered += part.filtered
        result.items += part.items
        for m in part.misconfigurations:
            if m.field in mis:
                mis[m.field].count += m.count
                mis[m.field].explained += m.explained
            else:
                mis[m.field] = m
        for e in part.errors:
            if e.field in err:
                err[e.field].count += e.count
            else:
                err[e.field] = e
    result.misconfigurations = list(mis.values())
    result.errors = list(err.values())
    return result


_PLAIN_PATH = re.compile(r"^\s*((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*$")


@lru_cache(maxsize=4096)
def _path_keys(expression: str) -> tuple[str, ...] | None:
    """`.a.b.c` -> ("a", "b", "c"); None for anything but a plain path."""
    m = _PLAIN_PATH.match(expression)
    return tuple(m.group(1)[1:].split(".")) if m else None


def null_in_data(expression: str, item: Any, parsed_name: str | None = None) -> bool:
    """Whether a plain-path leaf is null because the raw item says so: a key on the path is present and null
    (a pending invite's `"user": null` for `.user.name`, an unassigned issue's `"assignedTo": null`). Not for
    the row's `itemsToParse` element (`parsed_name`), which the raw item does not hold."""
    keys = _path_keys(expression)
    if not keys or keys[0] == parsed_name:
        return False
    value = item
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
        if value is None:
            return True
    return False


def classify_nulls(result: MappingResult) -> MappingResult:
    """Tells the data's nulls from misconfigurations, once every row of a resource is mapped.

    Ocean counts every null field as misconfigured. Here a null field is the data's own when its expression
    produced a value on another row, or when every null row's raw item holds that null; only a jq error, or a
    field that never produced a value and whose nulls the data does not explain (a typo such as `.user.nmae`),
    is a misconfiguration. Both are counted; Ocean's count is their sum."""
    built = len(result.entities) + result.dropped
    misconfigured, nulls = [], []
    for m in result.misconfigurations:
        if m.null and (m.count < built or m.explained == m.count):
            nulls.append(m)
        else:
            misconfigured.append(m)
    result.misconfigurations, result.nulls = misconfigured, [*result.nulls, *nulls]
    return result


def compile_resource(resource: ResourceConfig, index: int) -> CompiledResource:
    return CompiledResource(resource, index)
