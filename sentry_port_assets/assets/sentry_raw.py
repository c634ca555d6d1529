"""Raw Sentry assets (group `sentry`): exactly what the API returns, enriched the way the mapping expects.

Each asset fetches only what the active mapping needs; when no mapping resource reads its kind it makes no
request and says so in its metadata. Shapes of the stored values: see `assets/plan.py`. Each records the mapping snapshot it fetched for
(`mapping_sha256`).
"""


import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from dagster import (AssetExecutionContext, AssetIn, AssetKey, AssetOut, AssetsDefinition, AssetSpec, MetadataValue,
                     Output, asset, multi_asset)

from sentry_port_assets.assets import tag_cache
from sentry_port_assets.assets.describe import Links, raw_metadata
from sentry_port_assets.assets.mapping_step import MAPPING_SHA, mapping_for_step
from sentry_port_assets.assets.metadata import preview_table
from sentry_port_assets.assets.plan import FetchPlan
from sentry_port_assets.assets.presentation import PLAIN, Presentation
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.sentry.client import SentryClient, cost_line, progress_reporter
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags, fetch_issues, fetch_project_tags, fetch_teams
from sentry_port_assets.sentry.resource import SentryResource

T = TypeVar("T")
Item = dict[str, Any]
GROUP = "sentry"
KINDS = {"sentry"}


async def _fetch_async(context: AssetExecutionContext, sentry: SentryResource, label: str,
                       fetch: Callable[[SentryClient], Awaitable[T]]) -> tuple[T, dict[str, Any]]:
    """One asset's fetch, with its own client (so its cost is its own) and progress lines."""
    async with sentry.get_client() as client:
        async with progress_reporter(context.log.info, label, client, sentry.progress_interval_seconds):
            value = await fetch(client)
        cost = client.stats.as_metadata(client.governor.wait_seconds)
    context.log.info(f"{label}: done, {cost_line(cost)}")
    return value, {**cost, "source": MetadataValue.text(sentry.description)}


def _fetch(context: AssetExecutionContext, sentry: SentryResource, label: str,
           fetch: Callable[[SentryClient], Awaitable[T]]) -> tuple[T, dict[str, Any]]:
    """Runs one asset's fetch; returns its value and the cost as metadata."""
    return asyncio.run(_fetch_async(context, sentry, label, fetch))


def _output(value: T, sha: str, cost: dict[str, Any], columns: Sequence[str], output_name: str = "result",
            **extra: Any) -> Output[T]:
    """The asset's value with its metadata: the row count and a preview of its items (grouped values flattened)."""
    rows = value if isinstance(value, list) else _flat(value)
    return Output(value, output_name=output_name, metadata={"dagster/row_count": len(rows), **cost, **extra,
                                                            "preview": preview_table(rows, columns),
                                                            MAPPING_SHA: sha})


def _skipped(value: T, sha: str, reason: str, output_name: str = "result") -> Output[T]:
    return Output(value, output_name=output_name,
                  metadata={"dagster/row_count": 0, "requests": 0, "skipped": reason, MAPPING_SHA: sha})


def _flat(groups: dict[str, Any]) -> list[Item]:
    out: list[Item] = []
    for v in groups.values():
        out.extend(_flat(v) if isinstance(v, dict) else v)
    return out


def _name(key: AssetKey) -> str:
    return "__".join(key.path)


def _step(context: AssetExecutionContext, names: Names) -> tuple[SentryResource, CompiledMapping, FetchPlan]:
    """What every raw asset starts from: the instance's Sentry resource, the run's mapping and what it asks for."""
    bound = names.resources_of(context)
    config = mapping_for_step(context, bound.mapping)
    return bound.sentry, config, FetchPlan.of(config)


