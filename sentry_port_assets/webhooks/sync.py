"""What a batch of webhook events changes in Port, worked out so that Port ends as a full resync would leave it.

For each affected issue the current issue is read from Sentry (not trusted from the webhook) and mapped with
every `issue` and `issue-tag` resource:
- `desired`: the entities a full resync would produce now: the issue, if it matches the resource's Sentry query,
  with its current tag values;
- `candidates`: every entity the issue could have produced: the issue (from Sentry, or from the webhook when
  Sentry no longer has it) with its tag values and every value of that tag in its project, the jq selector
  bypassed. Candidates that are not desired are deleted (a resolved issue under `is:unresolved`, an issue gone
  from Sentry, an environment it no longer has).
Comment events (`created`/`updated`/`deleted`) upsert or delete the entities of `comment` resources, whose raw
item is the webhook's `data` plus `__action`, with the comment's text as Sentry holds it now (read from the issue's
comments): a comment Sentry no longer has is deleted, whatever the event said.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sentry_port_assets.assets.plan import archived_wanted, issue_filter
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.config import ResourceConfig
from sentry_port_assets.mapping.engine import MappingResult, compile_resource
from sentry_port_assets.sentry.client import SentryClient, gather_limited
from sentry_port_assets.sentry.errors import (SentryError, SentryMultiProjectError, SentryNotFoundError,
                                              SentryPermissionError)
from sentry_port_assets.sentry.selection import IssueFilter, seen_within
from sentry_port_assets.webhooks.inbox import InboxEvent

Item = dict[str, Any]
Entity = dict[str, Any]
LOCAL_STATUSES = {"unresolved": "unresolved", "resolved": "resolved", "ignored": "ignored", "archived": "ignored"}


@dataclass
class Changes:
    upserts: list[Entity] = field(default_factory=list)
    deletes: dict[str, set[str]] = field(default_factory=dict)
    issues_refreshed: int = 0
    issues_gone: int = 0
    comments: int = 0
    misconfigurations: list[str] = field(default_factory=list)

    def add(self, desired: MappingResult, candidates: MappingResult) -> None:
        self.upserts.extend(desired.entities)
        keep = {(e["blueprint"], e["identifier"]) for e in desired.entities if isinstance(e["identifier"], str)}
        for e in candidates.entities:
            if isinstance(e["identifier"], str) and (e["blueprint"], e["identifier"]) not in keep:
                self.deletes.setdefault(e["blueprint"], set()).add(e["identifier"])
        self.misconfigurations.extend(m.describe() for m in desired.misconfigurations)


@dataclass
class Coalesced:
    """The latest event per issue and per comment."""

    issues: dict[str, Item] = field(default_factory=dict)  # issue id -> the webhook's issue (may be stale)
    comments: dict[str, tuple[str, Item]] = field(default_factory=dict)  # comment id -> (action, data)


def coalesce(events: Iterable[InboxEvent]) -> Coalesced:
    out = Coalesced()
    for event in sorted(events, key=lambda e: e.id):
        data = event.data
        if event.resource == "issue" and event.issue_id:
            out.issues[event.issue_id] = data.get("issue") or {"id": event.issue_id}
        elif event.resource == "comment":
            key = str(data.get("comment_id") or event.request_id)
            out.comments[key] = (event.action, data)
            if event.issue_id:
                out.issues.setdefault(event.issue_id, {"id": event.issue_id})
    return out


def _without_selector(resource: ResourceConfig) -> ResourceConfig:
    return resource.model_copy(update={"selector": resource.selector.model_copy(update={"query": "true"})})


class IssueSync:
    """Maps affected issues with the mapping's issue resources, asking Sentry for their current state."""

    def __init__(self, client: SentryClient, mapping: CompiledMapping) -> None:
        self.client = client
        compiled = [c for c in mapping.resources if c.kind in ("issue", "issue-tag")]
        self.resources = [(c.index, c.resource) for c in compiled]
        self.compiled = {c.index: (c, compile_resource(_without_selector(c.resource), c.index)) for c in compiled}
        # Asked once per batch: several issues of one project share these.
        self._listed: dict[tuple[str, IssueFilter], set[str]] = {}
        self._project_values: dict[tuple[str, str], list[Item]] = {}

    async def matches(self, issue: Item, issue_filter: IssueFilter) -> bool:
        """Whether a resync with this Sentry query would return the issue: `is:` statuses and Sentry's default
        90-day window are checked here, anything else by asking Sentry for the project's issues with that query."""
        tokens = issue_filter.query.split()
        statuses = {LOCAL_STATUSES.get(t[3:]) for t in tokens if t.startswith("is:")}
        if issue_filter.stats_period is None and all(t.startswith("is:") for t in tokens) and None not in statuses:
            return all(issue.get("status") == s for s in statuses) and seen_within(issue)
        project = issue.get("project") or {}
        key = (str(project.get("id")), issue_filter)
        if key not in self._listed:
            listed = await self.client.list_issues({"id": project.get("id")}, issue_filter.query,
                                                   issue_filter.stats_period)
            self._listed[key] = {i["id"] for i in listed}
        return issue["id"] in self._listed[key]

    async def _values(self, issue_id: str | None, project_slug: str | None, key: str) -> tuple[list[Item], list[Item]]:
        """The issue's values of a tag, and those plus the project's (every value the issue could have had)."""
        own: list[Item] = []
        if issue_id is not None:
            try:
                own = await self.client.list_issue_tag_values(issue_id, key)
            except SentryNotFoundError:
                own = []
        project: list[Item] = []
        if project_slug:
            if (project_slug, key) not in self._project_values:
                try:
                    values = await self.client.list_project_tag_values(project_slug, key)
                except SentryNotFoundError:
                    values = []
                self._project_values[(project_slug, key)] = values
            project = self._project_values[(project_slug, key)]
        seen = {v.get("value") for v in own}
        return own, own + [v for v in project if v.get("value") not in seen]

    async def sync(self, issue_id: str, from_webhook: Item, changes: Changes, current: Mapping[str, Item]) -> None:
        """`current`: the batch's issues as Sentry holds them now (`current_issues`); one missing there is gone."""
        issue: Item | None = current.get(issue_id)
        if issue is None:
            changes.issues_gone += 1
        else:
            changes.issues_refreshed += 1
        base = issue or {**from_webhook, "id": issue_id}
        slug = (base.get("project") or {}).get("slug")
        for index, resource in self.resources:
            exact, anything = self.compiled[index]
            wanted = (issue is not None and archived_wanted(resource, issue)
                      and await self.matches(issue, issue_filter(resource)))
            if resource.kind == "issue":
                rows_now, rows_all = ([issue] if wanted else []), [base]
            else:
                own, every = await self._values(issue_id if issue else None, slug, resource.selector.tag)
                rows_now = [{**issue, "__tags": own}] if wanted and issue else []
                rows_all = [{**base, "__tags": every}]
            changes.add(exact.map(rows_now, workers=1), anything.map(rows_all, workers=1))


