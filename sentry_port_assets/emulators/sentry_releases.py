"""Releases and deploys for the Sentry emulator: how Sentry stores them and how its endpoints serve them.

Sentry's model (getsentry/sentry, src/sentry/models/release.py, deploy.py, releaseprojectenvironment.py): a release
(`version`, unique per organization) belongs to projects; a deploy is of a release to an environment, for all of the
release's projects or those named; each (release, project, environment) row keeps only its LAST deploy
(`last_deploy_id`), and the release counts its deploys (`total_deploys`) and points at its latest (`last_deploy_id`).
What the endpoints serve from that:
- `GET /organizations/{org}/releases/` (src/sentry/releases/endpoints/organization_releases.py): open releases
  (status open or unset) unless `status=archived`, newest `date_added` first, offset-paged, of the projects asked
  for; `statsPeriod` keeps those added in the window; `query` filters (free text on the version, `release:`,
  `release.package:`, `semver:`, `release.stage:`); `health=1` adds `projects[].healthData`. Serialized by
  ReleaseSerializer (src/sentry/api/serializers/models/release.py).
- `GET /organizations/{org}/releases/{version}/deploys/` (src/sentry/releases/endpoints/release_deploys.py): the
  last deploy of each (project, environment) of the release, newest `date_finished` first, items without projects;
  `project` narrows to those projects.
- `GET /organizations/{org}/projects/` items carry `latestDeploys` ({environment: {version, dateFinished}}, the most
  recent deploy per environment; ProjectSummarySerializer.get_deploys_by_project) and `latestRelease`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Item = dict[str, Any]

# Sentry's Release.is_valid_version: none of these characters, and not one of the reserved names. Older releases
# were stored before the check existed, so a list can still show such a version (one with "/"), which no
# per-release endpoint can address: the path segment cannot hold it, encoded or not.
INVALID_VERSION_CHARACTERS = frozenset("\r\n\f\x0c\t/\\")
RESERVED_VERSIONS = frozenset({".", "..", " ", "latest"})
# `semver:` comparisons Sentry's release search accepts (src/sentry/search/events/filter.py, parse_semver).
_SEMVER = re.compile(r"^(?:(?P<package>[^@]+)@)?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?"
                     r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
STAGES = ("adopted", "low_adoption", "replaced")


def valid_version(version: str) -> bool:
    return bool(version) and version not in RESERVED_VERSIONS and not set(version) & INVALID_VERSION_CHARACTERS


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_info(version: str) -> Item | None:
    """ReleaseSerializer's `versionInfo` (expose_version_info over Release.version_info): package and parsed semver,
    or the build hash of a commit-sha version."""
    parsed = _SEMVER.match(version)
    if parsed:
        raw = version.split("@", 1)[1] if parsed["package"] else version
        parts = [parsed["major"], parsed["minor"], parsed["patch"]]
        return {"package": parsed["package"], "version": {
            "raw": raw, "major": int(parts[0]), "minor": int(parts[1] or 0), "patch": int(parts[2] or 0),
            "pre": parsed["pre"], "buildCode": parsed["build"], "components": sum(p is not None for p in parts)},
            "description": raw, "buildHash": None}
    if _SHA.match(version):
        return {"package": None, "version": {"raw": version}, "description": version[:12], "buildHash": version}
    return {"package": None, "version": {"raw": version}, "description": version, "buildHash": None}


@dataclass
class Release:
    version: str
    projects: list[str]  # project ids
    date_created: datetime
    date_released: datetime | None = None
    status: str = "open"  # or "archived"
    commit_count: int = 0
    authors: list[Item] = field(default_factory=list)  # {name, email}
    new_groups: dict[str, int] = field(default_factory=dict)  # project id -> new issues
    ref: str | None = None
    url: str | None = None
    # project id -> Sentry's health overview for it (crash free rates, adoption, sessions); none: no sessions
    health: dict[str, Item] = field(default_factory=dict)
    # (project id, environment) -> ("adopted" | "replaced" | "low_adoption"): ReleaseProjectEnvironment's
    # adopted/unadopted dates, reduced to the stage `release.stage:` filters on
    stages: dict[tuple[str, str], str] = field(default_factory=dict)
    id: int = 0
    total_deploys: int = 0
    last_deploy: str | None = None  # deploy id


@dataclass
class Deploy:
    id: str
    version: str
    environment: str
    date_finished: datetime
    projects: list[str]  # project ids it was made for
    date_started: datetime | None = None
    name: str | None = None
    url: str | None = None

    def serialized(self) -> Item:
        """DeploySerializer (src/sentry/api/serializers/models/deploy.py): no release, no projects."""
        return {"id": self.id, "environment": self.environment,
                "dateStarted": _iso(self.date_started) if self.date_started else None,
                "dateFinished": _iso(self.date_finished), "name": self.name, "url": self.url}


@dataclass
class ReleaseStore:
    """An organization's releases and deploys, changed the way Sentry's write endpoints change them."""

    releases: dict[str, Release] = field(default_factory=dict)
    deploys: dict[str, Deploy] = field(default_factory=dict)
    # release version -> {(project id, environment): deploy id}: ReleaseProjectEnvironment.last_deploy_id
    last_deploys: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    next_release_id: int = 1
    next_deploy_id: int = 1

    def create(self, version: str, projects: list[str], when: datetime, *, legacy: bool = False, **fields: Any) -> Release:
        """`POST /organizations/{org}/releases/`; `legacy`: a release stored before Sentry validated versions."""
        if not legacy and not valid_version(version):
            raise ValueError(f"Sentry refuses the release version {version!r}")
        release = Release(version, list(projects), when, id=self.next_release_id, **fields)
        self.next_release_id += 1
        self.releases[version] = release
        return release

    def deploy(self, version: str, environment: str, finished: datetime, *, projects: list[str] | None = None,
               started: datetime | None = None, name: str | None = None, url: str | None = None) -> Deploy:
        """`POST /organizations/{org}/releases/{version}/deploys/` (create_deploy): for the release's projects or
        those named; each (project, environment) now points at this deploy, as does the release."""
        release = self.releases[version]
        targets = list(projects or release.projects)
        deploy = Deploy(str(self.next_deploy_id), version, environment, finished, targets, started, name, url)
        self.next_deploy_id += 1
        self.deploys[deploy.id] = deploy
        release.total_deploys += 1
        release.last_deploy = deploy.id
        for project in targets:
            self.last_deploys.setdefault(version, {})[(project, environment)] = deploy.id
        return deploy

    def archive(self, version: str) -> None:
        self.releases[version].status = "archived"

    def restore(self, version: str) -> None:
        self.releases[version].status = "open"

    def delete(self, version: str) -> None:
        """`DELETE /organizations/{org}/releases/{version}/`: the release, its deploys and environment rows go."""
        del self.releases[version]
        self.last_deploys.pop(version, None)
        for deploy_id in [d for d, deploy in self.deploys.items() if deploy.version == version]:
            del self.deploys[deploy_id]

    # -- what the endpoints serve ------------------------------------------------------------------------------------

    def listed(self, project_ids: set[str], *, status: str = "open", since: datetime | None = None,
               query: str = "", environments: list[str] | None = None) -> list[Release]:
        """The releases the list endpoint pages through, newest `date_added` first (ties: newest id first)."""
        found = [r for r in self.releases.values()
                 if (r.status == status) and set(r.projects) & project_ids
                 and (since is None or r.date_created >= since)
                 and (not environments or any(env in environments for (p, env) in self._environments(r)
                                              if p in project_ids))
                 and matches_query(r, query, project_ids, environments)]
        return sorted(found, key=lambda r: (r.date_created, r.id), reverse=True)

    def _environments(self, release: Release) -> set[tuple[str, str]]:
        return set(self.last_deploys.get(release.version, {})) | set(release.stages)

    def serialized(self, release: Release, projects: dict[str, Item], *, health: bool = False) -> Item:
        """ReleaseSerializer's item: every project of the release (its ReleaseProject rows, whoever asks),
        `healthData` with `health=1`."""
        last = self.deploys.get(release.last_deploy or "")
        shown = [p for p in release.projects if p in projects]

        def project(pid: str) -> Item:
            p = projects[pid]
            entry: Item = {"id": int(pid), "slug": p["slug"], "name": p["name"],
                           "newGroups": release.new_groups.get(pid, 0), "platform": p.get("platform"),
                           "platforms": [p["platform"]] if p.get("platform") else [],
                           "hasHealthData": pid in release.health}
            if health:
                entry["healthData"] = release.health.get(pid)
            return entry

        return {
            "id": release.id, "version": release.version, "status": release.status,
            "shortVersion": release.version, "versionInfo": version_info(release.version),
            "ref": release.ref, "url": release.url,
            "dateReleased": _iso(release.date_released) if release.date_released else None,
            "dateCreated": _iso(release.date_created), "dateStarted": None, "data": {},
            "newGroups": sum(release.new_groups.get(p, 0) for p in release.projects),
            "owner": None, "commitCount": release.commit_count,
            "lastCommit": None, "deployCount": release.total_deploys,
            "lastDeploy": last.serialized() if last else None,
            "authors": list(release.authors), "projects": [project(p) for p in shown],
            "firstEvent": None, "lastEvent": None, "currentProjectMeta": {}, "userAgent": None,
        }

    def deploys_of(self, version: str, project_ids: set[str]) -> list[Item]:
        """ReleaseDeploysEndpoint.get: the last deploy of each (project, environment), newest finished first."""
        ids = {d for (p, _), d in self.last_deploys.get(version, {}).items() if p in project_ids}
        chosen = sorted((self.deploys[d] for d in ids), key=lambda d: (d.date_finished, int(d.id)), reverse=True)
        return [d.serialized() for d in chosen]

    def latest_deploys(self, project_id: str) -> dict[str, Item] | None:
        """ProjectSummarySerializer.get_deploys_by_project: per environment, the deploy that finished last among
        the project's (release, environment) rows, as {version, dateFinished}; None when it has none."""
        latest: dict[str, Deploy] = {}
        for (pid, env), deploy_id in ((key, d) for rows in self.last_deploys.values() for key, d in rows.items()):
            deploy = self.deploys[deploy_id]
            if pid == project_id and (env not in latest or deploy.date_finished > latest[env].date_finished):
                latest[env] = deploy
        return {env: {"version": d.version, "dateFinished": _iso(d.date_finished)} for env, d in latest.items()} or None

    def latest_release(self, project_id: str) -> Item | None:
        """`latestRelease`: the project's release released (or added) last."""
        mine = [r for r in self.releases.values() if project_id in r.projects]
        if not mine:
            return None
        newest = max(mine, key=lambda r: (r.date_released or r.date_created, r.id))
        return {"version": newest.version}


