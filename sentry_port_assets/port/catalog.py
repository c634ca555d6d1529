"""The local catalog: an SQLite file that keeps Port's semantics, the embedded default target.

What it keeps, as Port does:
- blueprints: create (409 when the identifier is taken; relation targets must exist), patch (top-level keys
  sent replace the stored ones), read;
- upsert: `merge=False` replaces the entity; `merge=True` updates only the fields sent, properties and relations
  key by key; identifiers may be search queries that match exactly one existing entity;
- validation: unknown properties or relations, wrong property types, missing required properties or relations
  are refused (422) per entity;
- relations: an identifier, a list of identifiers (`many`), null, or a search query
  `{combinator, rules:[{property, operator, value}]}` resolved against the target blueprint (a single relation
  must match exactly one entity); a missing related entity is a 404 unless `create_missing_related_entities`,
  which creates it with only its identifier;
- search with pagination (`limit` <= 1000, `next` cursor);
- delete: dependents are the entities with a REQUIRED relation to a deleted entity. Without `delete_dependents`
  a delete that has dependents is refused as a whole (all or nothing); with it they go too (transitively).
  Non-required relations pointing at a deleted entity are cleared.

It stores entities and blueprints only: no credentials, tokens or settings.
"""

from __future__ import annotations

import copy
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sentry_port_assets.config import local_catalog_path
from sentry_port_assets.port import aggregation, mirror, scorecards
from sentry_port_assets.port.query import QueryError, is_search_query, matches

Entity = dict[str, Any]
Blueprint = dict[str, Any]

