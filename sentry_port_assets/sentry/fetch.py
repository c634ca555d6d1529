"""What each raw asset fetches, as plain async functions over a SentryClient (the assets and benchmarks share them).

Fan-out (team members, tag values per project or issue) runs all at once: the client's governor decides how
many requests really go out, per endpoint, within Sentry's limits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sentry_port_assets.sentry.client import SentryClient, gather_limited
from sentry_port_assets.sentry.errors import SentryNotFoundError
from sentry_port_assets.sentry.selection import IssueFilter

Item = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass
class Vanished:
    """Things deleted in Sentry while the fetch ran (a 404 on an item just listed): left out, and counted."""

    items: list[str] = field(default_factory=list)


async def fetch_teams(client: SentryClient, include_members: bool, vanished: Vanished) -> list[Item]:
    teams = await client.list_teams()
    if not include_members:
        return teams

    async def members_of(team: Item) -> Item | None:
        try:
            return {**team, "__members": await client.list_team_members(team["slug"])}
        except SentryNotFoundError:
            vanished.items.append(f"team {team['slug']}")
            return None

    enriched = await gather_limited(members_of(t) for t in teams)
    return [t for t in enriched if t is not None]


async def fetch_issues(client: SentryClient, projects: Sequence[Item],
                       filters: Sequence[IssueFilter]) -> dict[str, list[Item]]:
    result: dict[str, list[Item]] = {}
    for issue_filter in filters:
        per_project = await gather_limited(
            client.list_issues(p, issue_filter.query, issue_filter.stats_period) for p in projects)
        result[issue_filter.key] = [issue for issues in per_project for issue in issues]
    return result


async def fetch_project_tags(client: SentryClient, projects: Sequence[Item], keys: Sequence[str],
                             vanished: Vanished) -> dict[str, list[Item]]:
    """`{key: [{**project, "__tags": value}]}`: one row per project per tag value, as Ocean builds them."""

    async def rows(project: Item, key: str) -> list[Item]:
        try:
            values = await client.list_project_tag_values(project["slug"], key)
        except SentryNotFoundError:
            vanished.items.append(f"project {project['slug']}")
            return []
        return [{**project, "__tags": value} for value in values]

    result: dict[str, list[Item]] = {}
    for key in keys:
        per_project = await gather_limited(rows(p, key) for p in projects)
        result[key] = [row for chunk in per_project for row in chunk]
    return result


async def fetch_issue_tags(client: SentryClient, issues: Mapping[str, list[Item]],
                           tag_keys: Mapping[IssueFilter, Sequence[str]],
                           vanished: Vanished) -> dict[str, dict[str, list[Item]]]:
    """`{filter_key: {tag_key: [{**issue, "__tags": [values]}]}}`: one row per issue, each (issue, key) asked once."""
    wanted = {(issue["id"], key): issue
              for issue_filter, keys in tag_keys.items() for key in keys
              for issue in issues.get(issue_filter.key, [])}

    async def values(issue_id: str, key: str) -> list[Item] | None:
        try:
            return await client.list_issue_tag_values(issue_id, key)
        except SentryNotFoundError:
            vanished.items.append(f"issue {issue_id}")
            return None

    pairs = list(wanted)
    fetched = dict(zip(pairs, await gather_limited(values(i, k) for i, k in pairs)))
    result: dict[str, dict[str, list[Item]]] = {}
    for issue_filter, keys in tag_keys.items():
        per_key = result.setdefault(issue_filter.key, {})
        for key in keys:
            per_key[key] = [{**issue, "__tags": fetched[(issue["id"], key)]}
                            for issue in issues.get(issue_filter.key, [])
                            if fetched[(issue["id"], key)] is not None]
    return result
