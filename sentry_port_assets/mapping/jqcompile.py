"""The jq side of the mapping language: Ocean's expression rules, and one jq program per mapping resource.

Ocean's rules for a jq expression (port-labs/ocean, `port_ocean/core/handlers/entity_processor/
jq_entity_processor.py`), implemented here once:

- no environment access: every program starts with `def env: {}; {} as $ENV |` (Ocean's own prefix);
- single-quoted strings are accepted: `'abc'` is read as `"abc"` (`normalize_expression`; valid jq is
  returned unchanged, since a `'` can only appear inside a string or a comment in valid jq);
- only the FIRST output of an expression counts; no output means null.

`compile_expression(expr)` checks and compiles one leaf (raises `JqCompileError` with jq's own message).

`build_resource_program(...)` turns one resource's whole mapping (selector, itemsToParse, every leaf) into ONE
jq program. It reads one raw item and emits exactly one value per item: a list of row results, where a row
result is

- an object: the entity as Ocean builds it, every leaf inlined with its first output, or `{ERROR_KEY: message}`
  when the leaf raised (`try` around each leaf, so one failing leaf does not affect the others); the engine
  turns those into null and reports null leaves as misconfigurations;
- `["N"]`: a leaf had no output at all (the entity constructor emitted nothing): the engine maps that item
  field by field, which gives that leaf null;
- `["F"]`: the selector yielded `false` (the row is left out);
- `["S", outcome]`: the selector did not yield a boolean; outcome is `[value]`, `[]` (no output) or
  `[null, message]` (jq error);
- `["P", outcome]`: `itemsToParse` did not yield a list (outcome as above).

The entity constructor runs under one `first(...)` per row instead of one per leaf. Constant leaves are
written into the object as JSON; the selector and `itemsToParse` are evaluated as outcome arrays
(`leaf_call`), without `first` when they provably yield exactly one output (`single_output`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jq

ENV_PREFIX = "def env: {}; {} as $ENV | "
# Leaf outcome helpers, defined once at the top of every combined program.
_LEAF_DEF = "def spa__l(f): try ([first(f)]) catch [null, .];"
_READS_INPUT = re.compile(r"(?<![\w$])inputs?(?![\w])")


class JqCompileError(ValueError):
    """A jq expression that does not compile; `message` is jq's own message."""

    def __init__(self, expression: str, message: str):
        self.expression = expression
        self.message = message.strip()
        super().__init__(f"jq expression {expression!r} does not compile: {self.message}")


def normalize_expression(expr: str) -> str:
    """Ocean accepts single-quoted jq strings: rewrite `'abc'` as `"abc"` outside strings and comments."""
    if "'" not in expr:
        return expr
    out: list[str] = []
    i, n = 0, len(expr)
    in_string = False
    depth = 0
    interpolations: list[int] = []  # paren depth at which each open `\(` interpolation closes
    while i < n:
        c = expr[i]
        if in_string:
            if c == "\\" and i + 1 < n:
                if expr[i + 1] == "(":
                    interpolations.append(depth)
                    depth += 1
                    in_string = False
                out.append(expr[i : i + 2])
                i += 2
                continue
            if c == '"':
                in_string = False
            out.append(c)
            i += 1
            continue
        if c == "#":
            j = expr.find("\n", i)
            j = n if j < 0 else j
            out.append(expr[i:j])
            i = j
            continue
        if c == '"':
            in_string = True
        elif c == "'":
            j = i + 1
            buf: list[str] = []
            while j < n and expr[j] != "'":
                if expr[j] == "\\" and j + 1 < n:
                    buf.append("'" if expr[j + 1] == "'" else expr[j : j + 2])
                    j += 2
                    continue
                buf.append('\\"' if expr[j] == '"' else expr[j])
                j += 1
            if j >= n:  # unterminated: leave the rest for jq to report
                out.append(expr[i:])
                break
            out.append('"' + "".join(buf) + '"')
            i = j + 1
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if interpolations and depth == interpolations[-1]:
                interpolations.pop()
                in_string = True
        out.append(c)
        i += 1
    return "".join(out)


def _clean_jq_message(message: str) -> str:
    return message.replace("jq: error: ", "").replace("\njq: 1 compile error", "").strip()


