"""What the Sentry emulator serves about cron monitors and alerts, in the shapes Sentry's serializers send:

- `GET /organizations/{org}/monitors/` (src/sentry/monitors/endpoints/organization_monitor_index.py, serializer
  src/sentry/monitors/serializers.py): monitors with `environments` as a list (per environment: `status` ok/error/
  active/disabled, `isMuted`, `lastCheckIn`, `nextCheckIn`, …), the monitor's own `status` active/disabled; offset
  paged; no `project`: the caller's teams' projects only;
- `GET /organizations/{org}/workflows/` ("Alerts") and `GET /organizations/{org}/detectors/` ("Monitors" in Sentry's
  new alerting: `type` error, metric_issue, uptime_domain_failure, monitor_check_in_failure), from
  src/sentry/workflow_engine/endpoints/: offset paged with `X-Hits`; a workflow fires for the detectors it connects;
- the deprecated endpoints older installs have only: `GET /projects/{org}/{project}/rules/` (issue alert rules,
  RuleSerializer: `owner` as "team:<id>", `projects` as slugs, `status` active/disabled, `lastTriggered` with
  `expand=lastTriggered`) and `GET /organizations/{org}/alert-rules/` (metric alert rules, AlertRuleSerializer:
  `status` 0 active; 404 without the `organizations:incidents` feature).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Item = dict[str, Any]
# Sentry's detector types and the alert type each stands for (Sentry's UI: issue, metric, uptime and cron alerts).
DETECTOR_TYPES = {"error": "issue", "issue_stream": "issue", "metric_issue": "metric",
                  "uptime_domain_failure": "uptime", "monitor_check_in_failure": "cron"}
# The `type:` aliases the detector search takes (organization_detector_index.py).
DETECTOR_ALIASES = {"metric": "metric_issue", "uptime": "uptime_domain_failure", "cron": "monitor_check_in_failure"}


_ORGANIZATION_PROJECT_ONLY = frozenset({"organization", "environments", "teams", "team", "platforms", "latestRelease",
                                        "latestDeploys", "hasUserReports", "stats", "options"})


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class AlertData:
    monitors: list[Item] = field(default_factory=list)
    detectors: list[Item] = field(default_factory=list)
    workflows: list[Item] = field(default_factory=list)
    # The same alerts as the deprecated endpoints serve them: issue alert rules per project slug, metric alert rules.
    project_rules: dict[str, list[Item]] = field(default_factory=dict)
    metric_rules: list[Item] = field(default_factory=list)


def _actor(owner: Item | None) -> Item | None:
    return None if owner is None else dict(owner)


def _monitor(index: int, project: Item, owner: Item | None, schedule: Any, envs: list[Item], now: datetime,
             disabled: bool = False) -> Item:
    slug = f"{project['slug']}-{'nightly-cleanup' if isinstance(schedule, str) else 'heartbeat'}"
    return {
        "id": f"6a1c0f2e-5b7d-4c1a-9e2f-{index:012d}", "slug": slug, "name": slug.replace("-", " ").title(),
        "status": "disabled" if disabled else "active", "isMuted": bool(envs) and all(e["isMuted"] for e in envs),
        "isUpserting": False, "type": "cron_job",
        "config": {"schedule_type": "crontab" if isinstance(schedule, str) else "interval", "schedule": schedule,
                   "checkin_margin": 5, "max_runtime": 30, "timezone": "Europe/Vienna" if index % 2 else "UTC",
                   "failure_issue_threshold": 1, "recovery_threshold": 1, "alert_rule_id": None},
        "dateCreated": _iso(now - timedelta(days=120 + index)),
        # ProjectSerializer's object: the organization project list's without its organization-level extras
        "project": {k: v for k, v in project.items() if k not in _ORGANIZATION_PROJECT_ONLY},
        "environments": envs, "owner": _actor(owner)}


def _environment(name: str, status: str, muted: bool, now: datetime, minutes_ago: int, every: int) -> Item:
    last = now - timedelta(minutes=minutes_ago)
    failing = status == "error"
    return {"name": name, "status": status, "isMuted": muted, "dateCreated": _iso(now - timedelta(days=100)),
            "lastCheckIn": _iso(last), "nextCheckIn": _iso(last + timedelta(minutes=every)),
            "nextCheckInLatest": _iso(last + timedelta(minutes=every + 5)),
            "activeIncident": {"startingTimestamp": _iso(last), "resolvingTimestamp": None, "brokenNotice": None}
            if failing else None}


def build_alerts(projects: list[Item], project_envs: dict[str, list[str]], teams: list[Item], members: list[Item],
                 now: datetime) -> AlertData:
    """Deterministic monitors and alerts: the first project's nightly job is fine, the second's heartbeat fails in
    production, the third's job is disabled; every project has Sentry's error detector, the first three an issue
    alert on it, the first a metric alert and the second an uptime alert; a cron alert watches the monitors."""
    data = AlertData()
    user = next(m for m in members if m.get("user"))
    user_actor = {"type": "user", "id": user["user"]["id"], "name": user["name"], "email": user["email"]}
    # a project's owning team: one it belongs to, else the first team (an owner need not be on the project)
    team_of = {p["id"]: next((t for t in teams if any(tp["id"] == p["id"] for tp in t["projects"])),
                             teams[0] if teams else None) for p in projects}

    def team_actor(project: Item) -> Item | None:
        team = team_of.get(project["id"])
        return None if team is None else {"type": "team", "id": team["id"], "name": team["slug"]}

    plans = [(0, "0 3 * * *", "ok", False), (1, [30, "minute"], "error", False), (2, "15 * * * *", "ok", True)]
    for index, schedule, status, disabled in plans:
        if index >= len(projects):
            break
        project = projects[index]
        envs = project_envs.get(project["slug"]) or ["production"]
        every = 30 if isinstance(schedule, list) else 1440 if index == 0 else 60
        watched = "production" if "production" in envs else envs[0]
        environments = [_environment(env, ("disabled" if disabled else status if env == watched else "ok"),
                                     disabled, now, 10 + 7 * k, every) for k, env in enumerate(envs)]
        owner = team_actor(project) if index != 1 else user_actor
        data.monitors.append(_monitor(index, project, owner, schedule, environments, now, disabled))

    detector_id = 9100
    for index, project in enumerate(projects):
        detector_id += 1
        data.detectors.append(_detector(str(detector_id), project, "error", "Error Monitor", None, now))
    extra = [(0, "metric_issue", "p95 latency above 800 ms", team_actor(projects[0])),
             *([(1, "uptime_domain_failure", f"Uptime: {projects[1]['slug']}.example.com", user_actor)]
               if len(projects) > 1 else [])]
    for index, kind, name, owner in extra:
        detector_id += 1
        data.detectors.append(_detector(str(detector_id), projects[index], kind, name, owner, now))
    for monitor in data.monitors:
        detector_id += 1
        project = next(p for p in projects if p["id"] == monitor["project"]["id"])
        data.detectors.append(_detector(str(detector_id), project, "monitor_check_in_failure", monitor["name"],
                                        monitor["owner"], now, enabled=monitor["status"] == "active"))

    workflow_id = 300
    by_project = {d["projectId"]: d for d in data.detectors if d["type"] == "error"}
    for index, project in enumerate(projects[:3]):
        workflow_id += 1
        envs = project_envs.get(project["slug"]) or []
        data.workflows.append(_workflow(
            str(workflow_id), f"Notify {project['slug']} on new issues", [by_project[project["id"]]],
            "production" if "production" in envs else None, now, triggered=index != 2))
    for kind, name in (("metric_issue", "High latency"), ("uptime_domain_failure", "Site down"),
                       ("monitor_check_in_failure", "Cron job failures")):
        connected = [d for d in data.detectors if d["type"] == kind]
        if connected:
            workflow_id += 1
            data.workflows.append(_workflow(str(workflow_id), name, connected, None, now, triggered=True))
    for workflow in data.workflows:
        for detector in data.detectors:
            if detector["id"] in workflow["detectorIds"]:
                detector["workflowIds"].append(workflow["id"])

    # The same alerts as the deprecated endpoints serve them (Sentry migrated rules into workflows one to one).
    slug_of = {p["id"]: p["slug"] for p in projects}
    rule_id = 40
    for workflow in data.workflows:
        detectors = [d for d in data.detectors if d["id"] in workflow["detectorIds"]]
        kinds = {d["type"] for d in detectors}
        if kinds <= {"error", "issue_stream"}:
            for detector in detectors:
                rule_id += 1
                owner = team_actor(next(p for p in projects if p["id"] == detector["projectId"]))
                data.project_rules.setdefault(slug_of[detector["projectId"]], []).append(
                    _issue_rule(str(rule_id), workflow, slug_of[detector["projectId"]], owner, now))
        elif kinds == {"metric_issue"}:
            for detector in detectors:
                rule_id += 1
                data.metric_rules.append(_metric_rule(str(rule_id), detector, slug_of[detector["projectId"]], now))
    return data


def _detector(detector_id: str, project: Item, kind: str, name: str, owner: Item | None, now: datetime,
              enabled: bool = True) -> Item:
    return {"id": detector_id, "projectId": project["id"], "name": name, "description": None, "type": kind,
            "workflowIds": [], "owner": _actor(owner), "createdBy": None,
            "dateCreated": _iso(now - timedelta(days=200)), "dateUpdated": _iso(now - timedelta(days=20)),
            "dataSources": None, "conditionGroup": None, "config": {}, "enabled": enabled, "alertRuleId": None,
            "ruleId": None, "latestGroup": None, "openIssues": 0}


def _workflow(workflow_id: str, name: str, detectors: list[Item], environment: str | None, now: datetime,
              triggered: bool) -> Item:
    return {"id": workflow_id, "name": name, "organizationId": "4504931759095808", "createdBy": None,
            "dateCreated": _iso(now - timedelta(days=180)), "dateUpdated": _iso(now - timedelta(days=12)),
            "triggers": {"id": f"1{workflow_id}", "organizationId": "4504931759095808", "logicType": "any-short",
                         "conditions": [{"id": f"2{workflow_id}", "type": "first_seen_event", "comparison": True,
                                         "conditionResult": True}], "actions": []},
            "actionFilters": [{"id": f"3{workflow_id}", "organizationId": "4504931759095808", "logicType": "all",
                               "conditions": [], "actions": [{
                                   "id": f"4{workflow_id}", "type": "email", "integrationId": None, "data": {},
                                   "config": {"targetType": "issue_owners", "targetDisplay": None,
                                              "targetIdentifier": None}, "status": "active"}]}],
            "environment": environment, "config": {"frequency": 30},
            "detectorIds": [d["id"] for d in detectors], "enabled": True,
            "lastTriggered": _iso(now - timedelta(hours=5)) if triggered else None, "owner": None}


def _issue_rule(rule_id: str, workflow: Item, slug: str, owner: Item | None, now: datetime) -> Item:
    return {"id": rule_id, "name": workflow["name"], "conditions": [{
                "id": "sentry.rules.conditions.first_seen_event.FirstSeenEventCondition",
                "name": "A new issue is created"}],
            "filters": [], "actions": [{"id": "sentry.mail.actions.NotifyEmailAction", "targetType": "IssueOwners",
                                        "fallthroughType": "ActiveMembers",
                                        "name": "Send a notification to IssueOwners"}],
            "actionMatch": "all", "filterMatch": "all", "frequency": 30, "dateCreated": workflow["dateCreated"],
            "owner": None if owner is None else f"{owner['type']}:{owner['id']}", "createdBy": None,
            "environment": workflow["environment"], "projects": [slug], "status": "active", "snooze": False,
            "lastTriggered": workflow["lastTriggered"]}


def _metric_rule(rule_id: str, detector: Item, slug: str, now: datetime) -> Item:
    owner = detector["owner"]
    return {"id": rule_id, "name": detector["name"], "organizationId": "4504931759095808", "status": 0,
            "queryType": 1, "dataset": "events_analytics_platform", "query": "", "aggregate": "p95(span.duration)",
            "thresholdType": 0, "resolveThreshold": None, "timeWindow": 60.0, "environment": "production",
            "resolution": 1.0, "thresholdPeriod": 1, "triggers": [{
                "id": f"5{rule_id}", "alertRuleId": rule_id, "label": "critical", "thresholdType": 0,
                "alertThreshold": 800, "resolveThreshold": None, "dateCreated": detector["dateCreated"],
                "actions": []}],
            "projects": [slug], "owner": None if owner is None else f"{owner['type']}:{owner['id']}",
            "originalAlertRuleId": None, "comparisonDelta": None, "dateModified": detector["dateUpdated"],
            "dateCreated": detector["dateCreated"], "createdBy": None, "description": "", "sensitivity": None,
            "seasonality": None, "detectionType": "static"}
