"""Datasets for the Sentry API emulator: the bundled demo organization and synthetic orgs for benchmarks.

Both grow from the seed's sample payloads (`sentry/seed_samples.json`), so every item has the real shape, and
both include what real organizations have: a pending invite (`user: null`), team-assigned issues (no email),
issues of every status, a project with no environment, a tag with more than 100 values, and a project of
another organization in `/projects/`.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from sentry_port_assets.emulators.sentry_alerts import AlertData, build_alerts
from sentry_port_assets.emulators.sentry_health import HealthData, build_health
from sentry_port_assets.emulators.sentry_releases import ReleaseStore, build_releases

Item = dict[str, Any]

SEED_FILE = Path(__file__).resolve().parent.parent / "sentry" / "seed_samples.json"
DEMO_ORGANIZATION = "test-org"
ENVIRONMENTS = ("production", "staging", "development")
STATUSES = ("unresolved", "unresolved", "unresolved", "resolved", "resolved", "ignored")
PLATFORMS = ("python-fastapi", "node", "node-fastify", "go", "javascript-react", "java-spring-boot")
MANY_VALUES_TAG = "release"
# A release version that only survives a request URL-quoted ("+" and "@"), the demo first project's newest release.
QUOTED_VERSION = "my-app@1.0.0+build.5"


@dataclass
class SentryDataset:
    organization: Item
    members: list[Item]
    teams: list[Item]
    team_members: dict[str, list[Item]]
    projects: list[Item]  # every project the token's user could see, with `status` and `organization` as
    #                      `/projects/` shows them: other organizations' included
    issues: list[Item]
    project_tag_values: dict[tuple[str, str], list[Item]] = field(default_factory=dict)  # (project slug, key)
    issue_tag_values: dict[tuple[str, str], list[Item]] = field(default_factory=dict)  # (issue id, key)
    # An issue's comments as `GET /organizations/{org}/issues/{issue}/comments/` lists them (Activity of type note)
    issue_comments: dict[str, list[Item]] = field(default_factory=dict)
    # The email of the user the token belongs to: `/projects/` lists only the projects of that user's teams.
    token_user: str | None = None
    # Releases and their deploys (emulators/sentry_releases.py)
    releases: ReleaseStore = field(default_factory=ReleaseStore)
    # Error volume, crash-free rates, ownership rules, repositories and code mappings (emulators/sentry_health.py)
    health: HealthData = field(default_factory=HealthData)
    # Cron monitors, alerts (workflows and detectors) and the deprecated alert rules (emulators/sentry_alerts.py)
    alerts: AlertData = field(default_factory=AlertData)

    @property
    def slug(self) -> str:
        return self.organization["slug"]

    def org_projects(self) -> list[Item]:
        return [p for p in self.projects if p["organization"]["slug"] == self.slug]

    def token_teams(self) -> set[str]:
        """The slugs of the teams whose rosters hold the token's user."""
        return {slug for slug, roster in self.team_members.items()
                if any((m.get("user") or {}).get("email") == self.token_user for m in roster)}

    def token_role(self) -> str | None:
        """The token user's organization role (`orgRole`), None when they are not a member."""
        member = next((m for m in self.members if m.get("email") == self.token_user and m.get("user")), None)
        return None if member is None else member.get("orgRole") or member.get("role")

    def user_projects(self, teams: set[str] | None = None) -> list[Item]:
        """`GET /projects/`: only the projects of teams the token's user is a member of (in every organization);
        `teams`: those teams instead of the rosters'."""
        teams = self.token_teams() if teams is None else teams
        mine = {p["slug"] for t in self.teams if t["slug"] in teams for p in t["projects"]}
        return [p for p in self.projects if p["organization"]["slug"] != self.slug or p["slug"] in mine]

    def organization_projects(self) -> list[Item]:
        """`GET /organizations/{org}/projects/`: every active project of the organization, whoever asks; its items
        carry neither `status` nor `organization`, and do carry the latest deploy per environment and the latest
        release (ProjectSummarySerializer)."""
        return [{**{k: v for k, v in p.items() if k not in ("status", "organization")},
                 "latestDeploys": self.releases.latest_deploys(p["id"]),
                 "latestRelease": self.releases.latest_release(p["id"])}
                for p in self.org_projects() if p.get("status", "active") == "active"]

    def environments(self) -> set[str]:
        """The organization's environments: every environment a project has seen."""
        return {v["value"] for (_, key), values in self.project_tag_values.items() if key == "environment"
                for v in values}

    def record_event(self, issue_id: str, when: datetime | None = None) -> None:
        """An event arrives for the issue: its count grows and its last seen moves to `when` (default now), which
        moves it to the top of Sentry's default (last seen) order."""
        issue = next(i for i in self.issues if i["id"] == issue_id)
        issue["lastSeen"] = _iso(when or datetime.now(timezone.utc))
        issue["count"] = str(int(issue.get("count") or 0) + 1)

    def issue(self, issue_id: str) -> Item | None:
        """The issue with this id (an index rebuilt when the list changes: requests for 20,000 issues must not each
        scan them all, or the emulator, not the client, sets the pace)."""
        key = (id(self.issues), len(self.issues))
        index = self.__dict__.get("_issue_index")
        if index is None or index[0] != key:
            index = (key, {i["id"]: i for i in self.issues})
            self.__dict__["_issue_index"] = index
        found = index[1].get(issue_id)
        return found if found is not None and found["id"] == issue_id else None

    def remove_issue(self, issue_id: str) -> None:
        self.issues = [i for i in self.issues if i["id"] != issue_id]
        for key in [k for k in self.issue_tag_values if k[0] == issue_id]:
            del self.issue_tag_values[key]
        self.issue_comments.pop(issue_id, None)

    def add_comment(self, issue_id: str, text: str, comment_id: str | None = None) -> Item:
        """A comment on the issue, as Sentry's notes endpoint shows it (its `id` is the webhook's `comment_id`)."""
        notes = self.issue_comments.setdefault(issue_id, [])
        author = (self.members[0].get("user") if self.members else None)
        note = {"id": comment_id or str(9_000_000 + sum(len(v) for v in self.issue_comments.values())),
                "user": author, "type": "note", "data": {"text": text},
                "dateCreated": _iso(datetime.now(timezone.utc))}
        notes.append(note)
        return note

    def edit_comment(self, issue_id: str, comment_id: str, text: str) -> None:
        next(n for n in self.issue_comments[issue_id] if n["id"] == comment_id)["data"]["text"] = text

    def delete_comment(self, issue_id: str, comment_id: str) -> None:
        self.issue_comments[issue_id] = [n for n in self.issue_comments.get(issue_id, []) if n["id"] != comment_id]