class QueryProblem(ValueError):
    """A release query Sentry answers with 400 (InvalidSearchQuery)."""


def _semver_key(version: str) -> tuple[str | None, tuple[int, int, int], bool] | None:
    parsed = _SEMVER.match(version)
    if not parsed:
        return None
    return (parsed["package"], (int(parsed["major"]), int(parsed["minor"] or 0), int(parsed["patch"] or 0)),
            parsed["pre"] is None)


def matches_query(release: Release, query: str, project_ids: set[str], environments: list[str] | None) -> bool:
    """Sentry's release search (_filter_releases_by_query): `release:` (exact, `*` wildcards), `release.package:`,
    `semver:` with `>`, `>=`, `<`, `<=` (or none: equal), `release.stage:` over the (project, environment) rows
    asked for; any other text matches the version case-insensitively. Raises QueryProblem for an unknown key."""
    for token in query.split():
        key, sep, value = token.partition(":")
        if not sep:
            if token.lower() not in release.version.lower():
                return False
            continue
        value = value.strip('"')
        if key == "release":
            pattern = "^" + ".*".join(re.escape(part) for part in value.split("*")) + "$"
            if not re.match(pattern, release.version):
                return False
        elif key == "release.package":
            parsed = _semver_key(release.version)
            if parsed is None or parsed[0] != value:
                return False
        elif key == "semver":
            op = next((o for o in (">=", "<=", ">", "<") if value.startswith(o)), "")
            wanted, have = _semver_key(value[len(op):]), _semver_key(release.version)
            if wanted is None:
                raise QueryProblem(f"Invalid format for semver query {value}")
            if have is None or (wanted[0] is not None and wanted[0] != have[0]):
                return False
            compare = {">=": have[1] >= wanted[1], "<=": have[1] <= wanted[1], ">": have[1] > wanted[1],
                       "<": have[1] < wanted[1], "": have[1] == wanted[1]}[op]
            if not compare:
                return False
        elif key == "release.stage":
            if value not in STAGES:
                raise QueryProblem(f"Unsupported release.stage value: {value}. Choose one of {', '.join(STAGES)}")
            rows = {stage for (pid, env), stage in release.stages.items()
                    if pid in project_ids and (not environments or env in environments)}
            # a join on the release's (project, environment) rows: any row in that stage matches
            if value not in rows:
                return False
        else:
            raise QueryProblem(f"Invalid key for this search: {key}")
    return True