def build_raw_assets(names: Names = DEFAULT, links: Links = Links(),
                     present: Presentation = PLAIN) -> list[AssetsDefinition]:
    """The raw Sentry assets of one instance (`names`: its keys, groups and resource keys; `links`: where its Sentry
    organization is; `present`: its owners, tags, group and translation)."""
    MEMBERS, TEAMS, PROJECTS = names.key("sentry", "members"), names.key("sentry", "teams"), names.key("sentry", "projects")
    resources = {names.resource("sentry"), names.resource("mapping")}

    def base(name: str, description: str) -> AssetSpec:
        return AssetSpec(key=names.key("sentry", name), group_name=names.group(GROUP), kinds=KINDS,
                         description=description, metadata=raw_metadata(("sentry", name), links))

    def spec(name: str, description: str) -> AssetSpec:
        return present.spec(base(name, description))

    def args(name: str, description: str) -> dict[str, Any]:
        return present.asset_args(base(name, description))

    @multi_asset(
        name=names.job("sentry_organization"),
        required_resource_keys=resources,
        outs={
            _name(MEMBERS): AssetOut.from_spec(spec("members", "Organization members (kind `user`), pending invites "
                                                               "included."), is_required=False),
            _name(TEAMS): AssetOut.from_spec(spec("teams", "Teams (kind `team`), with `__members` when a team resource "
                                                           "sets includeMembers: true."), is_required=False),
            _name(PROJECTS): AssetOut.from_spec(spec("projects", "Every active project of the organization."),
                                                is_required=False),
        },
        can_subset=True,
    )
    def sentry_organization(context: AssetExecutionContext) -> Iterator[Output[list[Item]]]:
        """The organization's roots in one step, fetched concurrently: members, teams, projects.

        One step rather than three: it is the only root of the graph, so a mapping that does not load fails it once,
        before any Sentry request, and every asset downstream is skipped instead of failing with the same error."""
        sentry, config, plan = _step(context, names)
        selected = context.selected_asset_keys
        sentry.warn_if_demo(context.log)
        for warning in config.warnings:  # once per run: this is the graph's root
            context.log.warning(f"mapping: {warning}")
        fetches: dict[AssetKey, Any] = {}
        skipped: dict[AssetKey, str] = {}
        vanished = Vanished()

        for key, needed, why, label, fetch in [
            (MEMBERS, plan.members, "no mapping resource of kind user", "members", lambda c: c.list_members()),
            (TEAMS, plan.teams, "no mapping resource of kind team", "teams",
             lambda c: fetch_teams(c, plan.team_members, vanished)),
            (PROJECTS, plan.projects, "no mapping resource of kind project, project-tag, issue or issue-tag",
             "projects", lambda c: c.list_projects()),
        ]:
            if key not in selected:
                continue
            if needed:
                fetches[key] = _fetch_async(context, sentry, label, fetch)
            else:
                skipped[key] = why

        async def run_all() -> list[Any]:
            return list(await asyncio.gather(*fetches.values(), return_exceptions=True))

        outcomes = dict(zip(fetches, asyncio.run(run_all()) if fetches else []))
        results = {key: outcome for key, outcome in outcomes.items() if not isinstance(outcome, BaseException)}
        failed = [outcome for outcome in outcomes.values() if isinstance(outcome, BaseException)]
        for key, why in skipped.items():
            yield _skipped([], config.sha256, why, output_name=_name(key))
        if MEMBERS in results:
            members, cost = results[MEMBERS]
            yield _output(members, config.sha256, cost, ["email", "orgRole", "inviteStatus", "user.username"],
                          output_name=_name(MEMBERS))
        if TEAMS in results:
            teams, cost = results[TEAMS]
            yield _output(teams, config.sha256, cost, ["slug", "name", "memberCount", "__members"],
                          output_name=_name(TEAMS), with_members=plan.team_members, vanished=len(vanished.items))
        if PROJECTS in results:
            found, cost = results[PROJECTS]
            yield _output(found, config.sha256, cost, ["slug", "platform", "status"], output_name=_name(PROJECTS))
        if failed:  # what was fetched is recorded above; the step still fails, so nothing downstream runs on a gap
            raise failed[0]

    @asset(**args("project_tags", "Tag values per project (kind `project-tag`): one row per project per value, "
                                  "every key selected."),
           required_resource_keys=resources, ins={"projects": AssetIn(key=PROJECTS)})
    def sentry_project_tags(context: AssetExecutionContext, projects: list[Item]) -> Output[dict[str, list[Item]]]:
        sentry, config, plan = _step(context, names)
        keys = plan.project_tag_keys
        if not keys:
            return _skipped({}, config.sha256, "no mapping resource of kind project-tag")
        rows, cost = _fetch(context, sentry, "project tags", lambda c: fetch_project_tags(c, projects, keys))
        return _output(rows, config.sha256, cost, ["slug", "__tags.key", "__tags.name", "__tags.count"],
                       tag_keys=", ".join(keys))

    @asset(**args("issues", "Issues per project (kinds `issue`, `issue-tag`), one list per distinct Sentry query."),
           required_resource_keys=resources, ins={"projects": AssetIn(key=PROJECTS)})
    def sentry_issues(context: AssetExecutionContext, projects: list[Item]) -> Output[dict[str, list[Item]]]:
        sentry, config, plan = _step(context, names)
        filters = plan.issue_filters
        if not filters:
            return _skipped({}, config.sha256, "no mapping resource of kind issue or issue-tag")
        issues, cost = _fetch(context, sentry, "issues", lambda c: fetch_issues(c, projects, filters))
        return _output(issues, config.sha256, cost, ["id", "shortId", "status", "project.slug"],
                       sentry_queries=", ".join(f.key for f in filters))

    @asset(**args("issue_tags", "Each issue with its `__tags` values (kind `issue-tag`), per selected tag key."),
           required_resource_keys=resources, ins={"issues": AssetIn(key=names.key("sentry", "issues"))})
    def sentry_issue_tags(context: AssetExecutionContext,
                          issues: dict[str, list[Item]]) -> Output[dict[str, dict[str, list[Item]]]]:
        sentry, config, plan = _step(context, names)
        if not plan.issue_tag_keys:
            return _skipped({}, config.sha256, "no mapping resource of kind issue-tag")
        vanished = Vanished()
        key = tag_cache.cache_key(sentry.host, sentry.organization or "")
        cache, why_none = tag_cache.load(context.instance, key)
        full, why = tag_cache.plan(cache, why_none)
        reused: dict[tuple[str, str], list[Item]] = {}
        wanted_total = 0

        def reuse(wanted: dict[tuple[str, str], Item]) -> dict[tuple[str, str], list[Item]]:
            nonlocal wanted_total
            wanted_total = len(wanted)
            if cache is not None and not full:
                reused.update(cache.reusable(wanted))
            return reused

        rows, cost = _fetch(context, sentry, "issue tags", lambda c: fetch_issue_tags(
            c, issues, plan.issue_tag_keys, vanished, plan.environments_by_list, reuse))
        if vanished.items:
            context.log.warning(f"{len(vanished.items)} issues were deleted in Sentry during the fetch and are left out")
        tag_cache.save(context.instance, key, tag_cache.rebuilt(
            rows, time.time() if full or cache is None else cache.full_refresh_at))
        fetched = wanted_total - len(reused)
        summary = (f"full fetch: {why}" if full else
                   f"incremental: {len(reused)} reused, {fetched} fetched (issues whose {', '.join(tag_cache.CHANGE_FIELDS)} "
                   "moved, or new)")
        context.log.info(f"issue tags: {summary}")
        return _output(rows, config.sha256, cost, ["id", "status", "__tags"], vanished=len(vanished.items),
                       environments_by_list=", ".join(f.key for f in plan.environments_by_list) or "no",
                       tag_values_reused=len(reused), tag_values_fetched=fetched, tag_cache=summary)

    return [sentry_organization, sentry_project_tags, sentry_issues, sentry_issue_tags]


raw_assets = build_raw_assets()