@lru_cache(maxsize=1)
def _seed() -> dict[str, Item]:
    return json.loads(SEED_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _process_now() -> datetime:
    """The current hour, read once per process: datasets built apart in one process (two emulators) are equal."""
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tag_value(key: str, value: str, count: int, first: datetime, last: datetime) -> Item:
    return {"key": key, "name": value, "value": value, "count": count, "firstSeen": _iso(first), "lastSeen": _iso(last)}


def build_org(
    slug: str = DEMO_ORGANIZATION,
    *,
    teams: int = 3,
    members: int = 10,
    projects: int = 5,
    issues: int = 50,
    environments: tuple[str, ...] = ENVIRONMENTS,
    many_values: int = 150,
    seed: int = 7,
    now: datetime | None = None,
    releases_per_project: int = 6,
) -> SentryDataset:
    """A deterministic organization; the first user, team, project and issue are the seed's samples.

    Issues are seen, and releases made and deployed, within the 60 days before `now` (default: this process's current
    hour), so Sentry's default 90-day windows list them all, as they list a living organization's; everything else
    has fixed dates."""
    rnd = random.Random(seed)
    samples = _seed()
    base = datetime(2024, 3, 4, 12, 0, tzinfo=timezone.utc)
    org_url = f"https://{slug}.sentry.io"
    organization = copy.deepcopy(samples["Project"]["organization"])
    organization.update(slug=slug, name=slug.replace("-", " ").title(), links={"organizationUrl": org_url,
                                                                               "regionUrl": "https://us.sentry.io"})

    # Members: the seed's user, the seed's team member (danny), generated ones, and one pending invite.
    member_list: list[Item] = [copy.deepcopy(samples["User"])]
    danny = copy.deepcopy(samples["Team"]["__members"][0])
    danny.pop("teamRole", None)
    danny.pop("teamSlug", None)
    member_list.append(danny)
    for i in range(2, members - 1):
        m = copy.deepcopy(samples["User"])
        email = f"dev{i}@{slug}.example"
        joined = base - timedelta(days=400 - i)
        m.update(id=str(20000000 + i), email=email, name=f"Developer {i}", orgRole=rnd.choice(["member", "admin"]),
                 dateCreated=_iso(joined), inviterName="Port Admin")
        m["role"] = m["orgRole"]
        m["roleName"] = m["orgRole"].title()
        m["user"].update(id=str(3000000 + i), name=f"Developer {i}", username=email, email=email,
                         dateJoined=_iso(joined), lastLogin=_iso(base - timedelta(days=i)),
                         emails=[{"id": str(4000000 + i), "email": email, "is_verified": True}])
        member_list.append(m)
    invite = copy.deepcopy(samples["User"])
    invite.update(id=str(29999999), email=f"new.hire@{slug}.example", name=f"new.hire@{slug}.example", user=None,
                  pending=True, inviteStatus="pending", orgRole="member", role="member", roleName="Member")
    member_list.append(invite)

    # Projects: the seed's project, the seed team's two projects, then generated ones.
    project_list: list[Item] = []
    names = ["python-fastapi", "admin-service", "oauth-service"] + [f"service-{i}" for i in range(3, projects)]
    for i, name in enumerate(names[:projects]):
        p = copy.deepcopy(samples["Project"])
        if i:
            p.update(id=str(4504931759095808 + i * 1000), slug=name, name=name, platform=PLATFORMS[i % len(PLATFORMS)],
                     dateCreated=_iso(base - timedelta(days=300 - i)), status="active")
        p["organization"] = copy.deepcopy(organization)
        project_list.append(p)
    other = copy.deepcopy(samples["Project"])
    other.update(id="9999000000000001", slug="python-fastapi", name="python-fastapi")
    other["organization"].update(id="9999", slug="other-org", name="Other Org",
                                 links={"organizationUrl": "https://other-org.sentry.io"})

    # Teams: the seed's platform-team, then generated ones; projects and members spread round robin.
    team_list: list[Item] = []
    team_members: dict[str, list[Item]] = {}
    active = [m for m in member_list if m["user"] is not None]
    for t in range(teams):
        team = copy.deepcopy(samples["Team"])
        team.pop("__members", None)
        if t:
            team.update(id=str(1275104 + t), slug=f"team-{t}", name=f"Team {t}",
                        dateCreated=_iso(base - timedelta(days=500 - t)), teamRole=rnd.choice(["contributor", "admin"]))
        summary = team["projects"][0]
        owned = [p for k, p in enumerate(project_list) if k % teams == t] if t else project_list[1:3]
        team["projects"] = [dict(copy.deepcopy(summary), id=p["id"], slug=p["slug"], name=p["name"],
                                 platform=p["platform"]) for p in owned]
        roster = [active[1]] if t == 0 else [m for k, m in enumerate(active) if k % teams == t]
        team_members[team["slug"]] = [dict(copy.deepcopy(m), teamRole=None, teamSlug=team["slug"]) for m in roster]
        team["memberCount"] = len(roster)
        team_list.append(team)

    # Environments per project: the first has all of them, one has none, the rest a random non-empty subset.
    project_envs: dict[str, list[str]] = {}
    tag_values: dict[tuple[str, str], list[Item]] = {}
    for i, p in enumerate(project_list):
        if i == 0:
            envs = list(environments)
        elif i == len(project_list) - 1 and len(project_list) > 2:
            envs = []
        else:
            envs = sorted(rnd.sample(list(environments), rnd.randint(1, len(environments))))
        project_envs[p["slug"]] = envs
        tag_values[(p["slug"], "environment")] = [
            _tag_value("environment", e, rnd.randint(1, 500), base - timedelta(days=30), base) for e in envs]
    if many_values:
        tag_values[(project_list[0]["slug"], MANY_VALUES_TAG)] = [
            _tag_value(MANY_VALUES_TAG, f"1.{v // 10}.{v % 10}", v + 1, base - timedelta(days=60), base)
            for v in range(many_values)]

    # Issues: the seed's issue first, then generated ones across projects with environments.
    issue_list: list[Item] = []
    issue_tags: dict[tuple[str, str], list[Item]] = {}
    with_envs = [p for p in project_list if project_envs[p["slug"]]]
    recent = now or _process_now()
    for n in range(issues):
        last_seen = recent - timedelta(days=60) * (n / max(issues, 1))
        first_seen = last_seen - timedelta(days=1, minutes=n)
        if n == 0:
            issue = copy.deepcopy(samples["Issue"])
            project = project_list[0]
            issue.update(firstSeen=_iso(first_seen), lastSeen=_iso(last_seen))
        else:
            project = with_envs[n % len(with_envs)]
            issue = copy.deepcopy(samples["Issue"])
            issue_id = str(4605173695 + n * 7)
            kind = ("ZeroDivisionError", "KeyError", "TypeError", "ValueError", "TimeoutError")[n % 5]
            issue.update(id=issue_id, shortId=f"{project['slug'].upper()}-{n + 1}",
                         title=f"{kind}: failure #{n} in {project['slug']}", culprit=f"handler_{n % 9}",
                         permalink=f"{org_url}/issues/{issue_id}/", status=STATUSES[n % len(STATUSES)],
                         isUnhandled=n % 3 != 0, count=str(rnd.randint(1, 5000)), firstSeen=_iso(first_seen),
                         lastSeen=_iso(last_seen))
            issue["substatus"] = {"unresolved": "ongoing", "resolved": None, "ignored": "archived_forever"}[
                issue["status"]]
            issue["metadata"] = dict(issue["metadata"], type=kind, value=f"failure #{n}")
            issue["project"] = {k: project[k] for k in ("id", "name", "slug")} | {"platform": project["platform"]}
            pick = n % 4
            if pick == 0:
                issue["assignedTo"] = None
            elif pick == 3:
                team = team_list[n % len(team_list)]
                issue["assignedTo"] = {"type": "team", "id": team["id"], "name": team["slug"]}
            else:
                who = active[n % len(active)]
                issue["assignedTo"] = {"type": "user", "id": who["id"], "name": who["name"], "email": who["email"]}
        issue_list.append(issue)
        envs = project_envs[project["slug"]]
        chosen = envs if n == 0 else sorted(rnd.sample(envs, rnd.randint(1, len(envs))))
        values = [_tag_value("environment", e, rnd.randint(1, 50), first_seen, last_seen) for e in chosen]
        if n % 4 == 1 and len(values) > 1:
            # An environment last seen three weeks before the issue's last event (a fix reached it first): the
            # issue's tag values still name it, an issue list with a short statsPeriod does not.
            stale = last_seen - timedelta(days=21)
            values[-1].update(firstSeen=_iso(stale - timedelta(days=1)), lastSeen=_iso(stale))
            issue["firstSeen"] = values[-1]["firstSeen"]
        issue_tags[(issue["id"], "environment")] = values
    if many_values:
        issue_tags[(issue_list[0]["id"], MANY_VALUES_TAG)] = [
            _tag_value(MANY_VALUES_TAG, f"1.{v // 10}.{v % 10}", 1, recent - timedelta(days=2), recent)
            for v in range(many_values)]

    _as_sentry_serves(organization, member_list, team_list, team_members, project_list, issue_list, project_envs)
    release_store = build_releases(project_list, project_envs, member_list, recent, releases_per_project,
                                   seed_version=QUOTED_VERSION)
    return SentryDataset(
        organization=organization,
        members=member_list,
        teams=team_list,
        team_members=team_members,
        projects=project_list + [other],
        issues=issue_list,
        project_tag_values=tag_values,
        issue_tag_values=issue_tags,
        # the seed's user, an owner on no team: `/projects/` would show them none of the organization's projects
        token_user=member_list[0]["email"],
        releases=release_store,
        health=build_health(slug, project_list, team_list, member_list, recent),
        alerts=build_alerts(project_list, project_envs, team_list, member_list, recent),
    )


# Project flags newer than the seed's samples; Sentry's project serializers send all of them.
_PROJECT_FLAGS = ("hasFlags", "hasNewFeedbacks", "hasLogs", "hasTraceMetrics", "hasInsightsHttp", "hasInsightsDb",
                  "hasInsightsAssets", "hasInsightsAppStart", "hasInsightsScreenLoad", "hasInsightsVitals",
                  "hasInsightsCaches", "hasInsightsQueues", "hasInsightsAgentMonitoring", "hasInsightsMCP",
                  "hasUserReports")
_PRIORITIES = ("high", "medium", "low")


def _as_sentry_serves(organization: Item, members: list[Item], teams: list[Item], rosters: dict[str, list[Item]],
                      projects: list[Item], issues: list[Item], envs: dict[str, list[str]]) -> None:
    """Brings the seed-built objects to the shapes Sentry's serializers send (checked against Sentry's published
    schemas by sentry_port_assets_tests/test_sentry_shapes.py): the seed's samples predate some fields and carry
    Python's `"None"` where Sentry sends null."""
    organization.update(allowMemberInvite=True, allowMemberProjectCreation=True, allowSuperuserAccess=False)
    users_by_member = {m["id"]: m["user"] for m in members if m.get("user")}
    for m in [*members, *(r for roster in rosters.values() for r in roster)]:
        if m.get("user"):
            m["user"].setdefault("isSuspended", False)
        if m.get("pending") and m.get("user") is None:
            m["inviteStatus"] = "approved"  # an invite an admin sent: Sentry's other values are requests to join
    owners: dict[str, list[Item]] = {}
    for team in teams:
        # isMember and teamRole describe the token's user, who is on no team in these datasets
        team.update(isMember=False, teamRole=None)
        for summary in team["projects"]:
            summary.update({flag: False for flag in _PROJECT_FLAGS if flag not in summary})
            owners.setdefault(summary["id"], []).append({k: team[k] for k in ("id", "name", "slug")})
    for project in projects:
        project.update({flag: False for flag in _PROJECT_FLAGS if flag not in project})
        project.update(environments=list(envs.get(project["slug"], [])), teams=owners.get(project["id"], []),
                       platforms=[project["platform"]] if project.get("platform") else [], latestRelease=None)
        project["team"] = project["teams"][0] if project["teams"] else None
    for n, issue in enumerate(issues):
        for key in ("subscriptionDetails", "shareId", "logger"):
            if issue.get(key) == "None":
                issue[key] = None
        assignee = issue.get("assignedTo")
        if isinstance(assignee, dict) and assignee.get("type") != "team":
            # Sentry's ActorSerializer: a user assignee is {type: "user", id: the USER id, name, email}
            user = users_by_member.get(assignee.get("id")) or {}
            assignee.update(type="user", id=user.get("id", assignee.get("id")))
        issue.update(priority=_PRIORITIES[n % 3], priorityLockedAt=None, seerFixabilityScore=None,
                     seerAutofixLastTriggered=None, seerExplorerAutofixLastTriggered=None, derivedData={},
                     matchingEventId=None, matchingEventEnvironment=None, filtered=None,
                     lifetime={"count": issue["count"], "userCount": issue.get("userCount", 0),
                               "firstSeen": issue["firstSeen"], "lastSeen": issue["lastSeen"],
                               "stats": issue.get("stats") or {}})


def demo_dataset() -> SentryDataset:
    """The embedded default: 3 teams, 10 members, 5 projects, 3 environments, 50 issues."""
    return build_org()
