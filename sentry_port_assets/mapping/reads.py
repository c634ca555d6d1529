"""Which parts of its input a jq expression reads, found without running it.

`reads(expr)` returns the paths (tuples of object keys from the input's root) whose whole value the expression may
depend on: `.item.name | ascii_downcase` reads `("item", "name")`; `.item | "\\(.name)-\\(.value)"` reads
`("item", "name")` and `("item", "value")`; `.item | tojson` reads `("item",)`, and `. | keys` reads `()`, the
whole input. The fetch plan (assets/plan.py) uses it to prove that a mapping reads only what a cheaper Sentry
request also returns.

The analysis is conservative: a value that leaves the expression, is compared, added, interpolated, passed to a
builtin or iterated counts as read whole; only field access (`.a`, `."a"`, `.["a"]`), pipes, `as $x`, `select`,
`if`, `//`, `try` and `?` pass a path through unread. Constructs it does not model (`reduce`, `foreach`, `def`,
`label`, assignment, destructuring, `getpath`, ...) raise `CannotTell`: the caller then assumes everything is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Path = tuple[str, ...]
# An abstract value: the input paths it may be, and None for a value derived otherwise (a constant, a result).
Value = frozenset[Path | None]
OPAQUE: Value = frozenset({None})


class CannotTell(ValueError):
    """The expression uses jq the analysis does not model; treat it as reading its whole input."""


_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
  | (?P<var>\$[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<format>@[A-Za-z0-9_]+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>\?//|\.\.|//=|\|=|\+=|-=|\*=|/=|%=|==|!=|<=|>=|//|[.\[\]{}()|,:;=<>+\-*/%?])
  | (?P<string>")
""", re.VERBOSE)

_KEYWORDS = frozenset({"if", "then", "elif", "else", "end", "as", "try", "catch", "and", "or", "reduce", "foreach",
                       "def", "label", "import", "include"})
# Builtins and variables whose reads it does not follow (the keywords `reduce`, `def`, ... stop it in `keyword`).
_UNMODELLED = frozenset({"getpath", "paths", "path", "leaf_paths", "input", "inputs", "$__loc__", "splits", "env",
                         "input_filename"})
# Builtins that yield constants and read nothing.
_CONSTANTS = frozenset({"null", "true", "false", "empty", "now", "nan", "infinite"})
_ASSIGNMENTS = frozenset({"=", "|=", "+=", "-=", "*=", "/=", "%=", "//=", "?//"})


@dataclass
class _Token:
    kind: str
    text: str
    # A string's parts: literal text, or the tokens of an interpolated expression.
    parts: list[str | list[_Token]] = field(default_factory=list)


def _string(expr: str, i: int) -> tuple[_Token, int]:
    """The string starting at `expr[i]` (a `"`), with its `\\(...)` interpolations tokenized."""
    parts: list[str | list[_Token]] = []
    literal: list[str] = []
    i += 1
    while i < len(expr):
        c = expr[i]
        if c == '"':
            parts.append("".join(literal))
            return _Token("string", "".join(p for p in parts if isinstance(p, str)), parts), i + 1
        if c == "\\" and expr[i + 1: i + 2] == "(":
            parts.append("".join(literal))
            literal = []
            inner, i = _tokenize(expr, i + 2, closing=")")
            parts.append(inner)
            continue
        if c == "\\":
            literal.append(expr[i: i + 2])
            i += 2
            continue
        literal.append(c)
        i += 1
    raise CannotTell("unterminated string")


def _tokenize(expr: str, i: int = 0, closing: str | None = None) -> tuple[list[_Token], int]:
    tokens: list[_Token] = []
    depth = 0
    while i < len(expr):
        if closing and expr[i] == closing and depth == 0:
            return tokens, i + 1
        m = _TOKEN.match(expr, i)
        if m is None:
            raise CannotTell(f"unexpected {expr[i]!r}")
        kind = m.lastgroup or ""
        if kind == "string":
            token, i = _string(expr, i)
            tokens.append(token)
            continue
        i = m.end()
        if kind == "space":
            continue
        text = m.group()
        if text in "([{":
            depth += 1
        elif text in ")]}":
            depth -= 1
        tokens.append(_Token("keyword" if kind == "ident" and text in _KEYWORDS else kind, text))
    if closing:
        raise CannotTell("unterminated interpolation")
    return tokens, i


