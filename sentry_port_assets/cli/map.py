"""`sentry-port map [--mapping FILE] --raw FILE`: try a mapping on raw Sentry items, without Dagster.

Without --mapping it maps with the mapping the job uses: PORT_INTEGRATION_IDENTIFIER's config in Port (read with
PORT_CLIENT_ID / PORT_CLIENT_SECRET), else PORT_MAPPING_FILE, else the bundled default.

The raw file is JSON: `{"<kind>": [items]}` with items as the raw assets store them (`__members` on teams,
`__tags` on project-tag / issue-tag rows). Every resource of a kind is applied to that kind's items, whatever
its `tag` or Sentry query (a dict of lists, as the raw assets keep project-tag/issue/issue-tag, is flattened).
Prints the entities as JSON sorted by blueprint then identifier on stdout; misconfigurations, the data's nulls,
dropped entities and resource errors on stderr. Exit code: 0, 1 when a resource failed (a selector that is not boolean),
2 when the mapping or the raw file cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from sentry_port_assets.config import mapping_source_settings
from sentry_port_assets.mapping.config import KINDS
from sentry_port_assets.mapping.engine import MappingConfigError, MappingResult
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE
from sentry_port_assets.mapping.source import FileMappingSource, MappingSource, compile_snapshot
from sentry_port_assets.mapping_sources import source_from_settings
from sentry_port_assets.port.errors import PortError


def add_map_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "map",
        help="map raw Sentry items to Port entities with a mapping file (preview, no Dagster)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mapping", "-m", help="mapping YAML (default: the job's mapping: Port's integration config "
                        "when PORT_INTEGRATION_IDENTIFIER is set, else PORT_MAPPING_FILE, else the bundled "
                        f"{DEFAULT_MAPPING_FILE.name})")
    parser.add_argument("--raw", "-r", required=True, help='JSON file {"<kind>": [raw items]} ("-" for stdin)')
    parser.set_defaults(func=run_map)
    return parser


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, dict):
        out: list[Any] = []
        for v in value.values():
            out.extend(_flatten(v))
        return out
    return list(value) if isinstance(value, list) else [value]


def _sort_key(entity: dict[str, Any]) -> tuple[str, str]:
    ident = entity.get("identifier")
    return (str(entity.get("blueprint")), ident if isinstance(ident, str) else json.dumps(ident, sort_keys=True))


def run_map(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        source: MappingSource = (FileMappingSource(args.mapping) if args.mapping
                                 else source_from_settings(mapping_source_settings()))
        mapping = compile_snapshot(source.snapshot())
    except (MappingConfigError, PortError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    if not args.mapping:
        print(f"mapping: {mapping.source} (sha256 {mapping.sha256[:12]})", file=err)
    try:
        if args.raw == "-":
            raw = json.load(sys.stdin)
        else:
            with open(args.raw, encoding="utf-8") as fh:
                raw = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read raw items from {args.raw}: {exc}", file=err)
        return 2
    if not isinstance(raw, dict) or not all(k in KINDS for k in raw):
        unknown = sorted(k for k in raw if k not in KINDS) if isinstance(raw, dict) else []
        print(f'error: {args.raw}: expected {{"<kind>": [items]}} with kinds from {list(KINDS)}; unknown: {unknown}', file=err)
        return 2
    for warning in mapping.warnings:
        print(f"warning: {warning}", file=err)
    result = MappingResult()
    for kind, items in raw.items():
        if not mapping.uses(kind):
            print(f"note: the mapping has no {kind!r} resource; its {len(_flatten(items))} item(s) map to nothing", file=err)
        result.extend(mapping.map_items(kind, _flatten(items)))
    json.dump(sorted(result.entities, key=_sort_key), out, indent=2, ensure_ascii=False)
    out.write("\n")
    for m in result.misconfigurations:
        print(f"misconfiguration: {m.describe()}", file=err)
    for m in result.nulls:
        print(f"null in the data: {m.describe()}", file=err)
    if result.dropped:
        print(f"dropped: {result.dropped} entit{'y' if result.dropped == 1 else 'ies'} without identifier or blueprint", file=err)
    for e in result.errors:
        print(f"error: {e.describe()}", file=err)
    print(f"{len(result.entities)} entities from {result.items} raw item(s)", file=err)
    return 1 if result.errors else 0