async def sync_comments(client: SentryClient, mapping: CompiledMapping, comments: dict[str, tuple[str, Item]],
                        changes: Changes) -> None:
    """Each comment is applied as Sentry holds it now, not as the body says: the issue's comments are read from
    Sentry, a comment it still has is upserted with its current text, and one it no longer has is deleted. So a
    replayed or late `created` cannot revert an edit or bring back a deleted comment."""
    resources = mapping.of_kind("comment")
    if not resources:
        return
    held: dict[str, dict[str, Item]] = {}
    for _, data in comments.values():
        issue_id = str(data.get("issue_id"))
        if issue_id not in held:
            try:
                held[issue_id] = {str(n.get("id")): n for n in await client.list_issue_comments(issue_id)}
            except SentryNotFoundError:  # the issue is gone, and its comments with it
                held[issue_id] = {}
    for exact in resources:
        anything = compile_resource(_without_selector(exact.resource), exact.index)
        for action, data in comments.values():
            current = held[str(data.get("issue_id"))].get(str(data.get("comment_id")))
            desired = MappingResult()
            if current is not None:
                text = (current.get("data") or {}).get("text", data.get("comment"))
                desired = exact.map([{**data, "comment": text, "__action": action}], workers=1)
            changes.add(desired, anything.map([{**data, "__action": action}], workers=1))
            changes.comments += 1