class _Reader:
    """A recursive-descent reading of jq's grammar that evaluates over abstract values while it parses."""

    def __init__(self, tokens: list[_Token], found: set[Path]):
        self.tokens = tokens
        self.at = 0
        self.found = found

    # -- tokens --
    def peek(self, offset: int = 0) -> _Token | None:
        i = self.at + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def is_op(self, *texts: str) -> bool:
        t = self.peek()
        return t is not None and t.kind in ("op", "keyword") and t.text in texts

    def take(self, text: str) -> None:
        if not self.is_op(text):
            raise CannotTell(f"expected {text!r}")
        self.at += 1

    def read(self, value: Value) -> None:
        self.found.update(p for p in value if p is not None)

    # -- grammar: pipe > comma > // > or > and > comparison > additive > multiplicative > postfix --
    def pipe(self, inp: Value, env: dict[str, Value], commas: bool = True) -> Value:
        left = self.comma(inp, env) if commas else self.alternative(inp, env)
        if self.is_op("as"):
            self.at += 1
            var = self.peek()
            if var is None or var.kind != "var":
                raise CannotTell("destructuring")
            self.at += 1
            self.take("|")
            return self.pipe(inp, {**env, var.text: left}, commas)
        if self.is_op("|"):
            self.at += 1
            return self.pipe(left, env, commas)
        return left

    def comma(self, inp: Value, env: dict[str, Value]) -> Value:
        out = self.alternative(inp, env)
        while self.is_op(","):
            self.at += 1
            out = out | self.alternative(inp, env)
        return out

    def alternative(self, inp: Value, env: dict[str, Value]) -> Value:
        left = self.binary(inp, env, 0)
        if self.is_op("//"):
            self.at += 1
            self.read(left)  # its truthiness decides
            return left | self.alternative(inp, env)
        if self.peek() is not None and self.peek().text in _ASSIGNMENTS:  # type: ignore[union-attr]
            raise CannotTell("assignment")
        return left

    _LEVELS = (("or",), ("and",), ("==", "!=", "<", "<=", ">", ">="), ("+", "-"), ("*", "/", "%"))

    def binary(self, inp: Value, env: dict[str, Value], level: int) -> Value:
        if level == len(self._LEVELS):
            return self.postfix(inp, env)
        left = self.binary(inp, env, level + 1)
        while self.is_op(*self._LEVELS[level]):
            self.at += 1
            right = self.binary(inp, env, level + 1)
            self.read(left)
            self.read(right)
            left = OPAQUE
        return left

    def postfix(self, inp: Value, env: dict[str, Value]) -> Value:
        value = self.term(inp, env)
        while True:
            t = self.peek()
            if t is None:
                return value
            if t.kind == "field":
                self.at += 1
                value = _field(value, t.text[1:])
            elif t.kind == "op" and t.text == "." and self.peek(1) is not None and self.peek(1).kind == "string":  # type: ignore[union-attr]
                self.at += 1
                value = _field(value, self._plain_string())
            elif t.kind == "op" and t.text == "." and self.peek(1) is not None and self.peek(1).text == "[":  # type: ignore[union-attr]
                self.at += 1
            elif t.kind == "op" and t.text == "[":
                value = self.index(value, inp, env)
            elif t.kind == "op" and t.text == "?":
                self.at += 1
            else:
                return value

    def index(self, value: Value, inp: Value, env: dict[str, Value]) -> Value:
        self.take("[")
        if self.is_op("]"):  # .[]: every element
            self.at += 1
            self.read(value)
            return OPAQUE
        t = self.peek()
        if t is not None and t.kind == "string" and all(isinstance(p, str) for p in t.parts) \
                and self.peek(1) is not None and self.peek(1).text == "]":  # type: ignore[union-attr]
            self.at += 2
            return _field(value, t.text)
        if not self.is_op(":"):
            self.read(self.pipe(inp, env))
        if self.is_op(":"):
            self.at += 1
            if not self.is_op("]"):
                self.read(self.pipe(inp, env))
        self.take("]")
        self.read(value)
        return OPAQUE

    def _plain_string(self) -> str:
        t = self.peek()
        assert t is not None
        self.at += 1
        if not all(isinstance(p, str) for p in t.parts):
            raise CannotTell("interpolated field name")
        return t.text

    def string(self, token: _Token, inp: Value, env: dict[str, Value]) -> Value:
        for part in token.parts:
            if isinstance(part, list):
                self.read(_Reader(part, self.found).whole(inp, env))
        return OPAQUE

    def whole(self, inp: Value, env: dict[str, Value]) -> Value:
        out = self.pipe(inp, env)
        if self.peek() is not None:
            raise CannotTell(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return out

    def term(self, inp: Value, env: dict[str, Value]) -> Value:
        t = self.peek()
        if t is None:
            raise CannotTell("unexpected end")
        self.at += 1
        if t.kind == "field":
            return _field(inp, t.text[1:])
        if t.kind == "number":
            return OPAQUE
        if t.kind == "string":
            return self.string(t, inp, env)
        if t.kind == "format":
            nxt = self.peek()
            if nxt is not None and nxt.kind == "string":
                self.at += 1
                return self.string(nxt, inp, env)
            self.read(inp)
            return OPAQUE
        if t.kind == "var":
            if t.text in _UNMODELLED:
                raise CannotTell(t.text)
            return env.get(t.text, OPAQUE)
        if t.kind == "keyword":
            return self.keyword(t.text, inp, env)
        if t.kind == "ident":
            return self.call(t.text, inp, env)
        if t.text == ".":
            nxt = self.peek()
            if nxt is not None and nxt.kind == "string":
                return _field(inp, self._plain_string())
            if nxt is not None and nxt.text == "[":
                return self.index(inp, inp, env)
            return inp
        if t.text == "..":
            self.read(inp)
            return OPAQUE
        if t.text == "(":
            out = self.pipe(inp, env)
            self.take(")")
            return out
        if t.text == "[":
            if not self.is_op("]"):
                self.read(self.pipe(inp, env))
            self.take("]")
            return OPAQUE
        if t.text == "{":
            self.object(inp, env)
            return OPAQUE
        if t.text == "-":
            self.read(self.postfix(inp, env))
            return OPAQUE
        raise CannotTell(f"unexpected {t.text!r}")

    def object(self, inp: Value, env: dict[str, Value]) -> None:
        while not self.is_op("}"):
            key = self.peek()
            if key is None:
                raise CannotTell("unterminated object")
            self.at += 1
            shorthand: Value | None = None
            if key.kind == "var":
                shorthand = env.get(key.text, OPAQUE)
            elif key.kind in ("ident", "keyword"):
                shorthand = _field(inp, key.text)
            elif key.kind == "string":
                self.string(key, inp, env)
                shorthand = _field(inp, key.text) if all(isinstance(p, str) for p in key.parts) else OPAQUE
            elif key.kind == "format":
                shorthand = OPAQUE
            elif key.text == "(":
                self.read(self.pipe(inp, env))
                self.take(")")
            else:
                raise CannotTell(f"object key {key.text!r}")
            if self.is_op(":"):
                self.at += 1
                self.read(self.pipe(inp, env, commas=False))
            elif shorthand is not None:
                self.read(shorthand)
            else:
                raise CannotTell("object key without value")
            if self.is_op(","):
                self.at += 1
            elif not self.is_op("}"):
                raise CannotTell("expected ',' or '}'")
        self.take("}")

    def keyword(self, word: str, inp: Value, env: dict[str, Value]) -> Value:
        if word == "if":
            self.read(self.pipe(inp, env))
            self.take("then")
            out = self.pipe(inp, env)
            while self.is_op("elif"):
                self.at += 1
                self.read(self.pipe(inp, env))
                self.take("then")
                out = out | self.pipe(inp, env)
            if self.is_op("else"):
                self.at += 1
                out = out | self.pipe(inp, env)
            else:
                out = out | inp  # jq 1.7: no else is `else .`
            self.take("end")
            return out
        if word == "try":
            out = self.postfix(inp, env)
            if self.is_op("catch"):
                self.at += 1
                out = out | self.postfix(OPAQUE, env)
            return out
        raise CannotTell(word)

    def call(self, name: str, inp: Value, env: dict[str, Value]) -> Value:
        if name in _UNMODELLED:
            raise CannotTell(name)
        args: list[Value] = []
        if self.is_op("("):
            self.at += 1
            args.append(self.pipe(inp, env))
            while self.is_op(";"):
                self.at += 1
                args.append(self.pipe(inp, env))
            self.take(")")
        if name in _CONSTANTS and not args:
            return OPAQUE
        if name == "select" and len(args) == 1:
            self.read(args[0])
            return inp
        if name in ("first", "last") and len(args) == 1:
            return args[0]
        # Any other builtin: its input and arguments count as read whole (`map(.x)` reads its input).
        self.read(inp)
        for arg in args:
            self.read(arg)
        return OPAQUE


def _field(value: Value, name: str) -> Value:
    return frozenset(None if p is None else (*p, name) for p in value)


def _evaluate(expr: str) -> tuple[Value, frozenset[Path]]:
    """What `expr` outputs (abstractly) and the paths it reads on the way. Anything unexpected (nesting deeper than
    the recursion limit, a token sequence the reader did not foresee) is CannotTell: the caller then assumes
    everything is read, never fails."""
    try:
        tokens, _ = _tokenize(expr)
        found: set[Path] = set()
        out = _Reader(tokens, found).whole(frozenset({()}), {})
    except CannotTell:
        raise
    except (IndexError, AttributeError, TypeError, RecursionError) as exc:
        raise CannotTell(f"{type(exc).__name__}") from None
    return out, frozenset(found)


def reads(expr: str) -> frozenset[Path]:
    """The input paths `expr` reads (its outputs count as read). Raises CannotTell for jq it does not model."""
    out, found = _evaluate(expr)
    return found | {p for p in out if p is not None}


def yields_path(expr: str) -> tuple[Path | None, frozenset[Path]]:
    """The single input path `expr` evaluates to (None when it is anything else) and what it reads on the way:
    `.__tags` -> (("__tags",), {})."""
    out, found = _evaluate(expr)
    paths = list(out)
    return (paths[0] if len(paths) == 1 else None), found
