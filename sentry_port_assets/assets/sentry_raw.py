"""Raw Sentry assets (group `sentry`): exactly what the API returns, enriched the way the mapping expects.

Each asset fetches only what the active mapping needs; when no mapping resource reads its kind it makes no
request and says so in its metadata. Shapes of the stored values: see `assets/plan.py`. Each records the mapping snapshot it fetched for
(`mapping_sha256`).
"""


import asyncio
import time
from functools import partial
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from dagster import (AssetExecutionContext, AssetIn, AssetKey, AssetOut, AssetsDefinition, AssetSpec, MetadataValue,
                     Output, asset, multi_asset)

from sentry_port_assets.assets import fetch_state, tag_cache
from sentry_port_assets.assets.describe import Links, raw_metadata
from sentry_port_assets.assets.mapping_step import MAPPING_SHA, mapping_for_step
from sentry_port_assets.assets.metadata import preview_table
from sentry_port_assets.assets.plan import FetchPlan
from sentry_port_assets.assets.presentation import PLAIN, Presentation
from sentry_port_assets.names import DEFAULT, Names
from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.sentry.client import SentryClient, cost_line, progress_reporter
from sentry_port_assets.kinds import RAWS, Raw
from sentry_port_assets.sentry import fetch as fetch_module
from sentry_port_assets.sentry.fetch import Vanished, fetch_issue_tags
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


def _params_text(params: dict[str, Any]) -> str:
    """What a fetch was asked for, in words ("keys: environment"), for the asset's metadata."""
    def show(value: Any) -> str:
        if value is None:  # `fields`: every field of the item
            return "all"
        if isinstance(value, (list, tuple, set, frozenset)):
            return ", ".join(show(v) for v in sorted(value, key=str)) or "none"
        return getattr(value, "key", str(value))  # an IssueFilter or ReleaseFilter by its key
    return "; ".join(f"{name.replace('_', ' ')}: {show(value)}" for name, value in params.items())


def _skip_reason(plan: FetchPlan, raw: str) -> str:
    return "no mapping resource of kind " + " or ".join(plan.readers(raw))


