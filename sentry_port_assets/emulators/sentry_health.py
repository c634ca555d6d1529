"""What the Sentry emulator serves about a project's health and ownership, as Sentry's endpoints answer:

- `GET /organizations/{org}/stats_v2/` (src/sentry/api/endpoints/organization_stats_v2.py): outcome totals
  (`sum(quantity)`) grouped by project and outcome; grouped by project it covers `get_projects` (no `project`
  parameter: the caller's teams' projects; `-1`: every accessible one; none: 400 "No projects available") and
  returns totals without series; `enforce_rate_limit` with 20 a second per caller;
- `GET /organizations/{org}/sessions/` (src/sentry/api/endpoints/organization_sessions.py): crash-free rates as
  fractions per project, only for projects with session data in the window;
- `GET /projects/{org}/{project}/ownership/` (src/sentry/issues/endpoints/project_ownership.py): the ownership
  rules, or an empty unsaved one (`raw: null`) for a project without rules;
- `GET /organizations/{org}/repos/` and `GET /organizations/{org}/code-mappings/` (src/sentry/integrations/api/
  endpoints/): repositories and the code mappings that tie them to projects, cursor paged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Item = dict[str, Any]
OUTCOMES = ("accepted", "filtered", "rate_limited", "invalid", "abuse", "client_discard", "cardinality_limited")
DAYS = 30


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class HealthData:
    # project id -> outcome -> error events per day, the last DAYS days, the newest last
    outcomes: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # project id -> (crash-free sessions, crash-free users) over the last 24 hours, fractions
    sessions: dict[str, tuple[float, float]] = field(default_factory=dict)
    ownership: dict[str, Item] = field(default_factory=dict)  # project slug -> ProjectOwnership
    repos: list[Item] = field(default_factory=list)
    code_mappings: list[Item] = field(default_factory=list)

    def outcome_totals(self, project_ids: set[str], days: int) -> list[Item]:
        """stats_v2's groups for `groupBy=project&groupBy=outcome`: one per project and outcome with events."""
        groups = []
        for pid in sorted(project_ids):
            for outcome, daily in (self.outcomes.get(pid) or {}).items():
                total = sum(daily[-days:])
                if total:
                    groups.append({"by": {"project": int(pid), "outcome": outcome},
                                   "totals": {"sum(quantity)": total}})
        return groups


def ownership_of(teams: list[Item], members: list[Item], project: Item, index: int, now: datetime) -> Item:
    """ProjectOwnershipSerializer's object; the first project has rules naming a team and a user, the others
    none (Sentry's unsaved default: no raw, no schema, no dates)."""
    if index % 2:
        return {"raw": None, "fallthrough": True, "dateCreated": None, "lastUpdated": None, "isActive": True,
                "autoAssignment": "Auto Assign to Issue Owner", "codeownersAutoSync": True, "schema": None}
    team = teams[(index // 2) % len(teams)]
    user = next(m for m in members if m.get("user"))
    raw = f"path:src/* #{team['slug']}\nurl:*/checkout/* {user['email']}"
    rules = [{"matcher": {"type": "path", "pattern": "src/*"},
              "owners": [{"type": "team", "id": team["id"], "name": team["slug"]}]},
             {"matcher": {"type": "url", "pattern": "*/checkout/*"},
              "owners": [{"type": "user", "id": user["user"]["id"], "name": user["email"]}]}]
    return {"raw": raw, "fallthrough": True, "dateCreated": _iso(now - timedelta(days=90)),
            "lastUpdated": _iso(now - timedelta(days=9)), "isActive": True,
            "autoAssignment": "Auto Assign to Issue Owner", "codeownersAutoSync": True,
            "schema": {"$version": 1, "rules": rules}}


def build_health(slug: str, projects: list[Item], teams: list[Item], members: list[Item], now: datetime) -> HealthData:
    """Deterministic health for a generated organization: error volume (with some dropped) for every project, the
    last project quiet; session data for the first two (one below 99.5% crash-free); ownership rules on every
    other project; a GitHub repository and code mapping for all but the last project."""
    data = HealthData()
    for index, project in enumerate(projects):
        pid = project["id"]
        quiet = index == len(projects) - 1 and len(projects) > 2
        base = 0 if quiet else 40 + 37 * index
        data.outcomes[pid] = {
            "accepted": [0 if quiet else base + (day * 13 + index * 7) % 50 for day in range(DAYS)],
            "filtered": [0 if quiet else (day + index) % 6 for day in range(DAYS)],
            "rate_limited": [0 if quiet or index != 1 else 15 + day % 4 for day in range(DAYS)],
        }
        if index < 2:
            data.sessions[pid] = (0.9991, 0.9996) if index == 0 else (0.9921, 0.9954)
        data.ownership[project["slug"]] = ownership_of(teams, members, project, index, now)
        if quiet:
            continue
        repo = {"id": str(5000 + index), "name": f"{slug}/{project['slug']}",
                "url": f"https://github.com/{slug}/{project['slug']}", "provider": {"id": "integrations:github",
                                                                                   "name": "GitHub"},
                "status": "active", "dateCreated": _iso(now - timedelta(days=400 - index)), "integrationId": "77",
                "externalSlug": f"{slug}/{project['slug']}", "externalId": str(900000 + index)}
        data.repos.append(repo)
        data.code_mappings.append({
            "id": str(7000 + index), "projectId": pid, "projectSlug": project["slug"], "repoId": repo["id"],
            "repoName": repo["name"], "integrationId": "77", "provider": {"key": "github", "slug": "github",
                                                                         "name": "GitHub"},
            "stackRoot": "", "sourceRoot": "src/", "defaultBranch": "main", "automaticallyGenerated": False})
    return data


def days_in(period: str | None) -> int | None:
    """Whole days a `statsPeriod` covers (`24h` is 1, `7d` 7, `90m` 1); None when it does not parse."""
    units = {"m": 1 / 1440, "h": 1 / 24, "d": 1, "w": 7}
    text = (period or "").strip()
    if not text or text[-1] not in units or not text[:-1].isdigit():
        return None
    return max(1, min(DAYS, math.ceil(int(text[:-1]) * units[text[-1]])))
