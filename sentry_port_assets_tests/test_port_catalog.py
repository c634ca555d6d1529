"""The local catalog keeps Port's semantics: blueprints, upsert/merge, relations, search, delete with dependents."""

from __future__ import annotations

import pytest

from sentry_port_assets.port.catalog import CatalogError, LocalCatalog
from sentry_port_assets_tests import port_fixtures as fx


@pytest.fixture
def catalog(tmp_path):
    cat = LocalCatalog(tmp_path / "catalog.sqlite")
    for bp in fx.blueprints():
        cat.create_blueprint({k: v for k, v in bp.items() if k != "relations"})
    for bp in fx.blueprints():
        if bp["relations"]:
            cat.patch_blueprint(bp["identifier"], {"relations": bp["relations"]})
    yield cat
    cat.close()


def test_blueprint_create_refuses_duplicates_and_unknown_relation_targets(tmp_path):
    with LocalCatalog(tmp_path / "c.sqlite") as cat:
        with pytest.raises(CatalogError) as missing_target:
            cat.create_blueprint(fx.ISSUE)  # its relation targets do not exist yet
        assert missing_target.value.status == 404
        cat.create_blueprint(fx.USER)
        with pytest.raises(CatalogError) as taken:
            cat.create_blueprint(fx.USER)
        assert taken.value.status == 409
        cat.patch_blueprint("tUser", {"title": "People"})
        assert cat.get_blueprint("tUser")["title"] == "People"
        assert cat.get_blueprint("tUser")["schema"]["properties"] == fx.USER["schema"]["properties"]


def test_upsert_replace_versus_merge(catalog):
    [first] = catalog.upsert_entities("tUser", [fx.user(1)])
    assert first.ok and first.created
    # merge=True: only the fields sent change; properties merged key by key
    [merged] = catalog.upsert_entities("tUser", [{"identifier": "user1@example.com", "properties": {"role": "admin"}}], merge=True)
    assert merged.ok and not merged.created
    stored = catalog.get_entity("tUser", "user1@example.com")
    assert stored["title"] == "User 1"
    assert stored["properties"] == {"email": "user1@example.com", "active": True, "role": "admin"}
    # merge=False: the entity is replaced
    catalog.upsert_entities("tUser", [{"identifier": "user1@example.com", "properties": {"role": "owner"}}], merge=False)
    stored = catalog.get_entity("tUser", "user1@example.com")
    assert stored["title"] is None
    assert stored["properties"] == {"role": "owner"}


def test_validation_is_per_entity(catalog):
    results = catalog.upsert_entities(
        "tUser",
        [
            fx.user(1),
            {"identifier": "bad one", "properties": {}},  # space: invalid identifier
            {"identifier": "u2", "properties": {"nope": 1}},  # not in schema
            {"identifier": "u3", "properties": {"active": "yes"}},  # wrong type
            fx.user(4),
        ],
    )
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert {r.status for r in results if not r.ok} == {422}
    assert catalog.count("tUser") == 2
    # a required property missing on create
    [r] = catalog.upsert_entities("tIssue", [{"identifier": "I-1", "properties": {}}])
    assert not r.ok and "status" in r.message


def test_relations_missing_related_and_create_missing(catalog):
    [refused] = catalog.upsert_entities("tTeam", [fx.team(1, [1, 2])])
    assert not refused.ok and refused.status == 404 and "user1@example.com" in refused.message
    assert catalog.count("tUser") == 0
    [ok] = catalog.upsert_entities("tTeam", [fx.team(1, [1, 2])], create_missing_related=True)
    assert ok.ok
    assert sorted(e["identifier"] for e in catalog.entities("tUser")) == ["user1@example.com", "user2@example.com"]
    assert catalog.get_entity("tTeam", "team-1")["relations"]["members"] == ["user1@example.com", "user2@example.com"]


