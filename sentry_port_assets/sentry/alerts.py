"""Cron monitors and alert rules as the mapping reads them (raw assets `sentry/monitors`, `sentry/alert_rules`).

Monitors come as Sentry lists them, plus `__health`: one word for the monitor over its environments (`disabled`,
`error` when an unmuted environment fails, `ok` when every unmuted one is ok, else `pending`: no check-in yet, or
every environment muted).

Alert rules come from Sentry's current alerting API when the installation has it: `/workflows/` (Sentry's "Alerts")
and the `/detectors/` they connect (what an alert fires on: errors, a metric, an uptime check or a cron monitor);
where it answers 404 (installations from before it), from the deprecated `/projects/{org}/{project}/rules/` (issue
alerts) and `/organizations/{org}/alert-rules/` (metric alerts; a 404 there means the organization lacks
`organizations:incidents`, so it has none). Either way each item keeps Sentry's fields and gains what the mapping
needs in one shape: `__id` (`<type>-<id>`), `__type` (issue, metric, uptime or cron), `__enabled`, `__projects`
(slugs), `__owner` (`{type, id, name}`: a team's slug or a user's email) and `__source` (the endpoint read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from sentry_port_assets.sentry.client import SentryClient, gather_limited
from sentry_port_assets.sentry.errors import SentryNotFoundError

Item = dict[str, Any]
# Sentry's detector types and the alert type each stands for; a workflow's type is that of the first of its detectors
# in this order (a workflow connected to none is an issue alert: Sentry's UI makes issue alerts that way).
CATEGORIES = {"error": "issue", "issue_stream": "issue", "metric_issue": "metric", "uptime_domain_failure": "uptime",
              "monitor_check_in_failure": "cron"}
ORDER = ("issue", "metric", "uptime", "cron")
WORKFLOWS = "/organizations/{org}/workflows/ and /detectors/"
DEPRECATED = "/projects/{org}/{project}/rules/ and /organizations/{org}/alert-rules/ (deprecated)"


def monitor_health(monitor: Mapping[str, Any]) -> str:
    if monitor.get("status") == "disabled":
        return "disabled"
    watched = [e for e in monitor.get("environments") or [] if not e.get("isMuted")]
    if any(e.get("status") == "error" for e in watched):
        return "error"
    if watched and all(e.get("status") == "ok" for e in watched):
        return "ok"
    return "pending"


def with_health(monitors: Sequence[Item]) -> list[Item]:
    return [{**m, "__health": monitor_health(m)} for m in monitors]


def monitors_by_project(monitors: Sequence[Item]) -> dict[str, list[Item]]:
    """{project id: [{id, slug, name, health}]}: what a project's `__monitors` holds."""
    out: dict[str, list[Item]] = {}
    for m in monitors:
        out.setdefault(str((m.get("project") or {}).get("id")), []).append(
            {"id": m.get("id"), "slug": m.get("slug"), "name": m.get("name"), "health": monitor_health(m)})
    return out


def _actor(actor: Any, teams: Mapping[str, str]) -> Item | None:
    """`{type, id, name}` from Sentry's actor object or its `"team:<id>"` / `"user:<id>"` string."""
    if isinstance(actor, Mapping):
        kind = actor.get("type")
        name = actor.get("email") if kind == "user" and actor.get("email") else actor.get("name")
        return {"type": kind, "id": str(actor.get("id")), "name": name}
    if isinstance(actor, str) and ":" in actor:
        kind, _, ident = actor.partition(":")
        return {"type": kind, "id": ident, "name": teams.get(ident) if kind == "team" else None}
    return None


def _team_slugs(projects: Sequence[Item]) -> dict[str, str]:
    return {str(t.get("id")): t.get("slug") for p in projects for t in p.get("teams") or [] if t.get("slug")}


def from_workflows(workflows: Sequence[Item], detectors: Sequence[Item], projects: Sequence[Item]) -> list[Item]:
    slugs = {str(p.get("id")): p.get("slug") for p in projects}
    teams = _team_slugs(projects)
    by_id = {str(d.get("id")): d for d in detectors}
    out = []
    for workflow in workflows:
        connected = [by_id[i] for i in map(str, workflow.get("detectorIds") or []) if i in by_id]
        kinds = {CATEGORIES.get(str(d.get("type")), "issue") for d in connected}
        kind = next((k for k in ORDER if k in kinds), "issue")
        projects_of = list(dict.fromkeys(slugs[str(d.get("projectId"))] for d in connected
                                         if str(d.get("projectId")) in slugs))
        owner = _actor(workflow.get("owner"), teams) or next(
            (_actor(d.get("owner"), teams) for d in connected if d.get("owner")), None)
        out.append({**workflow, "__id": f"{kind}-{workflow.get('id')}", "__type": kind,
                    "__enabled": bool(workflow.get("enabled")), "__projects": projects_of, "__owner": owner,
                    "__source": "workflows"})
    return out


def from_rules(issue_rules: Sequence[Item], metric_rules: Sequence[Item], projects: Sequence[Item]) -> list[Item]:
    teams = _team_slugs(projects)
    out = []
    for rule in issue_rules:
        out.append({**rule, "__id": f"issue-{rule.get('id')}", "__type": "issue",
                    "__enabled": rule.get("status", "active") == "active", "__projects": list(rule.get("projects") or []),
                    "__owner": _actor(rule.get("owner"), teams), "__source": "rules"})
    for rule in metric_rules:
        # AlertRuleStatus: 0 is PENDING, Sentry's "active"; snoozed and disabled ones have other values
        out.append({**rule, "__id": f"metric-{rule.get('id')}", "__type": "metric",
                    "__enabled": rule.get("status") == 0, "__projects": list(rule.get("projects") or []),
                    "__owner": _actor(rule.get("owner"), teams), "lastTriggered": rule.get("lastTriggered"),
                    "__source": "alert-rules"})
    return out


async def read_alert_rules(client: SentryClient, projects: Sequence[Item], vanished: list[str],
                           notes: list[str]) -> list[Item]:
    try:
        workflows, detectors = await asyncio.gather(client.list_workflows(), client.list_detectors())
    except SentryNotFoundError:
        pass
    else:
        notes.append(f"read from {WORKFLOWS}")
        return from_workflows(workflows, detectors, projects)

    async def rules(project: Item) -> list[Item]:
        try:
            return await client.list_project_rules(project["slug"])
        except SentryNotFoundError:  # deleted since the project list
            vanished.append(f"project {project['slug']}")
            return []

    issue_rules = [rule for chunk in await gather_limited(rules(p) for p in projects) for rule in chunk]
    try:
        metric_rules = await client.list_metric_alert_rules()
        metric_note = "metric alerts read"
    except SentryNotFoundError:
        metric_rules = []
        metric_note = "no metric alerts: /alert-rules/ answered 404 (the organization lacks organizations:incidents)"
    notes.append(f"Sentry has no /workflows/ here (404): read from {DEPRECATED}; {metric_note}")
    return from_rules(issue_rules, metric_rules, projects)