class IssueLookupError(SentryError):
    """Issues whose project the token cannot see: whether they still exist is unknown, so nothing is applied (their
    events stay pending for a retry) rather than their entities deleted as if the issues were gone."""


def _project(issue: Item) -> tuple[str | None, str | None]:
    project = issue.get("project") or {}
    return (str(project["id"]) if project.get("id") is not None else None), project.get("slug")


async def _looked_up(client: SentryClient, issues: Mapping[str, Item]) -> dict[str, Item]:
    """One issue-list lookup of the ids over every project the token can access (`project=-1`); without the
    organization's `global-views` feature (a 400 for several projects) one lookup per project the webhooks name."""
    try:
        return await client.issues_by_id(issues)
    except SentryMultiProjectError:
        pass
    by_project: dict[str, list[str]] = {}
    for issue_id, issue in issues.items():
        project_id, _ = _project(issue)
        if project_id is not None:
            by_project.setdefault(project_id, []).append(issue_id)
    found: dict[str, Item] = {}
    for project_id, ids in sorted(by_project.items()):
        try:
            found.update(await client.issues_by_id(ids, project=project_id))
        except SentryPermissionError:
            pass  # a project the token cannot access: its issues are confirmed one by one below
    return found


async def current_issues(client: SentryClient, issues: Mapping[str, Item]) -> dict[str, Item]:
    """The batch's issues as Sentry holds them now; an id missing from the answer is gone from Sentry.

    Sentry's issue list looks `group=` ids up only in the projects it covers and says nothing of the others
    (OrganizationGroupIndexEndpoint filters `project_id__in` the covered projects): an id it does not return may be
    gone, or in a project the lookup did not cover. So each id the lookup missed is confirmed with the issue's own
    endpoint: 404 (deleted, or pending deletion) is gone; an issue answered under another id was merged into it, and
    is gone under this one; 403 means the token cannot see the issue's project, and the batch fails (IssueLookupError,
    naming the projects) without deleting anything, as an absent answer must never read as a deletion."""
    found = await _looked_up(client, issues)
    missed = [issue_id for issue_id in issues if issue_id not in found]

    async def confirm(issue_id: str) -> Item | None | bool:
        try:
            return await client.get_issue(issue_id)
        except SentryNotFoundError:
            return None
        except SentryPermissionError:
            return False

    unseen: list[str] = []
    for issue_id, answer in zip(missed, await gather_limited(confirm(i) for i in missed)):
        if answer is False:
            unseen.append(issue_id)
        elif isinstance(answer, dict) and str(answer.get("id")) == issue_id:
            found[issue_id] = answer
    if unseen:
        projects = sorted({_project(issues[i])[1] or f"the project of issue {i}" for i in unseen})
        raise IssueLookupError(
            f"SENTRY_TOKEN cannot see the issues {', '.join(unseen[:10])}{' …' if len(unseen) > 10 else ''} of "
            f"{', '.join(projects)} (Sentry answered 403 for each): whether they still exist is unknown, so nothing "
            "is applied and their events stay pending. Give the token access to every project: an internal "
            "integration's token, or a personal token whose user has the owner or manager role or is on those "
            "projects' teams (or turn on the organization's open membership).")
    return found


async def changes_for(client: SentryClient, mapping: CompiledMapping, events: Sequence[InboxEvent]) -> Changes:
    batch = coalesce(events)
    changes = Changes()
    issues = IssueSync(client, mapping)
    if issues.resources and batch.issues:
        current = await current_issues(client, batch.issues)  # one request per 100 issues, not one per issue
        for issue_id, from_webhook in batch.issues.items():
            await issues.sync(issue_id, from_webhook, changes, current)
    await sync_comments(client, mapping, batch.comments, changes)
    return changes
