"""The reconciler: creates, sends nothing when nothing changed, deletes stale entities only under the safety rules."""

from __future__ import annotations

import asyncio
import gc
import copy
import json
import weakref
from datetime import datetime, timedelta, timezone

import pytest

from sentry_port_assets.emulators.port import Fault
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.datasource import Datasource
from sentry_port_assets.port.errors import PortServerError
from sentry_port_assets.port.policy import PublishPolicy
from sentry_port_assets.port.reconciler import Failure, reconcile
from sentry_port_assets.port.target import LocalCatalogTarget, PortApiTarget
from sentry_port_assets_tests import port_fixtures as fx

DEFAULTS = dict(
    blueprints_owned=fx.OWNED,
    merge=True,
    create_missing_related=True,
    deletion_threshold=0.9,
    allow_delete=True,
    blocked_reason=None,
)


@pytest.fixture
def catalog(tmp_path):
    cat = LocalCatalog(tmp_path / "catalog.sqlite")
    cat.create_blueprint(fx.PORT_USER)  # Port's own blueprint exists before us
    cat.upsert_entities("_user", [{"identifier": "admin@example.com", "title": "Admin", "properties": {"port_role": "Admin"}}])
    yield cat
    cat.close()


@pytest.fixture(params=["local", "api"])
def make_target(request, catalog):
    """A factory of fresh targets over `catalog`: directly, or through the Port emulator over real HTTP."""
    if request.param == "local":
        yield lambda: LocalCatalogTarget(catalog)
        return
    with fx.serve_port(catalog) as (url, state):
        factory = lambda: PortApiTarget(fx.client(url))  # noqa: E731
        factory.emulator = state
        yield factory


def run(make_target, entities, **overrides):
    options = {**DEFAULTS, "blueprints": fx.blueprints(), "blueprint_fragments": [fx.USER_FRAGMENT], "ensure_blueprints": True, **overrides}

    policy = PublishPolicy(
        owned=frozenset(options.pop("blueprints_owned")), merge=options.pop("merge"),
        create_missing_related=options.pop("create_missing_related"),
        deletion_threshold=options.pop("deletion_threshold"), blueprints=options.pop("blueprints"),
        fragments=options.pop("blueprint_fragments"), ensure_blueprints=options.pop("ensure_blueprints"))

    async def go():
        async with make_target() as target:
            return await reconcile(target, entities, policy, **options)

    return asyncio.run(go())


def everything():
    return fx.dataset() + [fx.port_user_link(i) for i in range(6)]


def test_first_run_creates_second_run_sends_nothing(catalog, make_target):
    target = make_target
    first = run(target, everything())
    meta = first.to_metadata()
    assert meta["failed"] == 0, meta["failures"]
    assert meta["per_blueprint"]["tUser"]["created"] == 6
    assert meta["per_blueprint"]["tIssue"]["created"] == 8
    assert meta["per_blueprint"]["_user"]["created"] == 6
    assert catalog.get_entity("tIssue", "ISSUE-1")["relations"]["assignee"] == "user1@example.com"
    assert catalog.get_entity("_user", "user2@example.com")["relations"]["sentry_user"] == "user2@example.com"

    emulator = getattr(make_target, "emulator", None)
    upsert_requests_before = emulator.stats.upsert_requests if emulator else 0
    second = run(target, everything())
    assert second.upserts_sent == 0
    if emulator:  # over HTTP: Port received no write at all
        assert emulator.stats.upsert_requests == upsert_requests_before
    assert second.total("unchanged") == len(everything())
    assert second.total("deleted") == 0

    # one property changes: exactly one upsert, counted as updated
    changed = everything()
    changed[0]["properties"]["role"] = "admin"
    third = run(target, changed)
    assert third.upserts_sent == 1 and third.total("updated") == 1


def test_merge_compares_only_fields_sent(catalog, make_target):
    target = make_target
    run(target, everything())
    # someone edits the _user entity in Port: our merge write does not own those fields
    catalog.upsert_entities("_user", [{"identifier": "user1@example.com", "title": "Renamed in Port", "properties": {"port_role": "Member"}}], merge=True)
    again = run(target, everything())
    assert again.upserts_sent == 0
    assert catalog.get_entity("_user", "user1@example.com")["title"] == "Renamed in Port"