def test_search_relations_resolved_like_port(catalog):
    catalog.upsert_entities("tUser", [fx.user(1), fx.user(2, role="admin"), fx.user(3, role="admin")])
    catalog.upsert_entities("tTeam", [fx.team(0, [])])

    def with_assignee(rules, combinator="and"):
        return {
            "identifier": "I-1",
            "properties": {"status": "unresolved"},
            "relations": {"team": "team-0", "assignee": {"combinator": combinator, "rules": rules}},
        }

    [by_id] = catalog.upsert_entities("tIssue", [with_assignee([{"property": "$identifier", "operator": "=", "value": "user2@example.com"}])])
    assert by_id.ok and by_id.entity["relations"]["assignee"] == "user2@example.com"
    [by_title] = catalog.upsert_entities("tIssue", [with_assignee([{"property": "$title", "operator": "contains", "value": "er 3"}])])
    assert by_title.entity["relations"]["assignee"] == "user3@example.com"
    [by_in] = catalog.upsert_entities(
        "tIssue",
        [with_assignee([{"property": "role", "operator": "=", "value": "admin"}, {"property": "email", "operator": "in", "value": ["user3@example.com"]}])],
    )
    assert by_in.entity["relations"]["assignee"] == "user3@example.com"
    # two matches for a single relation: refused, and the stored entity is untouched
    [ambiguous] = catalog.upsert_entities("tIssue", [with_assignee([{"property": "role", "operator": "=", "value": "admin"}])])
    assert not ambiguous.ok and "matched 2" in ambiguous.message
    [none] = catalog.upsert_entities("tIssue", [with_assignee([{"property": "email", "operator": "containsAny", "value": ["nobody"]}])])
    assert not none.ok and "matched 0" in none.message
    assert catalog.get_entity("tIssue", "I-1")["relations"]["assignee"] == "user3@example.com"
    # a many relation takes every match
    [team] = catalog.upsert_entities(
        "tTeam",
        [{"identifier": "team-0", "relations": {"members": {"combinator": "or", "rules": [{"property": "role", "operator": "=", "value": "admin"}]}}}],
        merge=True,
    )
    assert team.entity["relations"]["members"] == ["user2@example.com", "user3@example.com"]


def test_search_paginates(catalog):
    catalog.upsert_entities("tUser", [fx.user(i) for i in range(25)])
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = catalog.search("tUser", None, limit=10, from_=cursor)
        seen += [e["identifier"] for e in page]
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 25 == len(set(seen))
    admins, nxt = catalog.search("tUser", {"combinator": "and", "rules": [{"property": "$identifier", "operator": "in", "value": ["user3@example.com", "user7@example.com"]}]})
    assert [e["identifier"] for e in admins] == ["user3@example.com", "user7@example.com"] and nxt is None


def test_delete_with_dependents_is_all_or_nothing(tmp_path):
    with LocalCatalog(tmp_path / "d.sqlite") as cat:
        cat.create_blueprint({"identifier": "parent", "schema": {"properties": {}}})
        cat.create_blueprint(
            {"identifier": "child", "schema": {"properties": {}}, "relations": {"parent": {"target": "parent", "required": True, "many": False}}}
        )
        cat.create_blueprint(
            {"identifier": "loose", "schema": {"properties": {}}, "relations": {"parents": {"target": "parent", "required": False, "many": True}}}
        )
        cat.upsert_entities("parent", [{"identifier": "p1"}, {"identifier": "p2"}, {"identifier": "p3"}])
        cat.upsert_entities("child", [{"identifier": "c1", "relations": {"parent": "p1"}}])
        cat.upsert_entities("loose", [{"identifier": "l1", "relations": {"parents": ["p1", "p2"]}}])

        with pytest.raises(CatalogError) as refused:
            cat.delete_entities("parent", ["p2", "p1"], delete_dependents=False)
        assert refused.value.error == "has_dependents"
        assert cat.count("parent") == 3  # all or nothing: p2 is still there

        # p2 has only a non-required dependent: it goes, and the relation is cleared
        assert cat.delete_entities("parent", ["p2", "missing"], delete_dependents=False).deleted == ["p2"]
        assert cat.get_entity("loose", "l1")["relations"]["parents"] == ["p1"]

        outcome = cat.delete_entities("parent", ["p1"], delete_dependents=True)
        assert outcome.deleted == ["p1"] and outcome.dependents == [("child", "c1")]
        assert cat.get_entity("child", "c1") is None
        assert cat.get_entity("loose", "l1")["relations"]["parents"] == []
        assert [e["identifier"] for e in cat.entities("parent")] == ["p3"]