# Port's identifier pattern, `^(?!\.{1,2}$)[\p{L}0-9@_.+:\\/='-]+$`: letters of any script (Python's isalpha is
# exactly the Unicode letter categories), ASCII digits, and @_.+:\/='- (an apostrophe, not a space).
IDENTIFIER_PUNCTUATION = frozenset("0123456789@_.+:\\/='-")
MAX_IDENTIFIER = 1000
# The operators Port accepts in a search relation or search identifier, and how many entities one may match.
RELATION_OPERATORS = ("=", "in", "contains", "containsAny")
MAX_SEARCH_MATCHES = 500
MAX_BLUEPRINT_ID = 100
MAX_SEARCH_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blueprints (identifier TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entities (
    blueprint TEXT NOT NULL, identifier TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (blueprint, identifier)
);
CREATE TABLE IF NOT EXISTS edges (
    src_bp TEXT NOT NULL, src_id TEXT NOT NULL, relation TEXT NOT NULL, dst_bp TEXT NOT NULL, dst_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst_bp, dst_id);
CREATE INDEX IF NOT EXISTS edges_src ON edges (src_bp, src_id);
CREATE TABLE IF NOT EXISTS scorecards (
    blueprint TEXT NOT NULL, identifier TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (blueprint, identifier)
);
CREATE TABLE IF NOT EXISTS sources (
    blueprint TEXT NOT NULL, identifier TEXT NOT NULL, datasource TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (blueprint, identifier)
);
"""


# Port's error identifiers, as its API specification published them (port-labs/port-docs, static/apispec.yaml
# until July 2025): 422 `blueprint_schema_mismatch` (a property against the blueprint's schema), `required_relation`,
# `relation_many_violation`; 422 `invalid_request` (the request's own schema: identifier pattern, relation shapes,
# search rules); 404 `not_found` (entity, blueprint or relation target); 403 `has_dependents`; 409
# `identifier_taken`. docs/publishing.md says which of these are inferred.
SCHEMA_MISMATCH = "blueprint_schema_mismatch"


class CatalogError(Exception):
    """A refusal with Port's error shape: HTTP status, error code, message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    def as_json(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, "message": self.message}


@dataclass
class UpsertOutcome:
    identifier: str
    index: int
    ok: bool
    created: bool = False
    entity: Entity | None = None
    status: int = 200
    error: str | None = None
    message: str | None = None


@dataclass
class DeleteOutcome:
    deleted: list[str] = field(default_factory=list)
    dependents: list[tuple[str, str]] = field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize_team(team: Any) -> list[str]:
    if team is None:
        return []
    if isinstance(team, str):
        return [team]
    return list(team)


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def valid_identifier(ident: Any, limit: int = MAX_IDENTIFIER) -> bool:
    return (isinstance(ident, str) and 0 < len(ident) <= limit and ident not in (".", "..")
            and all(c.isalpha() or c in IDENTIFIER_PUNCTUATION for c in ident))


def _query_problem(query: Mapping[str, Any], where: str) -> str | None:
    if query.get("combinator") not in ("and", "or") or not isinstance(query.get("rules"), list):
        return f"{where} must have combinator 'and'|'or' and a list of rules"
    for i, rule in enumerate(query["rules"]):
        if is_search_query(rule):
            problem = _query_problem(rule, f"{where}/rules/{i}")
        elif not isinstance(rule, Mapping) or rule.get("operator") not in RELATION_OPERATORS:
            operator = rule.get("operator") if isinstance(rule, Mapping) else None
            problem = f"{where}/rules/{i}/operator {operator!r} must be one of {', '.join(RELATION_OPERATORS)}"
        else:
            problem = None
        if problem:
            return problem
    return None


def request_problem(entity: Any, where: str = "entity") -> str | None:
    """What Port's request schema refuses in one entity of a write (checked before anything is written): the
    identifier pattern, the shape of relation values, the search operators. None when it passes."""
    if not isinstance(entity, Mapping):
        return f"{where} must be an object"
    ident = entity.get("identifier")
    if is_search_query(ident):
        problem = _query_problem(ident, f"{where}/identifier")
        if problem:
            return problem
    elif not valid_identifier(ident):
        return f"{where}/identifier {ident!r} must match pattern ^(?!\\.{{1,2}}$)[\\p{{L}}0-9@_.+:\\\\/='-]+$"
    for key in ("properties", "relations"):
        if entity.get(key) is not None and not isinstance(entity.get(key), Mapping):
            return f"{where}/{key} must be an object"
    for name, value in (entity.get("relations") or {}).items():
        at = f"{where}/relations/{name}"
        if value is None or (isinstance(value, str) and valid_identifier(value)):
            continue
        if isinstance(value, list) and all(isinstance(v, str) and valid_identifier(v) for v in value):
            continue
        if is_search_query(value):
            problem = _query_problem(value, at)
            if problem:
                return problem
            continue
        return f"{at} must be an identifier, a list of identifiers, null or a search query, got {value!r}"
    return None


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _format_problem(fmt: str, value: Any) -> bool:
    """Whether a string breaks the `format` Port enforces for it (date-time, url, email)."""
    if not isinstance(value, str):
        return False
    if fmt == "date-time":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return True
        return "T" not in value
    if fmt == "url":
        parts = urlsplit(value)
        return not (parts.scheme and parts.netloc)
    if fmt == "email":
        return not _EMAIL.match(value)
    return False


def _calculate(spec: Any, entity: Mapping[str, Any]) -> Any:
    """A calculation property's value: its jq `calculation` over the entity (None when it fails, as Port shows)."""
    import jq

    try:
        return jq.compile(str((spec or {}).get("calculation") or "null")).input_value(dict(entity)).first()
    except Exception:  # noqa: BLE001 - a broken calculation is Port's null, not our error
        return None


def _check_property(name: str, spec: Mapping[str, Any], value: Any) -> None:
    if value is None:
        return
    kind = spec.get("type")
    allowed = _TYPES.get(kind) if isinstance(kind, str) else None
    if allowed is not None:
        ok = isinstance(value, allowed) and not (kind == "number" and isinstance(value, bool))
        if not ok:
            raise CatalogError(
                422, SCHEMA_MISMATCH, f"property {name!r} must be of type {kind}, got {type(value).__name__}"
            )
    if "enum" in spec and value not in spec["enum"]:
        raise CatalogError(422, SCHEMA_MISMATCH, f"property {name!r} must be one of {spec['enum']!r}")
    if isinstance(spec.get("format"), str) and _format_problem(spec["format"], value):
        raise CatalogError(422, SCHEMA_MISMATCH, f"property {name!r} must match format {spec['format']!r}")


class LocalCatalog:
    """Port's catalog semantics over one SQLite file. Safe to share between threads (one lock)."""

    _writer: str | None = None  # the datasource of the upsert in progress

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        """`readonly`: open an existing catalog for reading only (the CLI must not create one by looking at it);
        raises sqlite3.DatabaseError when the file is missing or not a catalog."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._bp_cache: dict[str, Blueprint] = {}
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("SELECT 1 FROM blueprints LIMIT 1")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> LocalCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalCatalog({str(self.path)!r})"

    # -- transactions ---------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        self._db.execute("ROLLBACK")

    # -- blueprints -----------------------------------------------------------------------------------

    def get_blueprint(self, identifier: str) -> Blueprint | None:
        with self._lock:
            cached = self._bp_cache.get(identifier)
            if cached is not None:
                return copy.deepcopy(cached)
            row = self._db.execute("SELECT body FROM blueprints WHERE identifier = ?", (identifier,)).fetchone()
            if row is None:
                return None
            bp = json.loads(row[0])
            self._bp_cache[identifier] = bp
            return copy.deepcopy(bp)

    def _blueprint(self, identifier: str) -> Blueprint:
        bp = self._bp_cache.get(identifier)
        if bp is None:
            bp = self.get_blueprint(identifier)
            if bp is None:
                raise CatalogError(404, "not_found", f"blueprint {identifier!r} does not exist")
            bp = self._bp_cache[identifier]
        return bp

    def list_blueprints(self) -> list[Blueprint]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM blueprints ORDER BY identifier").fetchall()
            return [json.loads(r[0]) for r in rows]

    def _validate_blueprint(self, bp: Mapping[str, Any]) -> None:
        ident = bp.get("identifier")
        if not valid_identifier(ident, MAX_BLUEPRINT_ID):
            raise CatalogError(422, "invalid_request", f"invalid blueprint identifier {ident!r}")
        for name, spec in (bp.get("mirrorProperties") or {}).items():
            problem = mirror.spec_problem(name, spec)
            if problem:
                raise CatalogError(422, "invalid_request", f"blueprint {ident!r}: {problem}")
        for name, spec in (bp.get("aggregationProperties") or {}).items():
            problem = aggregation.spec_problem(name, spec)
            if problem:
                raise CatalogError(422, "invalid_request", f"blueprint {ident!r}: {problem}")
            if spec["target"] != ident and self.get_blueprint(spec["target"]) is None:
                raise CatalogError(404, "not_found", f"aggregation property {name!r} of blueprint {ident!r} targets "
                                                     f"{spec['target']!r}, which does not exist")
        for name, rel in (bp.get("relations") or {}).items():
            target = rel.get("target") if isinstance(rel, Mapping) else None
            if not isinstance(target, str):
                raise CatalogError(422, "invalid_request", f"relation {name!r} of {ident!r} has no target")
            if target != ident and self.get_blueprint(target) is None:
                raise CatalogError(
                    404, "not_found", f"relation {name!r} of blueprint {ident!r} targets {target!r}, which does not exist"
                )

    def create_blueprint(self, blueprint: Mapping[str, Any]) -> Blueprint:
        with self._lock:
            bp = copy.deepcopy(dict(blueprint))
            self._validate_blueprint(bp)
            if self.get_blueprint(bp["identifier"]) is not None:
                raise CatalogError(409, "identifier_taken", f"blueprint {bp['identifier']!r} already exists")
            bp.setdefault("title", bp["identifier"])
            bp.setdefault("schema", {"properties": {}, "required": []})
            bp["schema"].setdefault("properties", {})
            bp["schema"].setdefault("required", [])
            bp.setdefault("relations", {})
            now = _now()
            bp["createdAt"] = bp["updatedAt"] = now
            self._db.execute("INSERT INTO blueprints VALUES (?, ?)", (bp["identifier"], json.dumps(bp)))
            self._bp_cache[bp["identifier"]] = bp
            return copy.deepcopy(bp)

    def patch_blueprint(self, identifier: str, patch: Mapping[str, Any]) -> Blueprint:
        with self._lock:
            current = self.get_blueprint(identifier)
            if current is None:
                raise CatalogError(404, "not_found", f"blueprint {identifier!r} does not exist")
            updated = {**current, **copy.deepcopy(dict(patch)), "identifier": identifier}
            self._validate_blueprint(updated)
            updated["updatedAt"] = _now()
            self._db.execute("UPDATE blueprints SET body = ? WHERE identifier = ?", (json.dumps(updated), identifier))
            self._bp_cache[identifier] = updated
            return copy.deepcopy(updated)

    # -- scorecards -----------------------------------------------------------------------------------

    def get_scorecard(self, blueprint: str, identifier: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM scorecards WHERE blueprint = ? AND identifier = ?",
                                   (blueprint, identifier)).fetchone()
            return json.loads(row[0]) if row else None

    def list_scorecards(self, blueprint: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM scorecards WHERE blueprint = ? ORDER BY identifier",
                                    (blueprint,)).fetchall()
            return [json.loads(r[0]) for r in rows]

    def create_scorecard(self, blueprint: str, scorecard: Mapping[str, Any]) -> dict[str, Any]:
        """Port's `POST /v1/blueprints/{blueprint}/scorecards`: 404 without the blueprint, 422 for a scorecard
        Port's schema refuses, 409 for an identifier taken."""
        with self._lock:
            self._blueprint(blueprint)
            found = scorecards.problem(scorecard)
            if found:
                raise CatalogError(422, "invalid_request", found)
            if self.get_scorecard(blueprint, scorecard["identifier"]) is not None:
                raise CatalogError(409, "identifier_taken",
                                   f"scorecard {scorecard['identifier']!r} already exists on {blueprint!r}")
            body = {**copy.deepcopy(dict(scorecard)), "blueprint": blueprint,
                    "levels": list(scorecard.get("levels") or scorecards.DEFAULT_LEVELS)}
            self._db.execute("INSERT INTO scorecards (blueprint, identifier, body) VALUES (?, ?, ?)",
                             (blueprint, scorecard["identifier"], json.dumps(body)))
            return body

    # -- entities: reads ------------------------------------------------------------------------------

    def _get(self, blueprint: str, identifier: str) -> Entity | None:
        row = self._db.execute(
            "SELECT body FROM entities WHERE blueprint = ? AND identifier = ?", (blueprint, identifier)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def get_entity(self, blueprint: str, identifier: str) -> Entity | None:
        with self._lock:
            return self._get(blueprint, identifier)

    def _iter_entities(self, blueprint: str, after: str | None = None, with_datasource: bool = False) -> Iterable[Entity]:
        """The entities of `blueprint` in identifier order; with their writer under `$datasource` when asked (for
        search rules on it: Port's bodies do not carry it)."""
        cursor = after
        while True:
            rows = self._db.execute(
                "SELECT e.identifier, e.body, s.datasource FROM entities e LEFT JOIN sources s "
                "ON s.blueprint = e.blueprint AND s.identifier = e.identifier "
                "WHERE e.blueprint = ? AND e.identifier > ? ORDER BY e.identifier LIMIT 1000",
                (blueprint, cursor or ""),
            ).fetchall()
            if not rows:
                return
            for _, body, source in rows:
                entity = json.loads(body)
                if with_datasource:
                    entity["$datasource"] = source
                yield entity
            cursor = rows[-1][0]

    def datasource_entities(self, prefix: str, suffix: str, before: str | None = None, limit: int = 1000,
                            from_: str | None = None) -> tuple[list[dict[str, str]], str | None]:
        """Port's `POST /v1/blueprints/entities/datasource-entities`: `{identifier, blueprint}` of every entity whose
        writer (`$datasource`) starts with `prefix` and ends with `suffix`, last written before `before` (RFC 3339)
        when given; a page of `limit`, continued with the returned `next` as `from_`."""
        cutoff = datetime.fromisoformat(before.replace("Z", "+00:00")) if before else None
        after = json.loads(from_) if from_ else ["", ""]
        page: list[dict[str, str]] = []
        with self._lock:
            rows = self._db.execute(
                "SELECT blueprint, identifier, datasource, updated_at FROM sources WHERE (blueprint, identifier) > (?, ?) "
                "ORDER BY blueprint, identifier", after)
            for bp, ident, source, updated in rows:
                if source is None or not source.startswith(prefix) or not source.endswith(suffix):
                    continue
                if cutoff is not None and datetime.fromisoformat(updated.replace("Z", "+00:00")) >= cutoff:
                    continue
                if len(page) == limit:
                    return page, json.dumps([page[-1]["blueprint"], page[-1]["identifier"]])
                page.append({"blueprint": bp, "identifier": ident})
        return page, None

    def entities(self, blueprint: str) -> list[Entity]:
        with self._lock:
            return list(self._iter_entities(blueprint))

    def writers(self, blueprint: str) -> dict[str, str | None]:
        """{identifier: `$datasource`} of the entities of `blueprint`: who last wrote each, as Port records it."""
        with self._lock:
            return dict(self._db.execute("SELECT identifier, datasource FROM sources WHERE blueprint = ?",
                                         (blueprint,)).fetchall())

    def counts(self) -> dict[str, int]:
        """Entities per blueprint."""
        with self._lock:
            return dict(self._db.execute("SELECT blueprint, COUNT(*) FROM entities GROUP BY blueprint").fetchall())

    def count(self, blueprint: str | None = None) -> int:
        with self._lock:
            if blueprint is None:
                return self._db.execute("SELECT COUNT(*) FROM entities").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM entities WHERE blueprint = ?", (blueprint,)).fetchone()[0]

    def search(
        self,
        blueprint: str,
        query: Mapping[str, Any] | None = None,
        *,
        limit: int = MAX_SEARCH_LIMIT,
        from_: str | None = None,
        exclude_calculated: bool = False,
    ) -> tuple[list[Entity], str | None]:
        """One page of the entities of `blueprint` matching `query`, and the cursor of the next page (or None).

        As Port does, an entity's `properties` carry the blueprint's calculation properties (its jq `calculation`
        over the entity), mirror properties (a related entity's, port/mirror.py) and aggregation properties (over
        related entities, port/aggregation.py) unless `exclude_calculated`."""
        with self._lock:
            bp = self._blueprint(blueprint)
            if not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
                raise CatalogError(422, "invalid_request", f"limit must be between 1 and {MAX_SEARCH_LIMIT}")
            page: list[Entity] = []
            has_more = False
            by_writer = "$datasource" in json.dumps(query or {})
            try:
                for entity in self._iter_entities(blueprint, from_, with_datasource=by_writer):
                    if not matches(entity, query):
                        continue
                    entity.pop("$datasource", None)
                    if len(page) == limit:
                        has_more = True
                        break
                    page.append(entity)
            except QueryError as exc:
                raise CatalogError(422, "invalid_request", str(exc)) from None
            nxt = page[-1]["identifier"] if has_more else None
            if not exclude_calculated:
                self._add_computed(bp, page)
            return page, nxt

    def _add_computed(self, bp: Blueprint, page: list[Entity]) -> None:
        self._add_properties(bp, page)
        cards = self.list_scorecards(bp["identifier"])
        if cards:  # evaluated over the computed properties, as Port's are
            for entity in page:
                entity["scorecards"] = {card["identifier"]: scorecards.evaluate(card, entity) for card in cards
                                        if scorecards.applies(card, entity)}

    def _add_properties(self, bp: Blueprint, page: list[Entity]) -> None:
        calculated = bp.get("calculationProperties") or {}
        aggregated = bp.get("aggregationProperties") or {}
        mirrored = bp.get("mirrorProperties") or {}
        if not calculated and not aggregated and not mirrored:
            return
        blueprints = {b["identifier"]: b for b in self.list_blueprints()} if aggregated or mirrored else {}
        for entity in page:
            entity["properties"] = {
                **(entity.get("properties") or {}),
                **{name: _calculate(spec, entity) for name, spec in calculated.items()},
                **{name: mirror.value(spec["path"], entity, blueprints, bp["identifier"], self._get)
                   for name, spec in mirrored.items()},
                **{name: aggregation.compute(spec, bp["identifier"], entity["identifier"], blueprints, self._step,
                                             self._load) for name, spec in aggregated.items()}}

    def _step(self, blueprint: str, identifier: str, relation: str, forwards: bool) -> list[tuple[str, str]]:
        if forwards:
            sql = "SELECT dst_bp, dst_id FROM edges WHERE src_bp = ? AND src_id = ? AND relation = ?"
        else:
            sql = "SELECT src_bp, src_id FROM edges WHERE dst_bp = ? AND dst_id = ? AND relation = ?"
        return self._db.execute(sql, (blueprint, identifier, relation)).fetchall()

    def _load(self, blueprint: str, identifiers: set[str]) -> list[Entity]:
        ids = sorted(identifiers)
        found: list[Entity] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._db.execute(
                f"SELECT body FROM entities WHERE blueprint = ? AND identifier IN ({','.join('?' * len(chunk))})",
                (blueprint, *chunk)).fetchall()
            found.extend(json.loads(r[0]) for r in rows)
        return found

    def computed_entities(self, blueprint: str) -> list[Entity]:
        """Every entity of `blueprint` as a search returns it: with its calculation and aggregation properties."""
        out: list[Entity] = []
        cursor: str | None = None
        while True:
            page, cursor = self.search(blueprint, None, from_=cursor)
            out.extend(page)
            if cursor is None:
                return out

    def search_all(self, query: Mapping[str, Any] | None) -> list[Entity]:
        with self._lock:
            out: list[Entity] = []
            for bp in self.list_blueprints():
                for entity in self._iter_entities(bp["identifier"]):
                    if matches(entity, query):
                        out.append(entity)
            return out

    def _resolve_query(self, blueprint: str, query: Mapping[str, Any]) -> list[str]:
        try:
            return [e["identifier"] for e in self._iter_entities(blueprint) if matches(e, query)]
        except QueryError as exc:
            raise CatalogError(422, "invalid_request", str(exc)) from None

    # -- entities: upsert -----------------------------------------------------------------------------

    def upsert_entities(
        self,
        blueprint: str,
        entities: Sequence[Mapping[str, Any]],
        *,
        merge: bool = False,
        create_missing_related: bool = False,
        datasource: str | None = None,
    ) -> list[UpsertOutcome]:
        """Upserts each entity on its own: one refusal does not affect the others (Port's bulk semantics).

        `datasource` is the writer, as Port records it (the request's User-Agent) on every entity it writes.
        Raises CatalogError only for what fails the whole request (the blueprint does not exist)."""
        with self._lock:
            self._writer = datasource
            bp = self._blueprint(blueprint)
            outcomes: list[UpsertOutcome] = []
            self._begin()
            try:
                for index, entity in enumerate(entities):
                    self._db.execute("SAVEPOINT one")
                    try:
                        stored, created = self._upsert_one(bp, entity, merge, create_missing_related)
                    except CatalogError as exc:
                        self._db.execute("ROLLBACK TO one")
                        self._db.execute("RELEASE one")
                        ident = entity.get("identifier") if isinstance(entity, Mapping) else None
                        outcomes.append(
                            UpsertOutcome(
                                identifier=ident if isinstance(ident, str) else json.dumps(ident),
                                index=index,
                                ok=False,
                                status=exc.status,
                                error=exc.error,
                                message=exc.message,
                            )
                        )
                    else:
                        self._db.execute("RELEASE one")
                        outcomes.append(
                            UpsertOutcome(identifier=stored["identifier"], index=index, ok=True, created=created, entity=stored)
                        )
                self._commit()
            except BaseException:
                self._rollback()
                raise
            return outcomes

    def _upsert_one(
        self, bp: Blueprint, entity: Mapping[str, Any], merge: bool, create_missing: bool
    ) -> tuple[Entity, bool]:
        bp_id = bp["identifier"]
        problem = request_problem(entity)
        if problem:
            raise CatalogError(422, "invalid_request", problem)
        ident = entity.get("identifier")
        if is_search_query(ident):
            found = self._resolve_query(bp_id, ident)
            if len(found) != 1:
                raise CatalogError(
                    404 if not found else 422,
                    "not_found" if not found else "invalid_request",
                    f"the search identifier matched {len(found)} entities of {bp_id!r} (it must match exactly one)",
                )
            ident = found[0]
        if not valid_identifier(ident):
            raise CatalogError(422, "invalid_request", f"invalid entity identifier {ident!r}")

        schema_props: dict[str, Any] = (bp.get("schema") or {}).get("properties") or {}
        required_props: list[str] = (bp.get("schema") or {}).get("required") or []
        bp_relations: dict[str, Any] = bp.get("relations") or {}

        props_in = entity.get("properties") or {}
        if not isinstance(props_in, Mapping):
            raise CatalogError(422, "invalid_request", "'properties' must be an object")
        for name, value in props_in.items():
            spec = schema_props.get(name)
            if spec is None:
                raise CatalogError(
                    422, SCHEMA_MISMATCH, f"property {name!r} is not in the schema of blueprint {bp_id!r}"
                )
            _check_property(name, spec, value)

        rels_in = entity.get("relations") or {}
        if not isinstance(rels_in, Mapping):
            raise CatalogError(422, "invalid_request", "'relations' must be an object")
        resolved: dict[str, Any] = {}
        for name, value in rels_in.items():
            rel = bp_relations.get(name)
            if rel is None:
                raise CatalogError(422, "invalid_request", f"relation {name!r} is not in blueprint {bp_id!r}")
            resolved[name] = self._resolve_relation(bp_id, ident, name, rel, value, create_missing)

        existing = self._get(bp_id, ident)
        now = _now()
        if existing is not None and merge:
            body = existing
            for key in ("title", "icon"):
                if key in entity:
                    body[key] = entity[key]
            if "team" in entity:
                body["team"] = normalize_team(entity["team"])
            body["properties"] = {**(body.get("properties") or {}), **dict(props_in)}
            body["relations"] = {**(body.get("relations") or {}), **resolved}
        else:
            body = {
                "identifier": ident,
                "title": entity.get("title"),
                "icon": entity.get("icon"),
                "team": normalize_team(entity.get("team")),
                "properties": dict(props_in),
                "relations": resolved,
                "createdAt": existing["createdAt"] if existing else now,
            }
        body["blueprint"] = bp_id
        body["updatedAt"] = now

        for name in required_props:
            if body["properties"].get(name) is None:
                raise CatalogError(422, SCHEMA_MISMATCH, f"required property {name!r} of {bp_id!r} is missing")
        for name, rel in bp_relations.items():
            if rel.get("required") and body["relations"].get(name) in (None, []):
                raise CatalogError(422, "required_relation", f"required relation {name!r} of {bp_id!r} is missing")

        self._write(bp, body)
        return body, existing is None

    def _resolve_relation(
        self, bp_id: str, ident: str, name: str, rel: Mapping[str, Any], value: Any, create_missing: bool
    ) -> Any:
        target = rel["target"]
        many = bool(rel.get("many"))
        if value is None:
            return [] if many else None
        if is_search_query(value):
            found = self._resolve_query(target, value)
            if len(found) > MAX_SEARCH_MATCHES:
                raise CatalogError(422, "invalid_request", f"the search relation {name!r} of {ident!r} matched "
                                   f"{len(found)} entities of {target!r}; Port allows at most {MAX_SEARCH_MATCHES}")
            if many:
                return found
            if len(found) != 1:
                raise CatalogError(
                    422,
                    "invalid_request",
                    f"the search relation {name!r} of {ident!r} matched {len(found)} entities of {target!r} "
                    "(a single relation must match exactly one)",
                )
            return found[0]
        if many:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CatalogError(422, "relation_many_violation",
                                   f"relation {name!r} is many: expected a list of identifiers")
            ids = list(dict.fromkeys(value))
        else:
            if not isinstance(value, str):
                raise CatalogError(422, "invalid_request", f"relation {name!r} expects one identifier")
            ids = [value]
        for target_id in ids:
            if target == bp_id and target_id == ident:
                continue
            if self._get(target, target_id) is None:
                if not create_missing:
                    raise CatalogError(
                        404,
                        "not_found",
                        f"relation {name!r} of {ident!r} points at {target_id!r}, which is not an entity of {target!r}",
                    )
                if not valid_identifier(target_id):
                    raise CatalogError(422, "invalid_request", f"invalid related identifier {target_id!r}")
                now = _now()
                stub = {
                    "identifier": target_id, "title": None, "icon": None, "team": [], "properties": {},
                    "relations": {}, "blueprint": target, "createdAt": now, "updatedAt": now,
                }
                self._write(self._blueprint(target), stub)
        return ids if many else ids[0]

    def _write(self, bp: Blueprint, body: Entity) -> None:
        bp_id, ident = bp["identifier"], body["identifier"]
        self._db.execute(
            "INSERT INTO entities VALUES (?, ?, ?) ON CONFLICT (blueprint, identifier) DO UPDATE SET body = excluded.body",
            (bp_id, ident, json.dumps(body)),
        )
        self._db.execute(
            "INSERT INTO sources VALUES (?, ?, ?, ?) ON CONFLICT (blueprint, identifier) DO UPDATE SET "
            "datasource = excluded.datasource, updated_at = excluded.updated_at",
            (bp_id, ident, self._writer, body.get("updatedAt") or _now()),
        )
        self._db.execute("DELETE FROM edges WHERE src_bp = ? AND src_id = ?", (bp_id, ident))
        rels = bp.get("relations") or {}
        edges = []
        for name, value in (body.get("relations") or {}).items():
            target = (rels.get(name) or {}).get("target")
            if target is None or value is None:
                continue
            for dst in value if isinstance(value, list) else [value]:
                edges.append((bp_id, ident, name, target, dst))
        if edges:
            self._db.executemany("INSERT INTO edges VALUES (?, ?, ?, ?, ?)", edges)

    # -- entities: delete -----------------------------------------------------------------------------

    def _dependents(self, bp_id: str, ident: str) -> list[tuple[str, str, str, bool]]:
        rows = self._db.execute(
            "SELECT src_bp, src_id, relation FROM edges WHERE dst_bp = ? AND dst_id = ?", (bp_id, ident)
        ).fetchall()
        out = []
        for src_bp, src_id, relation in rows:
            rel = ((self._blueprint(src_bp).get("relations") or {}).get(relation)) or {}
            out.append((src_bp, src_id, relation, bool(rel.get("required"))))
        return out

    def delete_entities(self, blueprint: str, identifiers: Sequence[str], *, delete_dependents: bool) -> DeleteOutcome:
        """Deletes the given entities (missing ones are ignored). All or nothing when there are dependents."""
        with self._lock:
            self._blueprint(blueprint)
            self._begin()
            try:
                present = [i for i in dict.fromkeys(identifiers) if self._get(blueprint, i) is not None]
                doomed: dict[tuple[str, str], None] = {(blueprint, i): None for i in present}
                dependents: list[tuple[str, str]] = []
                queue = list(doomed)
                while queue:
                    node = queue.pop()
                    for src_bp, src_id, _rel, required in self._dependents(*node):
                        key = (src_bp, src_id)
                        if not required or key in doomed:
                            continue
                        if not delete_dependents:
                            raise CatalogError(
                                403,
                                "has_dependents",
                                f"entity {node[1]!r} of {node[0]!r} has dependent entities ({src_id!r} of {src_bp!r}); "
                                "nothing was deleted (set delete_dependents=true to delete them too)",
                            )
                        doomed[key] = None
                        dependents.append(key)
                        queue.append(key)
                for bp_id, ident in doomed:
                    self._db.execute("DELETE FROM entities WHERE blueprint = ? AND identifier = ?", (bp_id, ident))
                    self._db.execute("DELETE FROM sources WHERE blueprint = ? AND identifier = ?", (bp_id, ident))
                    self._db.execute("DELETE FROM edges WHERE src_bp = ? AND src_id = ?", (bp_id, ident))
                for bp_id, ident in doomed:
                    for src_bp, src_id, relation, _required in self._dependents(bp_id, ident):
                        self._clear_relation(src_bp, src_id, relation, ident)
                    self._db.execute("DELETE FROM edges WHERE dst_bp = ? AND dst_id = ?", (bp_id, ident))
                self._commit()
            except BaseException:
                self._rollback()
                raise
            return DeleteOutcome(deleted=present, dependents=dependents)

    def _clear_relation(self, src_bp: str, src_id: str, relation: str, target_id: str) -> None:
        body = self._get(src_bp, src_id)
        if body is None:
            return
        value = (body.get("relations") or {}).get(relation)
        if isinstance(value, list):
            body["relations"][relation] = [v for v in value if v != target_id]
        elif value == target_id:
            body["relations"][relation] = None
        self._db.execute(
            "UPDATE entities SET body = ? WHERE blueprint = ? AND identifier = ?", (json.dumps(body), src_bp, src_id)
        )


def default_catalog_path() -> Path:
    """PORT_LOCAL_CATALOG, else $DAGSTER_HOME/sentry_port/catalog.sqlite, else ./.sentry_port/catalog.sqlite."""
    return local_catalog_path()