def test_stale_deleted_only_in_owned_blueprints(catalog, make_target):
    target = make_target
    run(target, everything())
    fewer = [e for e in everything() if e["identifier"] not in ("ISSUE-3", "user5@example.com")]
    for e in fewer:  # user5 left the organization: no team lists them any more
        if e["blueprint"] == "tTeam":
            e["relations"]["members"] = [m for m in e["relations"]["members"] if m != "user5@example.com"]
        if e["identifier"] == "ISSUE-5":  # and their issue is unassigned
            e["relations"]["assignee"] = None
    report = run(target, fewer)
    assert report.deletes_performed, report.delete_skipped_reason
    assert catalog.get_entity("tIssue", "ISSUE-3") is None
    assert catalog.get_entity("tUser", "user5@example.com") is None
    # _user is written with merge but not owned: its entities, ours and Port's own, stay
    assert catalog.get_entity("_user", "user5@example.com") is not None
    assert catalog.get_entity("_user", "admin@example.com") is not None
    assert report.blueprints["_user"].stale == 0 and report.blueprints["_user"].deleted == 0
    assert report.blueprints["tIssue"].deleted == 1 and report.blueprints["tUser"].deleted == 1


def test_threshold_blocks_deletes(catalog, make_target):
    target = make_target
    run(target, everything())
    only_one = [fx.user(0)]
    report = run(target, only_one, deletion_threshold=0.5)
    assert not report.deletes_performed
    assert "entityDeletionThreshold" in report.delete_skipped_reason
    assert catalog.count("tIssue") == 8 and catalog.count("tUser") == 6
    assert report.to_metadata()["deletes"].startswith("skipped")


@pytest.mark.parametrize(
    "overrides, why",
    [
        ({"allow_delete": False}, "allow_delete"),
        ({"blocked_reason": "sentry/issues failed in this resync"}, "sentry/issues failed"),
    ],
)
def test_deletes_blocked_by_the_caller(catalog, make_target, overrides, why):
    target = make_target
    run(target, everything())
    report = run(target, [e for e in everything() if e["identifier"] != "ISSUE-7"], **overrides)
    assert report.stale_total == 1
    assert not report.deletes_performed and why in report.delete_skipped_reason
    assert catalog.count("tIssue") == 8


def test_empty_resync_deletes_nothing(catalog, make_target):
    target = make_target
    run(target, everything())
    report = run(target, [], deletion_threshold=1.0)
    assert not report.deletes_performed and "no entities" in report.delete_skipped_reason
    assert catalog.count("tUser") == 6


def test_an_entity_port_refuses_is_reported_and_does_not_block_other_deletes(catalog, make_target):
    target = make_target
    run(target, everything())
    broken = everything()
    broken = [e for e in broken if e["identifier"] != "ISSUE-7"]  # ISSUE-7 is now stale
    bad = next(e for e in broken if e["identifier"] == "ISSUE-2")
    bad["properties"]["status"] = "exploded"  # not in the enum: Port refuses it
    report = run(target, broken)
    meta = report.to_metadata()
    assert meta["failed"] == 1
    [failure] = meta["failures"]
    assert failure["identifier"] == "ISSUE-2" and failure["blueprint"] == "tIssue" and failure["status"] == 422
    assert "status" in failure["message"]
    # The resync's desired set was complete: the stale entity goes; the refused one keeps its last good version.
    assert report.deletes_performed
    assert catalog.get_entity("tIssue", "ISSUE-7") is None
    assert catalog.get_entity("tIssue", "ISSUE-2")["properties"]["status"] == "unresolved"


def test_a_server_error_on_an_upsert_blocks_deletes(catalog):
    with fx.serve_port(catalog, faults=[Fault("bulk_upsert", times=50)]) as (url, _):
        factory = lambda: PortApiTarget(fx.client(url, max_retries=1))  # noqa: E731
        first = everything()
        run(lambda: LocalCatalogTarget(catalog), first)
        changed = [e for e in first if e["identifier"] != "ISSUE-7"]
        next(e for e in changed if e["identifier"] == "ISSUE-2")["properties"]["count"] = 99
        with pytest.raises(PortServerError):  # the publish stops: nothing after it, deletes included, runs
            run(factory, changed)
    assert catalog.get_entity("tIssue", "ISSUE-7") is not None


def test_failures_that_are_not_the_entitys_block_deletes() -> None:
    assert Failure("a", "bp", "upsert", 422, "invalid_request", "bad").refused
    for status in (None, 500, 503, 429, 401, 408):
        assert not Failure("a", "bp", "upsert", status, "x", "y").refused, status
    assert not Failure("a", "bp", "delete", 422, "x", "y").refused


def test_relation_targets_written_first_without_create_missing(catalog, make_target):
    target = make_target
    entities = list(reversed(everything()))  # issues and teams come before the users they point at
    report = run(target, entities, create_missing_related=False)
    assert report.to_metadata()["failed"] == 0, report.failures
    assert catalog.count("tUser") == 6


