"""`sentry-port catalog [--blueprint B] [--wide] [--json] [--path P]`: what the local catalog holds.

Registered by `cli/__init__.py` with `add_catalog_parser(subparsers)`. Reads through `LocalCatalog`, opened
read-only (looking at a catalog never creates one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any, TextIO

from sentry_port_assets.port.catalog import LocalCatalog, default_catalog_path


def add_catalog_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "catalog",
        help="show what the local catalog (the SQLite stand-in for Port) holds",
        description="Show the blueprints and entities in the local catalog. Path: --path, else PORT_LOCAL_CATALOG, "
        "else $DAGSTER_HOME/sentry_port/catalog.sqlite, else ./.sentry_port/catalog.sqlite.",
    )
    parser.add_argument("--blueprint", "-b", help="list the entities of this blueprint")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--wide", "-w", action="store_true",
                        help="never shorten values (they are fitted to the terminal's width otherwise)")
    parser.add_argument("--path", help="the catalog file (default: see above)")
    parser.set_defaults(func=run_catalog)
    return parser


def _read(path: Path, blueprint: str | None) -> dict[str, Any]:
    with LocalCatalog(path, readonly=True) as catalog:
        blueprints = catalog.list_blueprints()
        counts = catalog.counts()
        known = {bp["identifier"] for bp in blueprints}
        names = ([blueprint] if blueprint in known else []) if blueprint else sorted(known)
        # as Port's search shows them: with their calculation and aggregation properties
        entities = {name: catalog.computed_entities(name) for name in names}
        scorecards = {name: catalog.list_scorecards(name) for name in names}
    return {
        "path": str(path),
        "blueprints": [
            {"identifier": bp["identifier"], "title": bp.get("title"), "entities": counts.get(bp["identifier"], 0)}
            for bp in blueprints
        ],
        "entities": entities,
        "scorecards": {name: cards for name, cards in scorecards.items() if cards},
    }


def level_counts(card: dict[str, Any], entities: list[dict[str, Any]]) -> str:
    """`Basic 2, Bronze 3, Silver 0, Gold 0`: how many entities reached each level of a scorecard."""
    reached = [((e.get("scorecards") or {}).get(card["identifier"]) or {}).get("level") for e in entities]
    return ", ".join(f"{level['title']} {reached.count(level['title'])}" for level in card.get("levels") or [])


def scorecard_line(card: dict[str, Any], result: dict[str, Any]) -> str:
    rules = result.get("rules") or []
    failing = [r["identifier"] for r in rules if r.get("status") != "SUCCESS"]
    passed = len(rules) - len(failing)
    return (f"{result.get('level')} ({passed} of {len(rules)} rules pass"
            + (f"; failing: {', '.join(failing)})" if failing else ")"))


def _short(value: Any, width: int | None) -> str:
    """The value as text, shortened to `width` characters (None: whole; never below 20, to stay readable)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if width is None:
        return text
    width = max(width, 20)
    return text if len(text) <= width else text[: width - 1] + "…"


def _columns(args: argparse.Namespace, out: TextIO) -> int | None:
    """The terminal's width when writing to one, else None: piped output and --wide keep whole values."""
    if getattr(args, "wide", False) or not (hasattr(out, "isatty") and out.isatty()):
        return None
    return shutil.get_terminal_size((100, 24)).columns


def run_catalog(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    path = Path(args.path) if args.path else default_catalog_path()
    if not path.exists():
        print(
            f"no local catalog at {path}: run the sentry_port_sync job first "
            "(dagster job execute -m sentry_port_assets -j sentry_port_sync), or pass --path / set PORT_LOCAL_CATALOG",
            file=err,
        )
        return 1
    try:
        data = _read(path, args.blueprint)
    except sqlite3.DatabaseError as exc:
        print(f"{path} is not a readable local catalog: {exc}", file=err)
        return 1
    known = {bp["identifier"] for bp in data["blueprints"]}
    if args.blueprint and args.blueprint not in known:
        print(f"blueprint {args.blueprint!r} is not in {path} (known: {', '.join(sorted(known)) or 'none'})", file=err)
        return 1
    if args.json:
        if args.blueprint:
            json.dump(data["entities"][args.blueprint], out, indent=2, ensure_ascii=False)
        else:
            json.dump(data, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return 0
    total = sum(bp["entities"] for bp in data["blueprints"])
    print(f"local catalog {path}: {total} entities in {len(data['blueprints'])} blueprints", file=out)
    if not args.blueprint:
        width = max([len(bp["identifier"]) for bp in data["blueprints"]] + [9])
        print(f"{'BLUEPRINT'.ljust(width)}  ENTITIES  TITLE", file=out)
        for bp in data["blueprints"]:
            print(f"{bp['identifier'].ljust(width)}  {str(bp['entities']).rjust(8)}  {bp['title'] or ''}", file=out)
        users = next((bp["entities"] for bp in data["blueprints"] if bp["identifier"] == "_user"), 0)
        if users:
            print(f"{users} _user entities: in this local file they are only entities; published to Port, each "
                  "would be a Port user (created disabled until invited; deleting the entity deletes the user)",
                  file=out)
        for name, cards in data["scorecards"].items():
            for card in cards:
                print(f"scorecard {card['title']!r} on {name}: {level_counts(card, data['entities'][name])}", file=out)
        return 0
    rows = data["entities"][args.blueprint]
    columns = _columns(args, out)

    def fit(prefix: str, value: Any) -> str:
        return prefix + _short(value, None if columns is None else columns - len(prefix))

    print(f"{args.blueprint}: {len(rows)} entities", file=out)
    for e in rows:
        print(fit(f"- {e['identifier']}  ", e.get("title") or ""), file=out)
        for name, value in sorted((e.get("properties") or {}).items()):
            print(fit(f"    {name}: ", value), file=out)
        for name, value in sorted((e.get("relations") or {}).items()):
            print(fit(f"    -> {name}: ", value), file=out)
        for card in data["scorecards"].get(args.blueprint, []):
            result = (e.get("scorecards") or {}).get(card["identifier"])
            if result:
                print(fit(f"    scorecard {card['title']}: ", scorecard_line(card, result)), file=out)
    return 0

