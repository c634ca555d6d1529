"""Sentry's `Link` header: `<url>; rel="next"; results="true"; cursor="0:100:0"`, previous link first; and the bound
on a walk through a list's pages (`PageWalk`), so that no answer makes the client page for ever."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sentry_port_assets.sentry.errors import SentryPagingError

_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z]+="[^"]*")*)')
_PARAM = re.compile(r'([A-Za-z]+)="([^"]*)"')

# The pages a list may take when Sentry does not say how long it is: 10,000 pages of 100 are a million items held in
# memory at once (gigabytes of JSON), far past any list this sync reads (README: 10,000 issues already cost 67 minutes
# of tag requests). Only a server that never ends gets there.
MAX_PAGES = 10_000
# When it does say: the issue list counts its matches (OrganizationGroupIndexEndpoint pages with count_hits=True, and
# api/base.py's add_cursor_headers sends them as X-Hits, up to X-Max-Hits when it caps the count). The count can be an
# estimate (sampled when the search filters after Snuba, scaled down for entries a page drops), so the walk may take
# HITS_SLACK times the pages it implies, and never fewer than MIN_PAGES.
HITS_SLACK = 10
MIN_PAGES = 100


def parse_link_header(value: str | None) -> dict[str, dict[str, str]]:
    """`{rel: {"url": …, "results": …, "cursor": …}}` for each link in the header."""
    links: dict[str, dict[str, str]] = {}
    for url, params in _LINK.findall(value or ""):
        attrs = dict(_PARAM.findall(params))
        if "rel" in attrs:
            links[attrs["rel"]] = {"url": url, **attrs}
    return links


def _next_link(value: str | None) -> dict[str, str] | None:
    nxt = parse_link_header(value).get("next")
    return nxt if nxt and nxt.get("results") == "true" and nxt["url"] else None


def next_page_url(value: str | None) -> str | None:
    """The next page's URL, only while Sentry says that page has results."""
    nxt = _next_link(value)
    return nxt["url"] if nxt else None


def _count(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def page_limit(headers: Mapping[str, str], page_size: int) -> tuple[int, str]:
    """How many pages a list may take, from its first answer, and why (for the error that stops it)."""
    hits, ceiling = _count(headers.get("x-hits")), _count(headers.get("x-max-hits"))
    if hits is None or (ceiling is not None and hits >= ceiling):
        return MAX_PAGES, f"more than any list this sync reads takes ({MAX_PAGES:,})"
    pages = max(MIN_PAGES, HITS_SLACK * -(-hits // page_size))
    return pages, f"far more than the {hits:,} items Sentry counted (X-Hits) take at {page_size} a page"


class PageWalk:
    """One walk through a list's pages, `rel="next"` after `rel="next"`. It refuses to go on, with SentryPagingError,
    on a cursor Sentry already sent (every later page would be one already read: a server bug, or a proxy that drops
    the `cursor` parameter so that every answer is page one) and past `page_limit`."""

    def __init__(self, endpoint: str, page_size: int) -> None:
        self.endpoint = endpoint
        self.page_size = page_size
        self.pages = 0
        self._limit: tuple[int, str] = (MAX_PAGES, "")
        self._cursors: set[str] = set()

    def next_url(self, headers: Mapping[str, str]) -> str | None:
        """The URL of the page after the one just answered with `headers`; None when the list is done."""
        self.pages += 1
        if self.pages == 1:
            self._limit = page_limit(headers, self.page_size)
        nxt = _next_link(headers.get("link"))
        if nxt is None:
            return None
        cursor = nxt.get("cursor") or nxt["url"]
        if cursor in self._cursors:
            raise SentryPagingError(
                self.endpoint, f"its Link header sent the next cursor {cursor[:60]!r} a second time, after "
                               f"{self.pages} pages")
        limit, why = self._limit
        if self.pages >= limit:
            raise SentryPagingError(
                self.endpoint, f"it still had a next page after {self.pages:,} pages, {why}")
        self._cursors.add(cursor)
        return nxt["url"]