def test_metadata_is_plain_data(catalog, make_target):
    import json

    report = run(make_target, everything())
    meta = report.to_metadata()
    assert json.loads(json.dumps(meta)) == meta
    assert {"created", "updated", "unchanged", "deleted", "failed", "per_blueprint", "failures"} <= meta.keys()


def test_duplicates_are_merged_not_sent_twice(catalog, make_target):
    target = make_target
    entities = everything() + [copy.deepcopy(fx.user(1))]
    report = run(target, entities)
    assert report.duplicates == 1 and report.blueprints["tUser"].created == 6


def test_related_entities_created_as_missing_are_not_stale(catalog, make_target):
    target = make_target
    # users are not produced (say their kind is filtered out), issues point at them: Port creates them as missing
    entities = [e for e in everything() if e["blueprint"] in ("tIssue", "tTeam")]
    run(target, entities)
    assert catalog.count("tUser") == 6
    again = run(target, entities)
    assert again.stale_total == 0 and again.upserts_sent == 0
    assert catalog.count("tUser") == 6


# -- ownership: what this integration wrote ($datasource), not whole blueprints ---------------------------------

def targets_for(catalog, url: str | None, datasource: Datasource):
    if url is None:
        return lambda: LocalCatalogTarget(catalog, datasource)
    return lambda: PortApiTarget(fx.client(url, user_agent=datasource.user_agent), datasource)


@pytest.mark.parametrize("via", ["local", "api"])
def test_entities_people_or_other_integrations_wrote_are_never_deleted(catalog, via):
    ours = Datasource("sentry-acme")
    with fx.serve_port(catalog) as (url, _):
        target = targets_for(catalog, url if via == "api" else None, ours)
        run(target, everything())
        # Made in Port's UI (no integration's datasource), and written by Port's own Sentry integration (Ocean).
        catalog.upsert_entities("tIssue", [fx.issue(90, 0, None)], create_missing_related=True, datasource=None)
        catalog.upsert_entities("tIssue", [fx.issue(91, 1, None)], create_missing_related=True,
                                datasource="port-ocean/sentry/0.1.190/my-sentry/exporter")
        fewer = [e for e in everything() if e["identifier"] != "ISSUE-3"]
        report = run(target, fewer, written_before=datetime.now(timezone.utc).isoformat())
    assert report.deletes_performed and report.blueprints["tIssue"].deleted == 1
    assert catalog.get_entity("tIssue", "ISSUE-3") is None, "what we wrote and no longer produce is deleted"
    assert catalog.get_entity("tIssue", "ISSUE-90") is not None and catalog.get_entity("tIssue", "ISSUE-91") is not None


def test_two_instances_for_two_organizations_share_one_port(catalog):
    eu, us = Datasource("sentry-acme-eu"), Datasource("sentry-acme-us")
    eu_issues = [fx.issue(n, 0, None) for n in range(0, 4)]
    us_issues = [fx.issue(n, 1, None) for n in range(10, 14)]
    base = [e for e in everything() if e["blueprint"] != "tIssue"]
    with fx.serve_port(catalog) as (url, _):
        run(targets_for(catalog, url, eu), base + eu_issues)
        run(targets_for(catalog, url, us), us_issues)
        # Each resync of one organization deletes its own stale issue, never the other organization's issues.
        eu_report = run(targets_for(catalog, url, eu), base + eu_issues[1:],
                        written_before=datetime.now(timezone.utc).isoformat())
        us_report = run(targets_for(catalog, url, us), us_issues[:-1],
                        written_before=datetime.now(timezone.utc).isoformat())
    assert eu_report.blueprints["tIssue"].deleted == 1 and us_report.blueprints["tIssue"].deleted == 1
    held = {e["identifier"] for e in catalog.entities("tIssue")}
    assert held == {e["identifier"] for e in eu_issues[1:] + us_issues[:-1]}


def test_an_entity_written_during_the_resync_is_not_stale(catalog):
    ours = Datasource("sentry-acme")
    target = targets_for(catalog, None, ours)
    run(target, everything())
    # the resync began a moment ago; a webhook run writes a new issue while it is still fetching
    resync_began = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    catalog.upsert_entities("tIssue", [fx.issue(77, 0, None)], create_missing_related=True,
                            datasource=ours.user_agent)
    report = run(target, everything(), written_before=resync_began)
    assert catalog.get_entity("tIssue", "ISSUE-77") is not None and report.blueprints["tIssue"].deleted == 0
    later = run(target, everything(), written_before=datetime.now(timezone.utc).isoformat())
    assert later.blueprints["tIssue"].deleted == 1, "the next resync, which does not produce it, deletes it"


CALC_ISSUE = {**fx.ISSUE, "identifier": "tIssueCalc",
              "calculationProperties": {"label": {"title": "Label", "type": "string",
                                                  "calculation": '.identifier + " (" + .properties.status + ")"'}}}


