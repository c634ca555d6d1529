"""PortClient against the Port emulator over real HTTP on loopback: auth, blueprints, batching, retries, limits."""

from __future__ import annotations

import asyncio
import time

import pytest

from sentry_port_assets.emulators.port import Fault
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.errors import PortAuthError, PortConnectionError, PortServerError
from sentry_port_assets_tests import port_fixtures as fx


@pytest.fixture
def catalog(tmp_path):
    cat = LocalCatalog(tmp_path / "catalog.sqlite")
    yield cat
    cat.close()


@pytest.fixture
def users_bp(catalog):
    catalog.create_blueprint(fx.USER)
    return catalog


def call(coro_fn, url, **client_options):
    async def go():
        async with fx.client(url, **client_options) as port:
            return await coro_fn(port)

    return asyncio.run(go())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_refreshed_once_on_401(users_bp):
    with fx.serve_port(users_bp) as (url, emulator):

        async def scenario(port):
            await port.get_blueprint("tUser")
            emulator.expire_tokens()  # Port forgets the token early: the next call gets a 401
            return await port.get_blueprint("tUser")

        assert call(scenario, url)["identifier"] == "tUser"
        assert emulator.stats.tokens_issued == 2
        assert emulator.stats.statuses[401] == 1


def test_token_refreshed_before_it_expires(users_bp):
    clock = FakeClock()
    with fx.serve_port(users_bp, token_ttl_seconds=100, clock=clock) as (url, emulator):

        async def scenario(port):
            await port.get_blueprint("tUser")
            clock.now += 95  # inside the refresh margin, before Port's expiry
            await port.get_blueprint("tUser")
            clock.now += 5
            return await port.get_blueprint("tUser")

        call(scenario, url, clock=clock)
        assert emulator.stats.tokens_issued == 2
        assert emulator.stats.statuses[401] == 0


def test_a_second_401_is_an_auth_error_without_secrets(users_bp):
    with fx.serve_port(users_bp, faults=[Fault("blueprint_get", status=401, times=2)]) as (url, emulator):

        async def scenario(port):
            with pytest.raises(PortAuthError) as info:
                await port.get_blueprint("tUser")
            return info.value, port._token

        error, token = call(scenario, url)
        text = str(error) + repr(error)
        assert "X-Trace-Id: " in text and error.trace_id and error.trace_id in text
        assert fx.CLIENT_SECRET not in text and token not in text
        assert emulator.stats.tokens_issued == 2


def test_wrong_credentials_name_the_env_vars(users_bp):
    from sentry_port_assets.port.client import PortClient

    with fx.serve_port(users_bp) as (url, _):

        async def go():
            async with PortClient(fx.CLIENT_ID, "wrong-" + fx.CLIENT_SECRET, url) as port:
                await port.get_blueprint("tUser")

        with pytest.raises(PortAuthError) as info:
            asyncio.run(go())
        assert "PORT_CLIENT_SECRET" in str(info.value) and "X-Trace-Id" in str(info.value)
        assert fx.CLIENT_SECRET not in str(info.value)


def test_ensure_blueprints_creates_without_relations_then_patches(catalog):
    existing_user = {**fx.PORT_USER, "relations": {"manager": {"target": "_user", "many": False, "required": False}}}
    catalog.create_blueprint(existing_user)
    with fx.serve_port(catalog) as (url, emulator):
        report = call(lambda port: port.ensure_blueprints(fx.blueprints(), [fx.USER_FRAGMENT]), url)
        # tTeam comes first and points at tUser: creating it with its relations would have been refused
        assert report.created == ["tTeam", "tUser", "tIssue"]
        assert emulator.stats.requests["blueprint_create"] == 3
        assert catalog.get_blueprint("tIssue")["relations"].keys() == {"team", "assignee"}
        assert catalog.get_blueprint("tTeam")["relations"]["members"]["target"] == "tUser"
        # Port's _user only gained the relation the mapping needs; nothing else changed
        user = catalog.get_blueprint("_user")
        assert report.added == {"_user": ["relations.sentry_user"]}
        assert user["relations"].keys() == {"manager", "sentry_user"}
        assert user["schema"] == fx.PORT_USER["schema"] and user["title"] == "User"

        # a user edited our blueprint in Port: a rerun changes nothing
        catalog.patch_blueprint("tUser", {"title": "People", "schema": {"properties": {"email": {"type": "string"}}, "required": []}})
        patches = emulator.stats.requests["blueprint_patch"]
        again = call(lambda port: port.ensure_blueprints(fx.blueprints(), [fx.USER_FRAGMENT]), url)
        assert again.created == [] and again.added == {"tUser": ["properties.active", "properties.role"]}
        assert catalog.get_blueprint("tUser")["title"] == "People"
        assert emulator.stats.requests["blueprint_patch"] == patches + 1
        third = call(lambda port: port.ensure_blueprints(fx.blueprints(), [fx.USER_FRAGMENT]), url)
        assert third.created == [] and third.added == {}
        assert emulator.stats.requests["blueprint_patch"] == patches + 1


