"""Sentry's `Link` header: `<url>; rel="next"; results="true"; cursor="0:100:0"`, previous link first."""

from __future__ import annotations

import re

_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[A-Za-z]+="[^"]*")*)')
_PARAM = re.compile(r'([A-Za-z]+)="([^"]*)"')


def parse_link_header(value: str | None) -> dict[str, dict[str, str]]:
    """`{rel: {"url": …, "results": …, "cursor": …}}` for each link in the header."""
    links: dict[str, dict[str, str]] = {}
    for url, params in _LINK.findall(value or ""):
        attrs = dict(_PARAM.findall(params))
        if "rel" in attrs:
            links[attrs["rel"]] = {"url": url, **attrs}
    return links


def next_page_url(value: str | None) -> str | None:
    """The next page's URL, only while Sentry says that page has results."""
    nxt = parse_link_header(value).get("next")
    if nxt and nxt.get("results") == "true" and nxt["url"]:
        return nxt["url"]
    return None