@pytest.mark.parametrize("via", ["local", "api"])
def test_calculated_properties_never_look_like_changes(catalog, via):
    """With enableMergeEntity false every held property is compared: Port's computed values must not count."""
    catalog.create_blueprint({**CALC_ISSUE, "relations": {}})
    issues = [{**fx.issue(n, 0, None), "blueprint": "tIssueCalc", "relations": {}} for n in range(5)]
    with fx.serve_port(catalog) as (url, emulator):
        target = targets_for(catalog, url if via == "api" else None, Datasource("sentry"))
        run(target, everything() + issues, merge=False)
        [computed] = catalog.search("tIssueCalc", limit=1)[0]
        assert computed["properties"]["label"] == "ISSUE-0 (unresolved)", "the catalog computes it, as Port does"
        rerun = run(target, everything() + issues, merge=False)
    assert rerun.upserts_sent == 0 and rerun.blueprints["tIssueCalc"].unchanged == 5


@pytest.mark.parametrize("via", ["local", "api"])
def test_deleting_never_cascades_into_what_we_do_not_own(catalog, via):
    """Port deletes dependents (entities with a relation to the deleted one, in any blueprint, `_user` included)
    when asked to. A member who leaves must not take their Port user, nor what people made, with them."""
    with fx.serve_port(catalog) as (url, _):
        target = targets_for(catalog, url if via == "api" else None, Datasource("sentry"))
        run(target, everything())
        catalog.create_blueprint({"identifier": "oncall", "title": "On-call", "relations": {
            "person": {"target": "tUser", "many": False, "required": True}}, "schema": {"properties": {}, "required": []}})
        catalog.upsert_entities("oncall", [{"identifier": "rota-1", "relations": {"person": "user4@example.com"}}],
                                datasource=None)  # made in Port's UI
        gone = {"user3@example.com", "user4@example.com"}
        fewer = [e for e in everything() if not (e["blueprint"] == "tUser" and e["identifier"] in gone)]
        for e in fewer:
            if e["blueprint"] == "tTeam":
                e["relations"]["members"] = [m for m in e["relations"]["members"] if m not in gone]
            if e["blueprint"] == "tIssue" and json.dumps(e["relations"].get("assignee")).count("user3@") + \
                    json.dumps(e["relations"].get("assignee")).count("user4@"):
                e["relations"]["assignee"] = None
        report = run(target, [e for e in fewer if not (e["blueprint"] == "_user" and e["identifier"] in gone)],
                     written_before=datetime.now(timezone.utc).isoformat())
    assert catalog.get_entity("tUser", "user3@example.com") is None, "our own stale entity is deleted"
    assert catalog.get_entity("_user", "user3@example.com") is not None, "its Port user is not"
    assert catalog.get_entity("oncall", "rota-1") is not None, "nor what people made that points at it"
    assert catalog.get_entity("tUser", "user4@example.com") is not None and any(
        f.identifier == "user4@example.com" and f.operation == "delete" for f in report.failures), \
        "Port refuses the delete of an entity something else requires, and the refusal is reported"


class _Tracked(dict):
    """A held entity whose lifetime the test can watch (a plain dict cannot be weakly referenced)."""

    __hash__ = object.__hash__  # identity, for the WeakSet


def test_held_entities_are_compared_page_by_page_not_kept(catalog, make_target):
    """Memory is bounded by a page: a held entity is compared while its page is current and then dropped, so reading
    100,000 entities from Port never holds them all (benchmarks/bench_publish.py measures the memory)."""
    entities = fx.dataset(issues=40) + [fx.port_user_link(i) for i in range(6)]
    assert run(make_target, entities).to_metadata()["failed"] == 0
    alive: weakref.WeakSet[_Tracked] = weakref.WeakSet()
    most_alive = 0

    def tracking() -> object:
        target = make_target()
        inner = target.entity_pages

        async def small_pages(blueprint: str):
            nonlocal most_alive
            async for page in inner(blueprint):
                for start in range(0, len(page), 5):
                    gc.collect()
                    most_alive = max(most_alive, len(alive))
                    chunk = [_Tracked(e) for e in page[start:start + 5]]
                    if blueprint == "tIssue":  # tUser is a search relation target: kept whole by design
                        alive.update(chunk)
                    yield chunk

        target.entity_pages = small_pages
        return target

    again = run(tracking, entities)
    gc.collect()
    assert again.upserts_sent == 0 and again.to_metadata()["unchanged"] == len(entities)
    assert again.blueprints["tIssue"].held == 40
    assert most_alive <= 5, f"{most_alive} held tIssue entities were alive at once; a page is 5"
    assert len(alive) == 0