def test_batches_at_most_20_entities_and_1_mib(users_bp):
    with fx.serve_port(users_bp) as (url, emulator):
        results = call(lambda port: port.upsert_entities("tUser", [fx.user(i) for i in range(45)], merge=False, create_missing_related=False), url)
        assert all(r.ok and r.created for r in results) and len(results) == 45
        assert emulator.stats.requests["bulk_upsert"] == 3 and emulator.stats.max_batch == 20

        big = [{**fx.user(i), "properties": {"role": "x" * 300_000}} for i in range(7)]
        results = call(lambda port: port.upsert_entities("tUser", big, merge=False, create_missing_related=False), url)
        assert all(r.ok for r in results)
        assert emulator.stats.max_body_bytes <= 1024 * 1024 and emulator.stats.bodies_413 == 0
        assert emulator.stats.requests["bulk_upsert"] == 3 + 3  # 3 + 3 + 1 entities of ~300 kB

        # an entity that alone is over 1 MiB is reported, never sent
        huge = [{**fx.user(99), "properties": {"role": "x" * (1024 * 1024)}}]
        [result] = call(lambda port: port.upsert_entities("tUser", huge, merge=False, create_missing_related=False), url)
        assert not result.ok and result.status == 413 and result.identifier == "user99@example.com"
        assert emulator.stats.requests["bulk_upsert"] == 6


def test_413_splits_the_batch(users_bp):
    with fx.serve_port(users_bp, max_body_bytes=256 * 1024) as (url, emulator):
        entities = [{**fx.user(i), "properties": {"role": "y" * 60_000}} for i in range(16)]  # ~1 MB in all
        results = call(
            lambda port: port.upsert_entities("tUser", entities, merge=False, create_missing_related=False),
            url,
            max_body_bytes=8 * 1024 * 1024,  # a client that believes a larger limit: Port's 413 corrects it
        )
        assert [r.identifier for r in results] == [e["identifier"] for e in entities]
        assert all(r.ok for r in results)
        assert emulator.stats.bodies_413 == 1 + 2  # 16 -> 2 x 8 -> 4 x 4
        assert users_bp.count("tUser") == 16


def test_207_per_entity_errors_are_reported(users_bp):
    with fx.serve_port(users_bp) as (url, emulator):
        entities = [fx.user(0), {"identifier": "bad id!", "properties": {}}, fx.user(2), {"identifier": "u3", "properties": {"active": "no"}}]
        results = call(lambda port: port.upsert_entities("tUser", entities, merge=False, create_missing_related=False), url)
        assert emulator.stats.statuses[207] == 1
        assert [r.ok for r in results] == [True, False, True, False]
        bad = results[3]
        assert bad.identifier == "u3" and bad.status == 422 and bad.error == "blueprint_schema_mismatch" and "active" in bad.message
        assert bad.trace_id


def test_one_entity_port_refuses_does_not_sink_the_other_nineteen(users_bp):
    """Port checks a bulk body against its schema before writing: one identifier with a space (a Sentry environment
    named `staging eu`) makes the whole request a 422. The client halves the batch until every valid entity lands."""
    with fx.serve_port(users_bp) as (url, emulator):
        entities = [fx.user(i) for i in range(20)]
        entities[13] = {**fx.user(13), "identifier": "python-fastapi-staging eu"}
        results = call(lambda port: port.upsert_entities("tUser", entities, merge=False, create_missing_related=False),
                       url)
        assert emulator.stats.requests_refused_whole >= 1, "Port refuses the whole request, not the entity alone"
        assert [r.ok for r in results] == [i != 13 for i in range(20)]
        refused = results[13]
        assert refused.identifier == "python-fastapi-staging eu" and refused.status == 422
        assert "must match pattern" in refused.message
        assert users_bp.count("tUser") == 19


def test_ports_identifier_pattern_exactly(users_bp):
    with fx.serve_port(users_bp) as (url, _):
        entities = [{**fx.user(1), "identifier": "o'brien@example.com"}, {**fx.user(2), "identifier": "dev٣@example.com"},
                    {**fx.user(3), "identifier": "José.Álvarez@example.com"}, {**fx.user(4), "identifier": ".."}]
        results = call(lambda port: port.upsert_entities("tUser", entities, merge=False, create_missing_related=False),
                       url)
        assert [r.ok for r in results] == [True, False, True, False], "apostrophes and letters of any script are " \
            "allowed; non-ASCII digits and '..' are not"


