"""Where entities are published: Port's API or the local catalog, behind one interface.

`build_target()` picks one: Port when PORT_CLIENT_ID and PORT_CLIENT_SECRET are set, else the local catalog
at PORT_LOCAL_CATALOG (or its default path).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sentry_port_assets.config import port_credentials_problem
from sentry_port_assets.port.blueprints import ensure_blueprints as _ensure
from sentry_port_assets.port.scorecards import ensure_scorecards as _ensure_scorecards
from sentry_port_assets.port.client import PortClient
from sentry_port_assets.port.catalog import MAX_SEARCH_LIMIT, CatalogError, LocalCatalog, default_catalog_path
from sentry_port_assets.port.datasource import DEFAULT_DATASOURCE, Datasource, Writer
from sentry_port_assets.port.errors import PortConfigError, PortNotFoundError
from sentry_port_assets.port.paging import SearchCursors
from sentry_port_assets.port.results import DeleteResult, EnsureReport, EntityResult

Entity = dict[str, Any]
Blueprint = dict[str, Any]
# The local catalog writes in one call; for progress lines it writes this many at a time.
LOCAL_BATCH = 1000


class PortTarget(abc.ABC):
    """The operations the reconciler needs. Every method is async; `aclose()` releases connections."""

    #: "port" or "local"
    kind: str = "?"

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where entities go (a URL or a path), safe to show: never a credential."""

    @abc.abstractmethod
    async def ensure_blueprints(
        self, blueprints: Iterable[Mapping[str, Any]], fragments: Iterable[Mapping[str, Any]] = ()
    ) -> EnsureReport: ...

    @abc.abstractmethod
    async def ensure_scorecards(self, scorecards: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
        """Creates the missing scorecards of `[{blueprint, data: [scorecard]}]`, leaves existing ones; returns the
        `blueprint/identifier` of those created and of those kept (port/scorecards.py)."""

    @abc.abstractmethod
    async def get_blueprint(self, identifier: str) -> Blueprint | None: ...

    #: who this target writes as
    datasource: Datasource = DEFAULT_DATASOURCE

    @abc.abstractmethod
    def entity_pages(self, blueprint: str, query: Mapping[str, Any] | None = None) -> AsyncIterator[list[Entity]]:
        """The entities of `blueprint` matching `query`, a page at a time (nothing when the blueprint does not exist),
        as Port returns them to a resync: without calculated values, only the fields a mapping writes."""

    async def owned_among(self, blueprint: str, ids: Iterable[str]) -> set[str]:
        """Which of `ids` this target's datasource (its writers) wrote (one search per 100 identifiers a writer)."""
        wanted = sorted(set(ids))
        found: set[str] = set()
        for writer in self.datasource.writers:
            for start in range(0, len(wanted), 100):
                query = {"combinator": "and", "rules": [
                    {"property": "$identifier", "operator": "in", "value": wanted[start:start + 100]},
                    *writer.search_rules()]}
                async for page in self.entity_pages(blueprint, query):
                    found.update(entity["identifier"] for entity in page)
        return found

    async def search_entities(self, blueprint: str) -> list[Entity]:
        """Every entity of `blueprint` (all pages); [] when the blueprint does not exist."""
        return [entity async for page in self.entity_pages(blueprint) for entity in page]

    @abc.abstractmethod
    async def upsert_batch(
        self, blueprint: str, entities: Sequence[Mapping[str, Any]], *, merge: bool, create_missing: bool,
        on_done: Callable[[int], None] | None = None,
    ) -> list[EntityResult]:
        """Upserts any number of entities (split into Port-sized batches); one result per entity, in order.
        `on_done(n)`: called as n more entities are answered."""

    @abc.abstractmethod
    async def delete(self, blueprint: str, ids: Sequence[str], *, delete_dependents: bool) -> DeleteResult: ...

    @abc.abstractmethod
    def written_pages(self, writer: Writer, before: str | None = None) -> AsyncIterator[list[dict[str, str]]]:
        """`{identifier, blueprint}` of the entities `writer` wrote, last written before `before` (RFC 3339) when
        given, a page at a time (Port's datasource search)."""

    async def written_by(self, writer: Writer, before: str | None = None) -> dict[str, set[str]]:
        """{blueprint: identifiers} `writer` wrote, last written before `before`."""
        out: dict[str, set[str]] = {}
        async for page in self.written_pages(writer, before):
            _by_blueprint(page, out)
        return out

    async def owned(self, before: str | None = None) -> dict[str, set[str]]:
        """{blueprint: identifiers} this target's datasource wrote (its own writer and the one it adopts), last
        written before `before` (RFC 3339)."""
        out: dict[str, set[str]] = {}
        for writer in self.datasource.writers:
            for bp, ids in (await self.written_by(writer, before)).items():
                out.setdefault(bp, set()).update(ids)
        return out

    async def count_owned(self, blueprints: Iterable[str], at_least: int) -> int:
        """How many entities of `blueprints` this target's datasource wrote, counted page by page until `at_least`
        are found (a webhook batch's deletion threshold needs no more)."""
        wanted, count = set(blueprints), 0
        for writer in self.datasource.writers:
            pages = self.written_pages(writer)
            try:
                async for page in pages:
                    count += sum(1 for entity in page if entity["blueprint"] in wanted)
                    if count >= at_least:
                        return count
            finally:
                await pages.aclose()  # type: ignore[attr-defined]
        return count

    def stats(self) -> dict[str, int | float]:
        return {}

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> PortTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class LocalCatalogTarget(PortTarget):
    """The local catalog (SQLite, Port's semantics)."""

    kind = "local"

    def __init__(self, catalog: LocalCatalog | str | Path, datasource: Datasource = DEFAULT_DATASOURCE) -> None:
        self._owns = not isinstance(catalog, LocalCatalog)
        self.catalog = catalog if isinstance(catalog, LocalCatalog) else LocalCatalog(catalog)
        self.datasource = datasource
        self.requests = {"upserted": 0, "deleted": 0}

    @property
    def description(self) -> str:
        return f"local catalog {self.catalog.path}"

    async def ensure_blueprints(
        self, blueprints: Iterable[Mapping[str, Any]], fragments: Iterable[Mapping[str, Any]] = ()
    ) -> EnsureReport:
        async def get(i: str) -> Blueprint | None:
            return self.catalog.get_blueprint(i)

        async def create(bp: Blueprint) -> Any:
            return self.catalog.create_blueprint(bp)

        async def patch(i: str, body: Blueprint) -> Any:
            return self.catalog.patch_blueprint(i, body)

        try:
            return await _ensure(get, create, patch, blueprints, fragments)
        except CatalogError as exc:
            raise PortConfigError(f"the local catalog refused a blueprint: {exc.message}", status=exc.status, error=exc.error) from None

    async def ensure_scorecards(self, scorecards: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
        async def get(bp: str, i: str) -> dict[str, Any] | None:
            return self.catalog.get_scorecard(bp, i)

        async def create(bp: str, scorecard: dict[str, Any]) -> Any:
            return self.catalog.create_scorecard(bp, scorecard)

        try:
            return await _ensure_scorecards(get, create, scorecards)
        except CatalogError as exc:
            raise PortConfigError(f"the local catalog refused a scorecard: {exc.message}", status=exc.status,
                                  error=exc.error) from None

    async def get_blueprint(self, identifier: str) -> Blueprint | None:
        return self.catalog.get_blueprint(identifier)

    async def entity_pages(self, blueprint: str, query: Mapping[str, Any] | None = None) -> AsyncIterator[list[Entity]]:
        if self.catalog.get_blueprint(blueprint) is None:
            return
        cursors = self._cursors(f"the local catalog's search of {blueprint!r}")
        cursor: str | None = None
        while True:
            page, cursor = self.catalog.search(blueprint, query, limit=MAX_SEARCH_LIMIT, from_=cursor,
                                               exclude_calculated=True)
            yield page
            cursor = cursors.follow(cursor)
            if cursor is None:
                return

    async def upsert_batch(
        self, blueprint: str, entities: Sequence[Mapping[str, Any]], *, merge: bool, create_missing: bool,
        on_done: Callable[[int], None] | None = None,
    ) -> list[EntityResult]:
        if on_done is not None and len(entities) > LOCAL_BATCH:  # one progress step per LOCAL_BATCH entities
            results: list[EntityResult] = []
            for start in range(0, len(entities), LOCAL_BATCH):
                chunk = entities[start:start + LOCAL_BATCH]
                results += await self.upsert_batch(blueprint, chunk, merge=merge, create_missing=create_missing)
                on_done(len(chunk))
            return results
        try:
            outcomes = self.catalog.upsert_entities(
                blueprint, entities, merge=merge, create_missing_related=create_missing,
                datasource=self.datasource.user_agent,
            )
        except CatalogError as exc:
            return [
                EntityResult(identifier=str(e.get("identifier")), ok=False, status=exc.status, error=exc.error, message=exc.message)
                for e in entities
            ]
        self.requests["upserted"] += sum(o.ok for o in outcomes)
        if on_done is not None:
            on_done(len(entities))
        return [
            EntityResult(identifier=o.identifier, ok=o.ok, created=o.created, status=o.status if not o.ok else (201 if o.created else 200), error=o.error, message=o.message)
            for o in outcomes
        ]

    async def delete(self, blueprint: str, ids: Sequence[str], *, delete_dependents: bool) -> DeleteResult:
        result = DeleteResult()
        for start in range(0, len(ids), 100):
            chunk = list(ids[start : start + 100])
            try:
                outcome = self.catalog.delete_entities(blueprint, chunk, delete_dependents=delete_dependents)
            except CatalogError as exc:
                result.failures += [
                    EntityResult(identifier=i, ok=False, status=exc.status, error=exc.error, message=exc.message) for i in chunk
                ]
            else:
                result.deleted += outcome.deleted
                self.requests["deleted"] += len(outcome.deleted)
        return result

    async def written_pages(self, writer: Writer, before: str | None = None) -> AsyncIterator[list[dict[str, str]]]:
        cursors = self._cursors("the local catalog's datasource search")
        cursor: str | None = None
        while True:
            page, cursor = self.catalog.datasource_entities(writer.prefix, writer.suffix, before,
                                                            limit=MAX_SEARCH_LIMIT, from_=cursor)
            yield page
            cursor = cursors.follow(cursor)
            if cursor is None:
                return

    def _cursors(self, what: str) -> SearchCursors:
        # The catalog's cursors only move forward (identifier order), so this never fires unless the catalog breaks.
        return SearchCursors(f"{what} in {self.catalog.path}", MAX_SEARCH_LIMIT,
                             remedy="the catalog's paging is broken: report it with this message")

    def stats(self) -> dict[str, int | float]:
        return dict(self.requests)

    async def aclose(self) -> None:
        if self._owns:
            self.catalog.close()


class PortApiTarget(PortTarget):
    """Port's REST API through PortClient."""

    kind = "port"

    def __init__(self, client: Any, datasource: Datasource = DEFAULT_DATASOURCE) -> None:
        self.client = client
        self.datasource = datasource

    @property
    def description(self) -> str:
        return f"Port at {self.client.base_url}"

    async def ensure_blueprints(
        self, blueprints: Iterable[Mapping[str, Any]], fragments: Iterable[Mapping[str, Any]] = ()
    ) -> EnsureReport:
        return await self.client.ensure_blueprints(blueprints, fragments)

    async def ensure_scorecards(self, scorecards: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
        return await self.client.ensure_scorecards(scorecards)

    async def get_blueprint(self, identifier: str) -> Blueprint | None:
        return await self.client.get_blueprint(identifier)

    async def entity_pages(self, blueprint: str, query: Mapping[str, Any] | None = None) -> AsyncIterator[list[Entity]]:
        try:
            async for page in self.client.entity_pages(blueprint, query):
                yield page
        except PortNotFoundError:
            return

    async def upsert_batch(
        self, blueprint: str, entities: Sequence[Mapping[str, Any]], *, merge: bool, create_missing: bool,
        on_done: Callable[[int], None] | None = None,
    ) -> list[EntityResult]:
        return await self.client.upsert_entities(blueprint, entities, merge=merge, create_missing_related=create_missing,
                                                 on_done=on_done)

    async def delete(self, blueprint: str, ids: Sequence[str], *, delete_dependents: bool) -> DeleteResult:
        return await self.client.delete_entities(blueprint, ids, delete_dependents=delete_dependents)

    async def written_pages(self, writer: Writer, before: str | None = None) -> AsyncIterator[list[dict[str, str]]]:
        pages = self.client.datasource_pages(writer.prefix, writer.suffix, before)
        try:
            async for page in pages:
                yield page
        finally:
            await pages.aclose()

    def stats(self) -> dict[str, int | float]:
        return self.client.stats.as_metadata()

    async def aclose(self) -> None:
        await self.client.aclose()


def _by_blueprint(found: Iterable[Mapping[str, str]], out: dict[str, set[str]]) -> dict[str, set[str]]:
    for entity in found:
        out.setdefault(entity["blueprint"], set()).add(entity["identifier"])
    return out


def build_target(
    *,
    datasource: Datasource | None = None,
    client_id: str | None,
    client_secret: str | None,
    base_url: str,
    catalog_path: str | Path | None = None,
    demo_source: bool = False,
    **client_options: Any,
) -> PortTarget:
    """Port when both credentials are given, else the local catalog (`catalog_path`, else its default path).

    Raises PortConfigError when only one credential is set, or when demo data would reach a real Port."""
    source = datasource or DEFAULT_DATASOURCE
    problem = port_credentials_problem(bool(client_id), bool(client_secret), demo_source)
    if problem:
        raise PortConfigError(problem + ".")
    if client_id and client_secret:
        client = PortClient(client_id, client_secret, base_url, user_agent=source.user_agent, **client_options)
        return PortApiTarget(client, source)
    return LocalCatalogTarget(Path(catalog_path) if catalog_path else default_catalog_path(), source)


__all__ = [
    "LocalCatalogTarget",
    "build_target",
    "PortApiTarget",
    "PortTarget",
]