@lru_cache(maxsize=4096)
def compile_expression(expr: str) -> Any:
    """One leaf, as Ocean compiles it (env prefix, single quotes accepted). Raises JqCompileError."""
    if not isinstance(expr, str) or not expr.strip():
        raise JqCompileError(str(expr), "empty expression")
    text = normalize_expression(expr)
    try:
        # Compiled on its own first, so jq's line/column point into the user's expression.
        jq.compile(text)
        return jq.compile(ENV_PREFIX + "(" + text + "\n)")
    except ValueError as exc:
        raise JqCompileError(expr, _clean_jq_message(str(exc))) from None


def reads_input(expr: str) -> bool:
    """Whether an expression may read further inputs (`input`/`inputs`), which forbids batching items."""
    return bool(_READS_INPUT.search(expr))


@dataclass(frozen=True)
class Leaf:
    """One jq expression of a mapping, at a field path like `properties.link` or `relations.a.rules[0].value`
    (`keys` is the same path as dict keys and list indexes, to find the value in the entity)."""

    path: str
    expression: str
    keys: tuple[Any, ...] = ()


# A leaf that raised in the combined program is emitted as {ERROR_KEY: message}; the engine nulls it.
ERROR_KEY = "__sentry_port_jq_error__"


_STRING = r'"(?:[^"\\]|\\[^(])*"'
_TERM = rf"(?:(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.|{_STRING}|\$[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|true|false|null)"
_SINGLE_OUTPUT = re.compile(rf"^\s*{_TERM}(?:\s*[-+*/%]\s*{_TERM})*\s*$")
_CONSTANT = re.compile(rf"^\s*(?:{_STRING}|-?\d+(?:\.\d+)?|true|false)\s*$")


def single_output(expr: str) -> bool:
    """Whether an expression yields exactly one output or an error (paths, literals, arithmetic): no `first`."""
    return bool(_SINGLE_OUTPUT.match(expr))


def constant_value(expr: str) -> Any:
    """The value of a constant leaf (a non-null string/number/boolean literal), or None when not constant."""
    if not isinstance(expr, str):
        return None
    text = normalize_expression(expr)
    if not _CONSTANT.match(text):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def leaf_call(expr: str) -> str:
    """One leaf's outcome as a jq outcome array: [value], [] (no output) or [null, error message]."""
    text = normalize_expression(expr)
    if single_output(text):
        return f"(try [{text}\n] catch [null, .])"
    return f"spa__l({text}\n)"


def leaf_value(expr: str) -> str:
    """One leaf inlined in the entity constructor: its outputs, or {ERROR_KEY: message} when it raises.

    The constructor as a whole is wrapped in `first(...)`, and the first object a jq constructor emits is made
    of the first output of every leaf, so each leaf counts with its first output only, as in Ocean. A leaf with
    no output leaves the constructor without any: the row is marked `["N"]` and the engine maps that item
    field by field.
    """
    return f"(try ({normalize_expression(expr)}\n) catch {{{json.dumps(ERROR_KEY)}: .}})"


def walk_template(
    template: Any, leaves: list[Leaf], path: str, inline_constants: bool = True, keys: tuple[Any, ...] = ()
) -> str:
    """The jq object/array constructor for a mapping template, every leaf inlined; appends the leaves in order.

    Constant leaves (`'"sentryUser"'`) are written into the constructor as they are: they cannot fail.
    """
    if isinstance(template, dict):
        parts = []
        for key, value in template.items():
            sub = f"{path}.{key}" if path else str(key)
            parts.append(
                f"{json.dumps(str(key))}: {walk_template(value, leaves, sub, inline_constants, (*keys, str(key)))}"
            )
        return "{" + ", ".join(parts) + "}"
    if isinstance(template, list):
        return (
            "["
            + ", ".join(
                walk_template(v, leaves, f"{path}[{i}]", inline_constants, (*keys, i)) for i, v in enumerate(template)
            )
            + "]"
        )
    if inline_constants:
        value = constant_value(template)
        if value is not None:
            return json.dumps(value)
    leaves.append(Leaf(path, template, keys))
    return leaf_value(template) if isinstance(template, str) else "null"


