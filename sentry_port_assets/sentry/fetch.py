"""What each raw asset fetches, as plain async functions over a SentryClient (the assets and benchmarks share them).

Fan-out (team members, tag values per project or issue) runs all at once: the client's governor decides how
many requests really go out, per endpoint, within Sentry's limits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sentry_port_assets.sentry import alerts, project_health, releases
from sentry_port_assets.sentry.client import SentryClient, gather_limited
from sentry_port_assets.sentry.errors import SentryNotFoundError
from sentry_port_assets.sentry.selection import IssueFilter

Item = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass
class Vanished:
    """Things deleted in Sentry while the fetch ran (a 404 on an item just listed): left out, and counted."""

    items: list[str] = field(default_factory=list)
    # What the fetch says about how it read (which of Sentry's APIs answered), for the asset's log and metadata.
    notes: list[str] = field(default_factory=list)


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


async def fetch_issues(client: SentryClient, projects: Sequence[Item], filters: Sequence[IssueFilter],
                       fields: Sequence[str] | None = None) -> dict[str, list[Item]]:
    """`{filter key: [issue]}`; with `fields`, each issue holds only those (what the mapping reads)."""
    result: dict[str, list[Item]] = {}
    keep = tuple(fields) if fields is not None else None
    for issue_filter in filters:
        per_project = await gather_limited(
            client.list_issues(p, issue_filter.query, issue_filter.stats_period, keep=keep) for p in projects)
        result[issue_filter.key] = [issue for issues in per_project for issue in issues]
    return result


async def fetch_project_tags(client: SentryClient, projects: Sequence[Item],
                             keys: Sequence[str]) -> dict[str, list[Item]]:
    """`{key: [{**project, "__tags": value}]}`: one row per project per tag value, as Ocean builds them."""

    async def rows(project: Item, key: str) -> list[Item]:
        try:
            values = await client.list_project_tag_values(project["slug"], key)
        except SentryNotFoundError:  # Sentry's answer for a key the project has no value of
            return []
        return [{**project, "__tags": value} for value in values]

    result: dict[str, list[Item]] = {}
    for key in keys:
        per_project = await gather_limited(rows(p, key) for p in projects)
        result[key] = [row for chunk in per_project for row in chunk]
    return result


# An issue's tag values cover its events within the organization's retention (the tag store's query sets no start
# and Snuba clamps it to the retention: 90 days by default and on sentry.io), while an issue list covers its
# `statsPeriod`. Listing each environment over the longest window the list takes (MAX_STATS_PERIOD, 90 days;
# src/sentry/api/utils.py) finds every environment the tag values name, whatever the resource's own window.
ENVIRONMENT_WINDOW = "90d"
# Search keys about the issue itself rather than its events (Sentry's issue search: `is:`, `assigned:`, ...).
ISSUE_LEVEL_TERMS = ("is:", "assigned:", "assigned_or_suggested:", "bookmarks:")


def environment_query(query: str) -> str:
    """The search an issue list per environment runs for `query`: the same one when it holds only issue-level terms
    (status, assignment, bookmarks), which an environment filter does not change; else every issue (""), since an
    event-level term (`release:`, `browser:`, free text) combined with `environment=` matches only events seen in that
    environment, and an issue would then lose environments its tag values have. The caller keeps the issues of its
    own list either way."""
    return query if all(term.lstrip("!").startswith(ISSUE_LEVEL_TERMS) for term in query.split()) else ""


async def environments_by_list(client: SentryClient, issues: Sequence[Item],
                               issue_filter: IssueFilter) -> dict[str, list[Item]]:
    """`{issue id: [environment values]}` from one issue list per project and environment (`tagValues:
    by-environment`): Sentry lists an issue under an environment only if it was seen there, with the count and
    first/last seen of that environment, as its tag values say. Far fewer requests than one per issue; the
    environments are the same (see ENVIRONMENT_WINDOW), the counts and dates cover 90 days."""
    projects = {i["project"]["slug"]: i["project"] for i in issues}
    query = environment_query(issue_filter.query)

    async def environments(slug: str) -> list[Item]:
        try:
            return await client.list_project_tag_values(slug, "environment")
        except SentryNotFoundError:
            return []

    per_project = dict(zip(projects, await gather_limited(environments(slug) for slug in projects)))
    pairs = [(projects[slug], env) for slug, envs in per_project.items() for env in envs]
    listed = await gather_limited(
        client.list_issues(project, query, ENVIRONMENT_WINDOW, environment=env["value"],
                           keep=("id", "count", "firstSeen", "lastSeen"))
        for project, env in pairs)
    values: dict[str, list[Item]] = {}
    for (_, env), found in zip(pairs, listed):
        for issue in found:
            values.setdefault(issue["id"], []).append({
                "key": "environment", "name": env["name"], "value": env["value"], "count": int(issue["count"]),
                "firstSeen": issue["firstSeen"], "lastSeen": issue["lastSeen"]})
    return values


async def fetch_issue_tags(client: SentryClient, issues: Mapping[str, list[Item]],
                           tag_keys: Mapping[IssueFilter, Sequence[str]], vanished: Vanished,
                           environments_listed: frozenset[IssueFilter] = frozenset(),
                           reuse: Callable[[dict[tuple[str, str], Item]], Mapping[tuple[str, str], list[Item]]]
                           = lambda wanted: {},
                           ) -> dict[str, dict[str, list[Item]]]:
    """`{filter_key: {tag_key: [{**issue, "__tags": [values]}]}}`: one row per issue, each (issue, key) asked once
    (or, for the filters in `environments_listed`, the environment values from `environments_by_list`), except the
    pairs `reuse(wanted)` already has values for (`{(issue id, key): issue}` -> `{(issue id, key): values}`)."""
    listed = {f: await environments_by_list(client, issues.get(f.key, []), f) for f in environments_listed
              if "environment" in tag_keys.get(f, ())}
    wanted = {(issue["id"], key): issue
              for issue_filter, keys in tag_keys.items() for key in keys
              if not (key == "environment" and issue_filter in listed)
              for issue in issues.get(issue_filter.key, [])}

    async def values(issue_id: str, key: str) -> list[Item] | None:
        try:
            return await client.list_issue_tag_values(issue_id, key)
        except SentryNotFoundError:
            # Sentry answers 404 both for an issue without this tag key and for a deleted issue: ask which.
            if await client.issue_exists(issue_id):
                return []
            vanished.items.append(f"issue {issue_id}")
            return None
        finally:
            client.stats.done += 1

    fetched: dict[tuple[str, str], list[Item] | None] = dict(reuse(wanted))
    pairs = [pair for pair in wanted if pair not in fetched]
    client.stats.plan(len(pairs), "/organizations/{org}/issues/{issue}/tags/{key}/values/")
    fetched.update(zip(pairs, await gather_limited(values(i, k) for i, k in pairs)))
    result: dict[str, dict[str, list[Item]]] = {}
    for issue_filter, keys in tag_keys.items():
        per_key = result.setdefault(issue_filter.key, {})
        for key in keys:
            if key == "environment" and issue_filter in listed:
                values = listed[issue_filter]
                per_key[key] = [{**issue, "__tags": values.get(issue["id"], [])}
                                for issue in issues.get(issue_filter.key, [])]
                continue
            per_key[key] = [{**issue, "__tags": fetched[(issue["id"], key)]}
                            for issue in issues.get(issue_filter.key, [])
                            if fetched[(issue["id"], key)] is not None]
    return result


# -- the raw assets' entry points (kinds.py names them): read_<raw>(client, params, upstream, vanished) -> value;
# those kinds.py marks `keeps_state` take a fifth argument, the assets.fetch_state.FetchState they keep state in. -----

async def read_members(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished) -> Any:
    return await client.list_members()


async def read_teams(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished) -> Any:
    return await fetch_teams(client, params.get("include_members", False), vanished)


async def read_projects(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished) -> Any:
    return await client.list_projects()


async def read_project_tags(client: SentryClient, params: Mapping[str, Any], upstream: Any,
                            vanished: Vanished) -> Any:
    return await fetch_project_tags(client, upstream, params["keys"])


async def read_issues(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished) -> Any:
    return await fetch_issues(client, upstream, params["filters"], params.get("fields"))


async def read_releases(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished,
                        state: Any) -> Any:
    """`{filter key: [release]}`, newest first, incrementally (sentry/releases.py); `upstream`: the projects,
    whose `latestDeploys` reveal redeployed old releases; `state`: an assets.fetch_state.FetchState."""
    kept_before = state.usable if isinstance(state.usable, dict) else {}
    latest = releases.latest_deploy_times(upstream or [])
    result: dict[str, list[Item]] = {}
    kept: dict[str, list[Item]] = {}
    notes: list[str] = []
    for release_filter in params["filters"]:
        health = release_filter in params["health"]
        key = release_filter.key + (" health" if health else "")
        got = await releases.read_releases(client, release_filter, health, kept_before.get(key), latest,
                                           vanished.items)
        result[release_filter.key] = kept[key] = got.releases
        if got.stopped_early:
            notes.append(f"{release_filter.key}: {got.pages} page(s) read, then {got.kept} kept releases reused "
                         f"({got.refreshed} redeployed re-read, {got.archived} archived, {got.gone} gone, "
                         f"{got.past_window} past the window, {got.health_refreshed} adopted with fresh health)")
        else:
            notes.append(f"{release_filter.key}: all {len(got.releases)} read ({got.pages} page(s))")
    # Like Ocean's `__` fields: what the mapping needs that the item lacks (the release page's address).
    org_url = next((((p.get("organization") or {}).get("links") or {}).get("organizationUrl") for p in upstream or []
                    if ((p.get("organization") or {}).get("links") or {}).get("organizationUrl")), None)
    for listed in result.values():
        for release in listed:
            release["__organizationUrl"] = org_url
    state.kept = kept
    state.summary = ("full read: " + state.why if state.full else "incremental") + "; " + "; ".join(notes)
    return result


async def read_deploys(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished,
                       state: Any) -> Any:
    """`{filter key: [deploy]}` for the releases of each filter in `upstream` (the releases' value): read only for
    releases whose deploy count or last deploy moved since the last resync (`state`)."""
    before = state.usable if isinstance(state.usable, dict) else {}
    wanted = {r["version"]: r for f in params["filters"] for r in (upstream or {}).get(f.key, [])}
    rows: dict[str, list[Item] | None] = {}
    for version, release in wanted.items():
        entry = before.get(version)
        if (isinstance(entry, list) and len(entry) == 2 and entry[0] == releases.deploy_signature(release)
                and isinstance(entry[1], list) and all(isinstance(d, dict) for d in entry[1])):
            rows[version] = entry[1]
    reused = len(rows)
    unaddressable: list[str] = []
    todo = [v for v in wanted if v not in rows]
    client.stats.plan(sum(1 for v in todo if wanted[v].get("deployCount")),
                      "/organizations/{org}/releases/{version}/deploys/")

    async def one(version: str) -> list[Item] | None:
        try:
            return await releases.read_deploys(client, wanted[version], vanished.items, unaddressable)
        finally:
            client.stats.done += 1

    rows.update(zip(todo, await gather_limited(one(v) for v in todo)))
    if unaddressable:
        log.warning("%d releases have a version with '/', which Sentry's per-release endpoints cannot address "
                    "(Sentry has refused such versions since it validates them): their deploys are left out: %s",
                    len(unaddressable), ", ".join(unaddressable[:5]))
    state.kept = {v: [releases.deploy_signature(wanted[v]), r] for v, r in rows.items() if r is not None}
    without = sum(1 for v in todo if not wanted[v].get("deployCount"))
    state.summary = ((f"full read: {state.why}; " if state.full else "") +
                     f"{reused} releases' deploys reused, {len(todo) - without} read, {without} without deploys"
                     + (f", {len(unaddressable)} not addressable" if unaddressable else ""))
    return {f.key: [row for r in (upstream or {}).get(f.key, []) for row in rows.get(r["version"]) or []]
            for f in params["filters"]}


async def read_project_details(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished,
                               state: Any) -> Any:
    """The projects (`upstream`) with `__stats`, `__sessions`, `__ownership` and `__repositories`
    (sentry/project_health.py); ownership rules and code mappings are kept in `state` between resyncs."""
    projects, kept, summary = await project_health.read(client, upstream or [], state.usable, vanished.items)
    state.kept = kept
    state.summary = (f"full read: {state.why}; " if state.full else "") + summary
    return projects


async def read_monitors(client: SentryClient, params: Mapping[str, Any], upstream: Any, vanished: Vanished) -> Any:
    return alerts.with_health(await client.list_monitors())


async def read_alert_rules(client: SentryClient, params: Mapping[str, Any], upstream: Any,
                           vanished: Vanished) -> Any:
    return await alerts.read_alert_rules(client, upstream or [], vanished.items, vanished.notes)
