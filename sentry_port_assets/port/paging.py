"""The bound on Port's paged searches (`{entities, next}`, continued with `from = next`): the blueprint search, the
datasource search, and the local catalog's same two. A `next` seen before means every later page is one already read;
a search that goes on past any catalog's size is one that never ends. Either raises PortPagingError, which fails the
publish in its read phase, before anything is deleted."""

from __future__ import annotations

from typing import Any

from sentry_port_assets.port.errors import PortPagingError

# Port's search answers say nothing of their total (docs.port.io/api-reference/search-a-blueprints-entities: the
# entities and `next`; Ocean reads no more, port_ocean/clients/port/mixins/entities.py), so the bound is a size no
# catalog reaches: ten million entities in one search (10,000 pages of Port's 1,000), each of whose identifiers a
# publish keeps in memory.
MAX_SEARCH_ENTITIES = 10_000_000


PORT_REMEDY = "retry later, and if it persists, report it to Port with this request"


class SearchCursors:
    """The `next` cursors of one paged search: `what` names it in the error (Port's request, or the local catalog's
    search), `remedy` says what to do."""

    def __init__(self, what: str, page_size: int, *, path: str | None = None, remedy: str = PORT_REMEDY) -> None:
        self.what = what
        self.path = path
        self.remedy = remedy
        self.max_pages = -(-MAX_SEARCH_ENTITIES // max(page_size, 1))
        self.pages = 0
        self._seen: set[str] = set()

    def follow(self, cursor: Any) -> Any:
        """The cursor to ask for the next page with (the answer's `next`), or None when the search is done."""
        self.pages += 1
        if not cursor:
            return None
        key = str(cursor)
        if key in self._seen:
            raise self._error(f"answered the `next` {key[:60]!r} a second time, after {self.pages} pages")
        if self.pages >= self.max_pages:
            raise self._error(f"still had a next page after {self.pages:,} pages of up to "
                              f"{MAX_SEARCH_ENTITIES // self.max_pages:,} entities, more than any catalog holds")
        self._seen.add(key)
        return cursor

    def _error(self, why: str) -> PortPagingError:
        return PortPagingError(f"{self.what} did not end: it {why}. The publish stops here, before it deletes "
                               f"anything; {self.remedy}.", method="POST" if self.path else None, path=self.path)