def test_429_5xx_timeouts_and_dropped_connections_are_retried(users_bp):
    faults = [
        Fault("bulk_upsert", kind="status", status=500, times=2),
        Fault("bulk_upsert", kind="status", status=503, times=1),
        Fault("bulk_upsert", kind="drop", times=1),
        Fault("bulk_upsert", kind="429", times=3, delay=0.02),
        Fault("bulk_upsert", kind="slow", delay=1.0, times=1),
        Fault("search", kind="drop", times=1),
    ]
    with fx.serve_port(users_bp, faults=faults) as (url, emulator):

        async def scenario(port):
            results = await port.upsert_entities("tUser", [fx.user(i) for i in range(60)], merge=False, create_missing_related=False)
            held = await port.search_entities("tUser")
            return results, held, port.stats

        results, held, stats = call(scenario, url, timeout=0.4, max_concurrency=1)
        assert all(r.ok for r in results) and len(held) == 60
        assert all(f.fired == f.times for f in faults), [(f.route, f.kind, f.fired) for f in faults]
        assert stats.http_429 == 3
        assert stats.retries == 2 + 1 + 1 + 1 + 1  # 5xx, drop, timeout, search drop
        assert users_bp.count("tUser") == 60


def test_retries_are_bounded_and_errors_carry_the_trace_id(users_bp):
    with fx.serve_port(users_bp, faults=[Fault("blueprint_get", status=502, times=100)]) as (url, emulator):

        async def scenario(port):
            with pytest.raises(PortServerError) as info:
                await port.get_blueprint("tUser")
            return info.value, port._token

        error, token = call(scenario, url, max_retries=3)
        assert emulator.stats.requests["blueprint_get"] == 4
        assert error.status == 502 and error.trace_id and error.trace_id in str(error)
        assert fx.CLIENT_SECRET not in str(error) and token not in str(error)

    # nothing listens any more: connection errors, bounded too
    async def gone(port):
        with pytest.raises(PortConnectionError) as info:
            await port.get_blueprint("tUser")
        return info.value

    error = call(gone, url, max_retries=2)
    assert "after 3 attempts" in str(error) and fx.CLIENT_SECRET not in str(error)


@pytest.mark.parametrize("reset_header", ["seconds", "epoch"])
def test_rate_limit_headers_are_respected(users_bp, reset_header):
    limit, window, n = 10, 0.2, 60
    with fx.serve_port(users_bp, rate_limit=limit, window_seconds=window, reset_header=reset_header) as (url, emulator):

        async def scenario(port):
            await port.get_blueprint("tUser")  # the token and a first answer teach the client the window
            started = time.monotonic()
            await asyncio.gather(*(port.get_blueprint("tUser") for _ in range(n)))
            return time.monotonic() - started, port.stats

        elapsed, stats = call(scenario, url, max_concurrency=8)
        assert emulator.stats.requests["blueprint_get"] - emulator.stats.http_429 == n + 1
        # A governed client barely sees 429s: a window boundary can still race, more often on a loaded machine
        # (4 of 61 seen under the whole suite). Without the governor most of the 60 would be refused.
        assert emulator.stats.http_429 <= 6, emulator.stats.http_429
        assert elapsed >= (n // limit - 1) * window * 0.9


def test_search_pages_and_bulk_delete_chunks(users_bp):
    users_bp.upsert_entities("tUser", [fx.user(i) for i in range(250)])
    with fx.serve_port(users_bp) as (url, emulator):

        async def scenario(port):
            held = await port.search_entities("tUser", page_size=100)
            deleted = await port.delete_entities("tUser", [e["identifier"] for e in held], delete_dependents=False)
            return held, deleted

        held, deleted = call(scenario, url)
        assert len(held) == 250 == len({e["identifier"] for e in held})
        assert emulator.stats.requests["search"] == 3
        assert emulator.stats.requests["bulk_delete"] == 3 and len(deleted.deleted) == 250
        assert users_bp.count("tUser") == 0


def test_refused_delete_is_reported_per_id(catalog):
    catalog.create_blueprint({"identifier": "parent", "schema": {"properties": {}}})
    catalog.create_blueprint({"identifier": "child", "schema": {"properties": {}}, "relations": {"p": {"target": "parent", "required": True}}})
    catalog.upsert_entities("parent", [{"identifier": "p1"}, {"identifier": "p2"}])
    catalog.upsert_entities("child", [{"identifier": "c1", "relations": {"p": "p1"}}])
    with fx.serve_port(catalog) as (url, _):
        result = call(lambda port: port.delete_entities("parent", ["p1", "p2"], delete_dependents=False), url)
        assert result.deleted == [] and {f.identifier for f in result.failures} == {"p1", "p2"}
        assert all(f.error == "has_dependents" and f.trace_id for f in result.failures)
        result = call(lambda port: port.delete_entities("parent", ["p1", "p2"], delete_dependents=True), url)
        assert sorted(result.deleted) == ["p1", "p2"] and catalog.count("child") == 0