def build_raw_assets(names: Names = DEFAULT, links: Links = Links(),
                     present: Presentation = PLAIN) -> list[AssetsDefinition]:
    """The raw Sentry assets of one instance (`names`: its keys, groups and resource keys; `links`: where its Sentry
    organization is; `present`: its owners, tags, group and translation), one per `kinds.RAWS` entry: the roots in one
    step, each other one reading its upstream raw asset, and the custom ones (the issue tags' cache) their own way."""
    resources = {names.resource("sentry"), names.resource("mapping")}

    def base(name: str) -> AssetSpec:
        return AssetSpec(key=names.key("sentry", name), group_name=names.group(GROUP), kinds=KINDS,
                         description=RAWS[name].description, metadata=raw_metadata(name, links))

    def spec(name: str) -> AssetSpec:
        return present.spec(base(name))

    def args(name: str) -> dict[str, Any]:
        return present.asset_args(base(name))

    roots = [raw for raw in RAWS.values() if raw.upstream is None]

    @multi_asset(
        name=names.job("sentry_organization"),
        required_resource_keys=resources,
        outs={_name(names.key("sentry", raw.name)): AssetOut.from_spec(spec(raw.name), is_required=False)
              for raw in roots},
        can_subset=True,
    )
    def sentry_organization(context: AssetExecutionContext) -> Iterator[Output[Any]]:
        """The organization's roots in one step, fetched concurrently (members, teams, projects, …).

        One step rather than one each: it is the only root of the graph, so a mapping that does not load fails it
        once, before any Sentry request, and every asset downstream is skipped instead of failing with the same
        error."""
        sentry, config, plan = _step(context, names)
        selected = context.selected_asset_keys
        sentry.warn_if_demo(context.log)
        for warning in config.warnings:  # once per run: this is the graph's root
            context.log.warning(f"mapping: {warning}")
        fetches: dict[str, Any] = {}
        vanished = Vanished()
        for raw in roots:
            if names.key("sentry", raw.name) not in selected:
                continue
            if not plan.needed(raw.name):
                yield _skipped([], config.sha256, _skip_reason(plan, raw.name),
                               output_name=_name(names.key("sentry", raw.name)))
                continue
            read = getattr(fetch_module, raw.fetch)
            fetches[raw.name] = _fetch_async(context, sentry, raw.name.replace("_", " "),
                                             partial(read, params=plan.params(raw.name), upstream=None,
                                                     vanished=vanished))

        async def run_all() -> list[Any]:
            return list(await asyncio.gather(*fetches.values(), return_exceptions=True))

        outcomes = dict(zip(fetches, asyncio.run(run_all()) if fetches else []))
        for name, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                continue
            value, cost = outcome
            yield _output(value, config.sha256, cost, RAWS[name].preview, output_name=_name(names.key("sentry", name)),
                          fetched_with=_params_text(plan.params(name)), vanished=len(vanished.items))
        failed = [outcome for outcome in outcomes.values() if isinstance(outcome, BaseException)]
        if failed:  # what was fetched is recorded above; the step still fails, so nothing downstream runs on a gap
            raise failed[0]

    def dependent(raw: Raw) -> AssetsDefinition:
        @asset(**args(raw.name), required_resource_keys=resources,
               ins={"upstream": AssetIn(key=names.key("sentry", raw.upstream or ""))})
        def _asset(context: AssetExecutionContext, upstream: Any) -> Output[Any]:
            sentry, config, plan = _step(context, names)
            if not plan.needed(raw.name):
                return _skipped({}, config.sha256, _skip_reason(plan, raw.name))
            vanished = Vanished()
            read = partial(getattr(fetch_module, raw.fetch), params=plan.params(raw.name), upstream=upstream,
                           vanished=vanished)
            extra: dict[str, Any] = {}
            if raw.keeps_state:
                key = fetch_state.entry_key(f"fetch_state/{raw.name}", sentry.host, sentry.organization or "")
                state, last_full = fetch_state.begin(context.instance, key)
                value, cost = _fetch(context, sentry, raw.name.replace("_", " "), partial(read, state=state))
                fetch_state.finish(context.instance, key, state, last_full)
                context.log.info(f"{raw.name.replace('_', ' ')}: {state.summary}")
                extra = {"incremental": MetadataValue.text(state.summary), "full_read": state.full}
            else:
                value, cost = _fetch(context, sentry, raw.name.replace("_", " "), read)
            if vanished.items:
                context.log.warning(f"{len(vanished.items)} items were deleted in Sentry during the fetch and are "
                                    f"left out: {', '.join(vanished.items[:5])}")
            if vanished.notes:
                context.log.info(f"{raw.name.replace('_', ' ')}: {'; '.join(vanished.notes)}")
                extra["read_from"] = MetadataValue.text("; ".join(vanished.notes))
            return _output(value, config.sha256, cost, raw.preview, fetched_with=_params_text(plan.params(raw.name)),
                           vanished=len(vanished.items), **extra)

        return _asset

    customs = {"issue_tags": issue_tags_asset}
    return [sentry_organization,
            *(customs[raw.name](names, args(raw.name), resources) if raw.custom else dependent(raw)
              for raw in RAWS.values() if raw.upstream is not None)]


def issue_tags_asset(names: Names, attributes: dict[str, Any], resources: set[str]) -> AssetsDefinition:
    """`sentry/issue_tags`: the per-issue tag values, reusing the tag cache (`tag_cache.py`) between resyncs."""

    @asset(**attributes, required_resource_keys=resources, ins={"issues": AssetIn(key=names.key("sentry", "issues"))})
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
        choices = "; ".join(str(c) for c in plan.tag_values)
        context.log.info(f"issue tags: {choices}; {summary}")
        return _output(rows, config.sha256, cost, ["id", "status", "__tags"], vanished=len(vanished.items),
                       tag_values=choices,
                       environments_by_list=", ".join(f.key for f in plan.environments_by_list) or "no",
                       tag_values_reused=len(reused), tag_values_fetched=fetched, tag_cache=summary)

    return sentry_issue_tags


raw_assets = build_raw_assets()
