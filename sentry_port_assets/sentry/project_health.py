"""A project's health, owners and repositories, added to its item for the mapping (`sentry/project_details`):

- `__stats`: `errors24h`, `errors7d` (accepted error events) and `dropped24h` (rate limited and filtered), from two
  `stats_v2` requests for the whole organization;
- `__sessions`: `crashFreeSessions24h`, `crashFreeUsers24h` in percent (null without session data), from one
  `sessions` request;
- `__ownership`: the ownership rules parsed (`teams` and `users` they name, `rules`, `raw`), one request per project;
- `__repositories`: the repositories its code mappings name (`name`, `provider`, `url`, `defaultBranch`,
  `stackRoot`, `sourceRoot`), from the organization's code mappings and repositories;
- `__monitors`: its cron monitors (`id`, `slug`, `name`, `health`: see sentry/alerts.py), from the organization's
  monitor list (a request per 100 monitors).

Stats, sessions and monitors move all the time and cost a few requests: read every resync. Ownership rules and code
mappings change rarely and cost a request per project: kept between resyncs and read again only for a project that
is new or whose slug or creation date moved (another project under an old id), the code mappings whenever the
project list changed, and everything at the full read (every SENTRY_PORT_FULL_REFRESH_HOURS): a rule edited on an
unchanged project reaches Port then. Sentry exposes no change date to read them by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from sentry_port_assets.sentry.alerts import monitors_by_project
from sentry_port_assets.sentry.client import SentryClient, gather_limited
from sentry_port_assets.sentry.errors import SentryNotFoundError

Item = dict[str, Any]


def _percent(rate: Any) -> float | None:
    return round(rate * 100, 3) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else None


def stats_of(last_day: Mapping[str, int], last_week: Mapping[str, int]) -> Item:
    return {"errors24h": last_day.get("accepted", 0), "errors7d": last_week.get("accepted", 0),
            "dropped24h": last_day.get("rate_limited", 0) + last_day.get("filtered", 0)}


def ownership_of(ownership: Mapping[str, Any] | None) -> Item:
    """The teams and users the rules name (in rule order, once each), the rules and the raw text."""
    rules = list(((ownership or {}).get("schema") or {}).get("rules") or [])
    teams: list[str] = []
    users: list[str] = []
    for rule in rules:
        for owner in rule.get("owners") or []:
            into = teams if owner.get("type") == "team" else users
            name = str(owner.get("name") or "").lstrip("#")
            if name and name not in into:
                into.append(name)
    return {"teams": teams, "users": users, "rules": rules, "raw": (ownership or {}).get("raw")}


def repositories_of(project_id: str, mappings: Sequence[Item], repos: Mapping[str, Item]) -> list[Item]:
    out = []
    for mapping in mappings:
        if str(mapping.get("projectId")) != project_id:
            continue
        repo = repos.get(str(mapping.get("repoId"))) or {}
        provider = mapping.get("provider") or repo.get("provider") or {}
        out.append({"name": mapping.get("repoName") or repo.get("name"), "provider": provider.get("key") or
                    provider.get("name"), "url": repo.get("url"), "defaultBranch": mapping.get("defaultBranch"),
                    "stackRoot": mapping.get("stackRoot"), "sourceRoot": mapping.get("sourceRoot")})
    return out


def _identity(project: Mapping[str, Any]) -> list[Any]:
    return [project.get("slug"), project.get("dateCreated")]


async def read(client: SentryClient, projects: Sequence[Item], kept: Any, vanished: list[str]) -> tuple[list[Item],
                                                                                                   Item, str]:
    """The projects with their enrichments, what to keep for the next resync, and what was reused (in words)."""
    kept = kept if isinstance(kept, dict) else {}
    day, week, rates, monitors = await asyncio.gather(
        client.outcome_totals("24h"), client.outcome_totals("7d"), client.crash_free_rates("24h"),
        client.list_monitors())
    monitored = monitors_by_project(monitors)
    owned: dict[str, Any] = kept.get("ownership") if isinstance(kept.get("ownership"), dict) else {}
    identities = {str(p["id"]): _identity(p) for p in projects}
    reuse = {pid for pid, identity in identities.items()
             if isinstance(owned.get(pid), list) and len(owned[pid]) == 2 and owned[pid][0] == identity
             and isinstance(owned[pid][1], dict)}
    todo = [p for p in projects if str(p["id"]) not in reuse]

    async def ownership(project: Item) -> Item | None:
        try:
            return ownership_of(await client.get_ownership(project["slug"]))
        except SentryNotFoundError:  # deleted since the project list
            vanished.append(f"project {project['slug']}")
            return None

    read_now = dict(zip((str(p["id"]) for p in todo), await gather_limited(ownership(p) for p in todo)))
    ownerships = {pid: owned[pid][1] for pid in reuse} | read_now
    code = kept.get("code_mappings")
    if isinstance(code, dict) and code.get("projects") == identities and isinstance(code.get("by_project"), dict):
        by_project = code["by_project"]
        code_note = "code mappings reused"
    else:
        mappings, repos = await asyncio.gather(client.list_code_mappings(), client.list_repos())
        by_repo = {str(r.get("id")): r for r in repos}
        by_project = {pid: repositories_of(pid, mappings, by_repo) for pid in identities}
        code_note = "code mappings read"
    out = []
    for project in projects:
        pid = str(project["id"])
        rate = rates.get(pid) or {}
        out.append({**project, "__stats": stats_of(day.get(pid, {}), week.get(pid, {})),
                    "__sessions": {"crashFreeSessions24h": _percent(rate.get("session")),
                                   "crashFreeUsers24h": _percent(rate.get("user"))},
                    "__ownership": ownerships.get(pid), "__repositories": by_project.get(pid, []),
                    "__monitors": monitored.get(pid, [])})
    keep = {"ownership": {pid: [identities[pid], value] for pid, value in ownerships.items() if value is not None},
            "code_mappings": {"projects": identities, "by_project": by_project}}
    summary = f"ownership: {len(reuse)} reused, {len(todo)} read; {code_note}"
    return out, keep, summary