def build_releases(projects: list[Item], environments: dict[str, list[str]], members: list[Item], now: datetime,
                   per_project: int = 6, seed_version: str | None = None) -> ReleaseStore:
    """A realistic history over the 60 days before `now`: per project, `per_project` releases (semver
    `<package>@1.N.0`, or 40-character commit shas for every third project), each deployed to the project's
    staging environment and, most of them, to production a day later, a few to development; a release shared by
    two projects (a monorepo build, deployed for one of them only once); `seed_version` (a version that needs
    URL quoting) as the first project's newest release; health data (sessions) for the first two projects; one
    archived release. Deploys start in the seconds before they finish; some have a name and URL, some not."""
    store = ReleaseStore()
    authors = [{"name": m["name"], "email": m["email"]} for m in members if m.get("user")][:4]
    counter = 0
    for index, project in enumerate(projects):
        pid, slug = project["id"], project["slug"]
        envs = environments.get(slug, [])
        made: list[Release] = []
        for n in range(per_project):
            counter += 1
            created = now - timedelta(days=60) + timedelta(days=60) * (n + 0.5) / max(per_project, 1) \
                - timedelta(hours=index)
            if index % 3 == 2:
                version = hashlib.sha1(f"{slug} {n}".encode()).hexdigest()
            else:
                version = f"{slug}@1.{n}.0"
            if seed_version and index == 0 and n == per_project - 1:
                version = seed_version
            release = store.create(
                version, [pid], created, date_released=created + timedelta(minutes=30) if n % 4 else None,
                commit_count=3 + (counter * 7) % 20, authors=authors[n % len(authors):][:2] if authors else [],
                new_groups={pid: (counter * 5) % 4}, ref=f"refs/tags/v1.{n}.0" if index % 3 != 2 else None,
                url=f"https://github.com/example/{slug}/releases/tag/v1.{n}.0" if index % 3 != 2 else None)
            made.append(release)
            for offset, env in ((timedelta(hours=2), "staging"), (timedelta(days=1), "production"),
                                (timedelta(hours=1), "development")):
                if env not in envs or (env == "production" and n % 5 == 3) or (env == "development" and n % 2):
                    continue
                finished = created + offset
                if finished > now:
                    continue
                named = (counter + len(env)) % 3 != 0
                store.deploy(version, env, finished, started=finished - timedelta(seconds=90 + counter % 200),
                             name=f"{slug} {version.rsplit('@', 1)[-1] if '@' in version else version[:12]} to {env}"
                             if named else None,
                             url=f"https://ci.example.com/{slug}/deploys/{counter}-{env}" if named else None)
        if index < 2:
            for k, release in enumerate(made):
                release.health[pid] = _health(k, len(made))
        for env in envs:
            deployed = [r for r in made if (pid, env) in store.last_deploys.get(r.version, {})]
            for r in deployed:
                r.stages[(pid, env)] = "replaced"
            if deployed:
                newest = max(deployed, key=lambda r: store.deploys[store.last_deploys[r.version][(pid, env)]]
                             .date_finished)
                newest.stages[(pid, env)] = "adopted"
            for r in made:
                r.stages.setdefault((pid, env), "low_adoption")
        if index == 1 and len(made) > 2:
            store.archive(made[0].version)
    if len(projects) >= 3:
        shared = store.create("a3f9c2e17b4d8e6051c2a9f3d7e8b1c4a5f60718", [projects[1]["id"], projects[2]["id"]],
                              now - timedelta(days=9), date_released=now - timedelta(days=9), commit_count=12,
                              authors=authors[:1], new_groups={projects[1]["id"]: 1, projects[2]["id"]: 0})
        for env in ("staging", "production"):
            if env in environments.get(projects[1]["slug"], []):
                store.deploy(shared.version, env, now - timedelta(days=8, hours=3 if env == "staging" else 0),
                             projects=[projects[1]["id"]], name=None)
        their = environments.get(projects[2]["slug"], [])
        if their:
            store.deploy(shared.version, their[0], now - timedelta(days=7), projects=[projects[2]["id"]],
                         name=f"monorepo build to {their[0]}", url="https://ci.example.com/monorepo/7")
    return store


def _health(k: int, total: int) -> Item:
    """Sentry's health overview of a release in a project (snuba/sessions.py get_release_health_data_overview)."""
    newest = k == total - 1
    sessions = 0 if k < total - 4 else 1200 * (k + 1)
    return {"durationP50": 41.5 + k, "durationP90": 180.0 + 3 * k,
            "crashFreeUsers": round(99.9 - 0.35 * ((k * 7) % 5), 2) if sessions else None,
            "crashFreeSessions": round(99.95 - 0.4 * ((k * 3) % 5), 2) if sessions else None,
            "totalUsers": sessions // 4, "totalUsers24h": sessions // 40 if newest else 0,
            "totalProjectUsers24h": sessions // 30, "totalSessions": sessions,
            "totalSessions24h": sessions // 12 if newest else 0, "totalProjectSessions24h": sessions // 10,
            "adoption": (72.5 if newest else round(3.0 * k, 1)) if sessions else None,
            "sessionsAdoption": (75.0 if newest else round(2.5 * k, 1)) if sessions else None,
            "sessionsCrashed": (k * 3) % 11 if sessions else 0, "sessionsErrored": (k * 5) % 17 if sessions else 0,
            "hasHealthData": bool(sessions), "stats": {}}
