"""The package's import rules (docs/architecture.md), proven from the import statements themselves: module level,
inside functions, under `if TYPE_CHECKING`, relative or absolute. None can dodge them.

- `config`, `worker_host`, `progress` and `kinds` import nothing of the project;
- `sentry/`, `mapping/` and `port/` import only themselves and those two: never each other, `assets/` or
  `emulators/`;
- `emulators/` (the demo's and the tests' stand-ins) may use those packages; only `resources/demo.py` imports it;
- no module imports a project module inside a function (the one exception is the package's lazy `defs`), and the
  import graph has no cycle.
- environment variables are read in `config.py` only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sentry_port_assets"
PACKAGE = "sentry_port_assets"

BASE = {"config", "worker_host", "progress", "kinds", "timestamps"}
DOMAIN = {"sentry", "mapping", "port"}
ALLOWED: dict[str, set[str]] = {
    **{name: set() for name in BASE},
    **{name: {name} | BASE for name in DOMAIN},
    "emulators": {"emulators"} | BASE | DOMAIN,
    "mapping_sources": BASE | {"mapping", "port"},
}
EMULATOR_USERS = {f"{PACKAGE}.resources.demo"}
# `sentry_port_assets.defs` and `.build_sentry_port_defs` are loaded on first access so that `sentry-port` starts
# without Dagster.
LAZY_IMPORTS = {(f"{PACKAGE}", f"{PACKAGE}.{module}") for module in ("definitions", "factory", "component")}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the project module imported
    in_function: bool
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT.parent / relative).with_suffix(".py").is_file() or (ROOT.parent / relative / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool) -> Iterator[Import]:
    """Every import of a project module in `source`, resolved to the module it loads."""
    tree = ast.parse(source)
    parents: dict[ast.AST, ast.AST] = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                return True
        return False

    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                targets.append(candidate if _is_module(candidate) else base)
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                yield Import(module, target, in_function(node), node.lineno)


def all_imports() -> list[Import]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        found += imports_of(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    return found


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        source, target = component(imp.module), component(imp.target)
        where = f"{imp.module}:{imp.line} imports {imp.target}"
        if source in ALLOWED and target not in ALLOWED[source]:
            problems.append(f"{where}: {source} may import only {sorted(ALLOWED[source]) or 'nothing of the project'}")
        if target == "emulators" and source != "emulators" and imp.module not in EMULATOR_USERS:
            problems.append(f"{where}: only {sorted(EMULATOR_USERS)} may import the emulators")
        if imp.in_function and (imp.module, imp.target) not in LAZY_IMPORTS:
            problems.append(f"{where} inside a function: import at module level (a circle is not a reason)")
    return problems


def cycles(imports: list[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "active"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "active":
                found.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_the_import_rules_hold() -> None:
    imports = all_imports()
    assert len({i.module for i in imports}) > 40, "the scan found the package's modules"
    assert violations(imports) == []


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(all_imports()) == []


@pytest.mark.parametrize("module, source, problem", [
    ("sentry_port_assets.mapping.engine", "def f():\n    from sentry_port_assets.sentry.selection import x\n",
     "mapping may import only"),
    ("sentry_port_assets.mapping.engine", "def f():\n    from sentry_port_assets.mapping import loader\n",
     "inside a function"),
    ("sentry_port_assets.port.resource", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from sentry_port_assets.mapping.blueprints import owned_blueprints\n", "port may import only"),
    ("sentry_port_assets.sentry.resource", "from ..emulators import sentry_api\n", "sentry may import only"),
    ("sentry_port_assets.assets.entities", "import sentry_port_assets.emulators.port\n", "may import the emulators"),
])
def test_the_checker_catches_what_the_rules_forbid(module: str, source: str, problem: str) -> None:
    found = violations(list(imports_of(source, module, is_package=False)))
    assert found and problem in found[0], found


def test_the_checker_finds_a_cycle() -> None:
    a, b = "sentry_port_assets.assets.a", "sentry_port_assets.assets.b"
    assert cycles([Import(a, b, False, 1), Import(b, a, True, 1)])


ENV_READS = ("environ", "getenv", "env_value", "env_name")


def test_environment_variables_are_read_in_config_only() -> None:
    readers = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name in ENV_READS:
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert readers == []


def test_every_kind_is_one_declaration_its_layers_are_built_from() -> None:
    """kinds.py is the one place a kind is declared: every raw asset has its fetch (with the state argument when it
    keeps state), every kind's raw chain exists and runs upstream first, and the selector models, the raw assets and
    the entity assets are the table's."""
    import inspect

    from sentry_port_assets import kinds
    from sentry_port_assets.assets.entities import ENTITY_ASSET_KEYS
    from sentry_port_assets.assets.sentry_raw import raw_assets
    from sentry_port_assets.mapping.config import SELECTORS
    from sentry_port_assets.sentry import fetch

    for raw in kinds.RAWS.values():
        if raw.custom:  # built by an asset function of its own (the issue tags' cache)
            continue
        read = getattr(fetch, raw.fetch)
        assert inspect.iscoroutinefunction(read), raw.name
        params = list(inspect.signature(read).parameters)
        assert params == ["client", "params", "upstream", "vanished", *(["state"] if raw.keeps_state else [])], raw
        assert raw.upstream is None or raw.upstream in kinds.RAWS
    for kind in kinds.KINDS.values():
        for before, after in zip(kind.raws, kind.raws[1:]):
            assert kinds.RAWS[after].upstream == before, kind.name
        aliases = {field.alias for field in SELECTORS[kind.name].model_fields.values() if field.alias}
        assert {o.alias for o in kind.options} <= aliases, kind.name
    produced = {key.path[-1] for a in raw_assets for key in a.keys}
    assert produced == set(kinds.RAWS)
    assert set(ENTITY_ASSET_KEYS) == set(kinds.SYNCED)