def build_resource_program(
    template: dict[str, Any],
    selector: str,
    items_to_parse: str | None,
    items_to_parse_name: str,
    top_level_transform: bool,
) -> tuple[str, list[Leaf]]:
    """The text of ONE jq program for a whole resource, and its non-constant leaves in order."""
    leaves: list[Leaf] = []
    entity = f'first({walk_template(template, leaves, "")}, ["N"])'
    if selector.strip() == "true":
        row = entity
    else:
        sel = normalize_expression(selector)
        row = (
            f"{leaf_call(sel)} as $spa__s"
            f" | if $spa__s == [true] then ({entity})"
            f' elif $spa__s == [false] then ["F"] else ["S", $spa__s] end'
        )
    if items_to_parse:
        itp = normalize_expression(items_to_parse)
        base = f"($spa__p | try del({itp}\n) catch $spa__p)" if top_level_transform else "$spa__p"
        rows = (
            f". as $spa__p | {leaf_call(itp)} as $spa__it"
            f' | if ($spa__it | length) == 1 and ($spa__it[0] | type) == "array"'
            f" then {base} as $spa__b | $spa__it[0][] | ($spa__b + {{{json.dumps(items_to_parse_name)}: .}}) | ({row})"
            f' else ["P", $spa__it] end'
        )
    else:
        rows = row
    program = f"def env: {{}}; {_LEAF_DEF} {{}} as $ENV | [{rows}]"
    return program, leaves


# Identifiers that cannot hand the whole input row to anything (keywords); any other bare identifier
# (a function call like `keys`, `tojson`, `map`, `{a}` shorthand, `input`) may observe keys it does not name.
_SAFE_WORDS = frozenset(
    {"as", "if", "then", "elif", "else", "end", "and", "or", "not", "true", "false", "null", "try", "catch"}
)
_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_STR_BODY = re.compile(r'(?:[^"\\]|\\[^(])*')


def observed_keys(expr: str) -> frozenset[str] | None:
    """Every object key an expression can read, or None when it may read keys it does not name.

    Sound over-approximation used to send jq only the top-level keys a mapping reads: an expression qualifies
    when it touches its input only through `.name` / `."name"` field accesses (no bare `.`, `.[`, `..`, `@fmt`,
    and no function calls or `{a}` shorthands, which could see the whole object). Every field name it mentions,
    at any depth, is in the result.
    """
    text = normalize_expression(expr)
    keys: set[str] = set()
    i, n = 0, len(text)
    interpolations: list[int] = []
    depth = 0
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == '"' or (c == ")" and interpolations and depth - 1 == interpolations[-1]):
            if c == ")":  # the end of an interpolation: back inside its string
                interpolations.pop()
                depth -= 1
            # a string part: skip its plain text, up to its end or the next \( ... ) interpolation
            j = _STR_BODY.match(text, i + 1).end()
            if j < n and text[j] == '"':
                i = j + 1
                continue
            if text.startswith("\\(", j):
                interpolations.append(depth)
                depth += 1
                i = j + 2
                continue
            return None
        if c == "(":
            depth += 1
            i += 1
            continue
        if c == ")":
            depth -= 1
            i += 1
            continue
        if c == ".":
            if i + 1 < n and text[i + 1] == '"':
                m = _STR_BODY.match(text, i + 2)
                j = m.end()
                if j >= n or text[j] != '"':
                    return None
                try:
                    keys.add(json.loads(text[i + 1 : j + 1]))
                except ValueError:
                    return None
                i = j + 1
                continue
            m = _IDENT.match(text, i + 1)
            if not m:
                return None  # bare `.`, `.[`, `..`
            keys.add(m.group(0))
            i = m.end()
            continue
        if c == "$":
            m = _IDENT.match(text, i + 1)
            if not m:
                return None
            i = m.end()
            continue
        if c.isdigit():
            i = _NUMBER.match(text, i).end()
            continue
        m = _IDENT.match(text, i)
        if m:
            if m.group(0) not in _SAFE_WORDS:
                return None
            i = m.end()
            continue
        if c in "+-*/%=!<>|,?:;":
            i += 1
            continue
        return None  # `[`, `{`, `@`, anything else: be conservative
    return frozenset(keys)