def test_property_formats_are_enforced_as_port_does(tmp_path):
    with LocalCatalog(tmp_path / "f.sqlite") as cat:
        cat.create_blueprint({"identifier": "fmt", "title": "F", "relations": {}, "schema": {"required": [], "properties": {
            "when": {"type": "string", "format": "date-time"}, "link": {"type": "string", "format": "url"},
            "mail": {"type": "string", "format": "email"}}}})
        good = {"identifier": "ok", "properties": {"when": "2024-03-04T12:00:00.000Z", "link": "https://x.io/a",
                                                   "mail": "a@b.io"}}
        bad = [{"identifier": f"bad-{k}", "properties": {k: v}}
               for k, v in (("when", "yesterday"), ("link", "x.io/a"), ("mail", "not-an-email"))]
        outcomes = cat.upsert_entities("fmt", [good, *bad])
        assert [o.ok for o in outcomes] == [True, False, False, False]
        assert all("format" in (o.message or "") for o in outcomes[1:])


def test_search_relations_allow_ports_operators_and_at_most_500_matches(catalog):
    catalog.upsert_entities("tUser", [fx.user(i) for i in range(3)])
    issue = fx.issue(1, 0, None)
    issue["relations"]["assignee"] = {"combinator": "and", "rules": [
        {"property": "$identifier", "operator": "beginsWith", "value": "user1"}]}
    [refused] = catalog.upsert_entities("tIssue", [issue], create_missing_related=True)
    assert not refused.ok and "beginsWith" in (refused.message or "")
    many = {"identifier": "big", "title": "Big", "relations": {"members": {"combinator": "and", "rules": [
        {"property": "$identifier", "operator": "contains", "value": "@"}]}}, "properties": {}}
    catalog.upsert_entities("tUser", [fx.user(i) for i in range(3, 503)])
    [too_many] = catalog.upsert_entities("tTeam", [many])
    assert not too_many.ok and "at most 500" in (too_many.message or "")


def test_refusals_carry_ports_error_identifiers(tmp_path):
    """The identifiers Port's published API specification lists (port-labs/port-docs, static/apispec.yaml until
    July 2025): schema mismatches, required and many relations, unknown targets, dependents."""
    from sentry_port_assets.port.catalog import CatalogError

    cat = LocalCatalog(tmp_path / "c.sqlite")
    cat.create_blueprint({"identifier": "team", "title": "T", "schema": {"properties": {}, "required": []}})
    cat.create_blueprint({"identifier": "svc", "title": "S", "schema": {
        "properties": {"n": {"type": "number"}, "url": {"type": "string", "format": "url"}}, "required": []},
        "relations": {"owner": {"target": "team", "many": False, "required": True},
                      "teams": {"target": "team", "many": True, "required": False}}})
    cat.upsert_entities("team", [{"identifier": "t1"}])

    def refusal(entity):
        [outcome] = cat.upsert_entities("svc", [entity])
        return outcome.status, outcome.error

    ok = {"identifier": "s", "relations": {"owner": "t1"}}
    assert refusal({**ok, "properties": {"n": "seven"}}) == (422, "blueprint_schema_mismatch")
    assert refusal({**ok, "properties": {"url": "not a url"}}) == (422, "blueprint_schema_mismatch")
    assert refusal({**ok, "properties": {"unknown": 1}}) == (422, "blueprint_schema_mismatch")
    assert refusal({"identifier": "s", "relations": {}}) == (422, "required_relation")
    assert refusal({**ok, "relations": {"owner": "t1", "teams": "t1"}}) == (422, "relation_many_violation")
    assert refusal({"identifier": "s", "relations": {"owner": "nobody"}}) == (404, "not_found")
    assert refusal({"identifier": "s s", "relations": {"owner": "t1"}}) == (422, "invalid_request")
    [landed] = cat.upsert_entities("svc", [ok])
    assert landed.ok and cat.get_entity("svc", "s") is not None
    with pytest.raises(CatalogError) as refused:
        cat.delete_entities("team", ["t1"], delete_dependents=False)
    assert (refused.value.status, refused.value.error) == (403, "has_dependents")
