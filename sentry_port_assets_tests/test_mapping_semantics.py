"""Ocean's mapping semantics (port-labs/ocean's jq_entity_processor.py), one row per rule, through the combined program AND
through the field-by-field evaluator (Ocean's way), which must agree."""

from __future__ import annotations

import copy
import json
import random

import pytest

from sentry_port_assets.mapping import engine
from sentry_port_assets.mapping.jqcompile import normalize_expression, observed_keys
from sentry_port_assets.mapping.loader import load_mapping, parse_mapping


def mapping_of(mappings: dict, *, kind: str = "user", selector: str = "true", port: dict | None = None):
    resource = {"kind": kind, "selector": {"query": selector}, "port": {**(port or {}), "entity": {"mappings": mappings}}}
    return parse_mapping({"resources": [resource]})


def both(mapping, items, kind="user"):
    """The engine's result, after checking that Ocean's field-by-field way gives exactly the same."""
    fast = mapping.map_items(kind, items)
    naive = engine.MappingResult()
    for c in mapping.resources:
        if c.kind == kind:
            naive.extend(c.map_naive(items))
    assert fast.entities == naive.entities
    for attribute in ("misconfigurations", "nulls"):
        assert [(m.field, m.count, m.message, m.example_item_id) for m in getattr(fast, attribute)] == [
            (m.field, m.count, m.message, m.example_item_id) for m in getattr(naive, attribute)
        ]
    assert (fast.dropped, fast.filtered, fast.items) == (naive.dropped, naive.filtered, naive.items)
    assert [(e.field, e.count) for e in fast.errors] == [(e.field, e.count) for e in naive.errors]
    return fast


BASE = {"identifier": ".id", "blueprint": '"bp"'}


def prop(expr: str, item: dict):
    result = both(mapping_of({**BASE, "properties": {"p": expr}}), [{"id": "x", **item}])
    assert len(result.entities) == 1
    return result.entities[0]["properties"]["p"], result.misconfigurations


# --- leaf values ---------------------------------------------------------------------------------------------
LEAF_CASES = [
    # (rule, expression, item, expected value, misconfiguration message or None)
    ("first output only", ".a[]", {"a": [1, 2, 3]}, 1, None),
    ("first output only, then an error is never reached", ".a, error(\"late\")", {"a": 5}, 5, None),
    ("no output is null and misconfigured", "empty", {}, None, "yielded null or nothing"),
    ("null is misconfigured", ".missing", {}, None, "yielded null"),
    ("jq error is null and misconfigured", ".a.b", {"a": "text"}, None, "jq error: Cannot index string"),
    ("falsy 0 kept", ".a", {"a": 0}, 0, None),
    ("falsy empty string kept", ".a", {"a": ""}, "", None),
    ("falsy false kept", ".a", {"a": False}, False, None),
    ("falsy [] kept", ".a", {"a": []}, [], None),
    ("falsy {} kept", ".a", {"a": {}}, {}, None),
    ("single-quoted string", "'abc'", {}, "abc", None),
    ("single-quoted in an expression", ".a + '-' + .b", {"a": "x", "b": "y"}, "x-y", None),
    ("single quote inside a double-quoted string untouched", '"it\'s"', {}, "it's", None),
    ("double quote inside a single-quoted string", "'say \"hi\"'", {}, 'say "hi"', None),
    ("no environment: env is empty", "env", {}, {}, None),
    ("no environment: $ENV is empty", "$ENV", {}, {}, None),
    ("no environment: env.HOME is null", "env.HOME", {}, None, "yielded null"),
    ("string interpolation", '"\\(.a)-\\(.b)"', {"a": 1, "b": "z"}, "1-z", None),
    ("multi-output function", ".a | map(. * 2)", {"a": [1, 2]}, [2, 4], None),
    ("trailing comment", ".a # the a field", {"a": 7}, 7, None),
    ("definitions inside a leaf", "def twice: . * 2; .a | twice", {"a": 4}, 8, None),
    ("error() with an object message", 'error({"x": 1})', {}, None, 'jq error: {"x": 1}'),
    ("optional access", ".a.b?", {"a": "text"}, None, "yielded null or nothing"),
]


@pytest.mark.parametrize("rule,expr,item,expected,message", LEAF_CASES, ids=[c[0] for c in LEAF_CASES])
def test_leaf(rule, expr, item, expected, message):
    value, mis = prop(expr, item)
    assert value == expected and type(value) is type(expected)
    if message is None:
        assert mis == []
    else:
        [m] = mis
        assert m.field == "properties.p" and m.expression == expr and m.count == 1 and m.example_item_id == "x"
        assert m.message.startswith(message) or message in m.message, m.message


def test_one_bad_field_nulls_only_itself():
    mapping = mapping_of({**BASE, "title": ".t", "properties": {"bad": ".a.b", "good": ".a"}})
    result = both(mapping, [{"id": "1", "t": "T", "a": "s"}, {"id": "2", "t": "U", "a": {"b": 1}}])
    assert [e["properties"] for e in result.entities] == [{"bad": None, "good": "s"}, {"bad": 1, "good": {"b": 1}}]
    assert [e["title"] for e in result.entities] == ["T", "U"]
    [m] = result.misconfigurations
    assert (m.field, m.count, m.example_item_id) == ("properties.bad", 1, "1")


def test_misconfigurations_counted_per_field_with_first_example():
    mapping = mapping_of({**BASE, "properties": {"p": ".p", "q": ".q"}})
    result = both(mapping, [{"id": "a"}, {"id": "b", "p": 1}, {"id": "c"}])
    # q never yields a value: a misconfiguration; p yields one on "b", so its nulls are the data's
    assert {m.field: (m.count, m.example_item_id) for m in result.misconfigurations} == {"properties.q": (3, "a")}
    assert {m.field: (m.count, m.example_item_id) for m in result.nulls} == {"properties.p": (2, "a")}


def test_nulls_the_data_holds_are_not_misconfigurations():
    mapping = mapping_of({**BASE, "title": ".user.name", "properties": {"typo": ".user.nmae", "last": ".lastLogin",
                                                                        "e": ".a | error(\"boom\")"}})
    pending = {"id": "invite", "user": None, "lastLogin": None, "a": 1}
    result = both(mapping, [pending])  # one row only: nothing else yields a value, but `user` is null in it
    assert {m.field for m in result.nulls} == {"title", "properties.last", "properties.typo"}
    assert {m.field: m.message for m in result.misconfigurations} == {"properties.e": "jq error: boom"}
    member = {"id": "m", "user": {"name": "N"}, "lastLogin": "2024-01-01", "a": 1}
    result = both(mapping, [member, {"id": "no-user"}])  # "no-user" lacks the keys, but others have values
    assert {m.field: m.count for m in result.nulls} == {"title": 1, "properties.last": 1}
    assert {m.field for m in result.misconfigurations} == {"properties.typo", "properties.e"}


def test_an_error_on_any_row_makes_the_field_misconfigured():
    mapping = mapping_of({**BASE, "properties": {"n": ".a | tonumber"}})
    result = both(mapping, [{"id": "1", "a": "5"}, {"id": "2", "a": None}, {"id": "3", "a": "x"}])
    [m] = result.misconfigurations
    assert (m.field, m.count) == ("properties.n", 2) and not result.nulls


# --- entity shape, dropping ----------------------------------------------------------------------------------
def test_unmapped_title_icon_team_absent_mapped_null_present():
    result = both(mapping_of({**BASE}), [{"id": "1"}])
    assert result.entities == [{"identifier": "1", "blueprint": "bp", "properties": {}, "relations": {}}]
    result = both(mapping_of({**BASE, "title": ".nope", "icon": '"Sentry"', "team": ".team"}), [{"id": "1", "team": []}])
    assert result.entities == [
        {"identifier": "1", "title": None, "icon": "Sentry", "blueprint": "bp", "team": [], "properties": {}, "relations": {}}
    ]


@pytest.mark.parametrize(
    "mappings,item",
    [
        ({"identifier": ".id", "blueprint": '"bp"'}, {"id": ""}),
        ({"identifier": ".id", "blueprint": '"bp"'}, {"id": None}),
        ({"identifier": ".id", "blueprint": '"bp"'}, {"id": 0}),
        ({"identifier": ".id", "blueprint": '"bp"'}, {"id": False}),
        ({"identifier": ".id", "blueprint": '"bp"'}, {"id": []}),
        ({"identifier": ".id", "blueprint": ".bp"}, {"id": "1", "bp": ""}),
        ({"identifier": ".id", "blueprint": ".bp"}, {"id": "1"}),
        ({"identifier": ".id | ascii_downcase", "blueprint": '"bp"'}, {"id": 5}),
    ],
)
def test_entity_without_identifier_or_blueprint_is_dropped_and_counted(mappings, item):
    result = both(mapping_of(mappings), [item, {"id": "ok", "bp": "bp"}])
    assert result.dropped == 1
    assert [e["identifier"] for e in result.entities] == ["ok"]


def test_search_query_identifier_is_kept():
    mapping = mapping_of({"identifier": {"combinator": '"and"', "rules": [{"property": '"$title"', "operator": '"="', "value": ".t"}]}, "blueprint": '"bp"'})
    result = both(mapping, [{"t": "T"}])
    assert result.entities[0]["identifier"] == {"combinator": "and", "rules": [{"property": "$title", "operator": "=", "value": "T"}]}


def test_search_relation_evaluated_leaf_by_leaf():
    mapping = mapping_of(
        {
            **BASE,
            "relations": {
                "r": {
                    "combinator": "'or'",
                    "rules": [
                        {"property": '"$identifier"', "operator": '"="', "value": ".a"},
                        {"property": '"tags"', "operator": '"contains"', "value": ".b.c"},
                    ],
                }
            },
        }
    )
    result = both(mapping, [{"id": "1", "a": "A", "b": "str"}])
    assert result.entities[0]["relations"]["r"] == {
        "combinator": "or",
        "rules": [
            {"property": "$identifier", "operator": "=", "value": "A"},
            {"property": "tags", "operator": "contains", "value": None},
        ],
    }
    assert [m.field for m in result.misconfigurations] == ["relations.r.rules[1].value"]


# --- itemsToParse ----------------------------------------------------------------------------------------------
PARENT = {"id": "p1", "name": "parent", "envs": [{"name": "prod"}, {"name": "dev"}], "keep": 1}


def itp_mapping(mappings, **port):
    return mapping_of(mappings, port=port)


def test_items_to_parse_rows_and_top_level_transform():
    mapping = itp_mapping({"identifier": '.id + "-" + .item.name', "blueprint": '"bp"', "properties": {"row": "."}}, itemsToParse=".envs")
    result = both(mapping, [PARENT])
    assert [e["identifier"] for e in result.entities] == ["p1-prod", "p1-dev"]
    # the parsed array is removed from the parent (itemsToParseTopLevelTransform defaults to true)
    assert result.entities[0]["properties"]["row"] == {"id": "p1", "name": "parent", "keep": 1, "item": {"name": "prod"}}


def test_items_to_parse_top_level_transform_false_keeps_the_array():
    mapping = itp_mapping({"identifier": ".item.name", "blueprint": '"bp"', "properties": {"n": ".envs | length"}}, itemsToParse=".envs", itemsToParseTopLevelTransform=False)
    result = both(mapping, [PARENT])
    assert [e["properties"]["n"] for e in result.entities] == [2, 2]


def test_items_to_parse_name_and_element_wins_over_parent_key():
    mapping = itp_mapping({"identifier": ".env.name", "blueprint": '"bp"', "properties": {"parentName": ".name"}}, itemsToParse=".envs", itemsToParseName="env")
    result = both(mapping, [PARENT])
    assert [e["identifier"] for e in result.entities] == ["prod", "dev"]
    mapping = itp_mapping({"identifier": ".name", "blueprint": '"bp"'}, itemsToParse=".envs", itemsToParseName="name")
    assert [e["identifier"] for e in both(mapping, [PARENT]).entities] == [{"name": "prod"}, {"name": "dev"}]


def test_items_to_parse_not_a_list_skips_the_item_and_is_reported():
    mapping = itp_mapping({"identifier": ".item", "blueprint": '"bp"'}, itemsToParse=".envs")
    result = both(mapping, [{"id": "a", "envs": "prod"}, {"id": "b"}, {"id": "c", "envs": []}, {"id": "d", "envs": ["x"]}])
    assert [e["identifier"] for e in result.entities] == ["x"]
    [m] = result.misconfigurations
    assert (m.field, m.count, m.example_item_id) == ("itemsToParse", 2, "a")
    assert "expected a list, got string" in m.message


def test_items_to_parse_computed_expression_keeps_parent():
    # not a path: del() fails, so the parent stays whole (nothing to remove)
    mapping = itp_mapping({"identifier": ".item", "blueprint": '"bp"', "properties": {"n": ".envs | length"}}, itemsToParse="[.envs[].name]")
    result = both(mapping, [PARENT])
    assert [(e["identifier"], e["properties"]["n"]) for e in result.entities] == [("prod", 2), ("dev", 2)]


# --- selector --------------------------------------------------------------------------------------------------
def test_selector_filters_rows():
    result = both(mapping_of(BASE, selector='.id | startswith("keep")'), [{"id": "keep1"}, {"id": "drop"}, {"id": "keep2"}])
    assert [e["identifier"] for e in result.entities] == ["keep1", "keep2"]
    assert result.filtered == 1 and result.errors == []


def test_selector_applies_to_each_parsed_row():
    mapping = itp_mapping({"identifier": ".item.name", "blueprint": '"bp"'}, itemsToParse=".envs")
    mapping = parse_mapping({"resources": [{"kind": "user", "selector": {"query": '.item.name == "prod"'}, "port": {"itemsToParse": ".envs", "entity": {"mappings": {"identifier": ".item.name", "blueprint": '"bp"'}}}}]})
    assert [e["identifier"] for e in both(mapping, [PARENT]).entities] == ["prod"]


@pytest.mark.parametrize(
    "selector,item,message",
    [
        (".id", {"id": "x"}, 'got string "x"'),
        (".flag", {"id": "x"}, "got null"),
        ("empty", {"id": "x"}, "null or nothing"),
        (".a.b", {"id": "x", "a": 1}, "Cannot index number"),
        ("1", {"id": "x"}, "got number"),
    ],
)
def test_non_boolean_selector_is_an_error_for_the_resource(selector, item, message):
    result = both(mapping_of(BASE, selector=selector), [item, {"id": "y", "flag": True, "a": {"b": True}}])
    assert not result.ok
    [e] = result.errors
    assert (e.resource_index, e.kind, e.field, e.expression, e.example_item_id) == (0, "user", "selector.query", selector, "x")
    assert "boolean" in e.message and message in e.message, e.message


def test_selector_boolean_in_yaml_means_jq_boolean():
    mapping = parse_mapping({"resources": [{"kind": "user", "selector": {"query": False}, "port": {"entity": {"mappings": BASE}}}]})
    assert both(mapping, [{"id": "1"}]).entities == []


# --- the combined program's fallback and batching ------------------------------------------------------------------
def record_naive_items(monkeypatch, tmp_path):
    """Records the items mapped field by field; mapping runs in forked workers, so they report through a file."""
    calls = tmp_path / "naive-items.jsonl"
    original = engine.NaiveResource.map_item

    def recording(self, item, col):
        with calls.open("a") as fh:
            fh.write(json.dumps(item) + "\n")
        return original(self, item, col)

    monkeypatch.setattr(engine.NaiveResource, "map_item", recording)
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def test_item_failing_the_whole_program_falls_back_field_by_field(monkeypatch, tmp_path):
    """A non-object item with itemsToParse makes the combined program itself fail (object + number); only that
    item goes field by field, and items before and after it in the same batch are mapped normally."""
    mapping = itp_mapping({"identifier": '"e-\\(.item)"', "blueprint": '"bp"', "properties": {"k": ".keep"}}, itemsToParse="[1]")
    calls = record_naive_items(monkeypatch, tmp_path)
    items = [{"keep": 1}, 5, {"keep": 3}]
    result = mapping.map_items("user", items)
    assert calls() == [5]
    assert [e["properties"]["k"] for e in result.entities] == [1, None, 3]


def test_batches_and_order(monkeypatch):
    monkeypatch.setattr(engine, "BATCH_SIZE", 7)
    mapping = mapping_of({**BASE, "properties": {"n": ".n"}})
    items = [{"id": str(i), "n": i % 3 or None} for i in range(50)]
    result = both(mapping, items)
    assert [e["identifier"] for e in result.entities] == [str(i) for i in range(50)]


def test_parallel_equals_serial(monkeypatch):
    monkeypatch.setattr(engine, "PARALLEL_MIN_ITEMS", 10)
    mapping = load_mapping()
    rng = random.Random(3)
    items = []
    for i in range(400):
        issue = {"id": str(i), "title": f"t{i}", "permalink": f"https://x/{i}/", "status": rng.choice(["resolved", "unresolved"]), "isUnhandled": rng.random() < 0.5, "project": {"slug": f"p{i % 5}"}, "assignedTo": rng.choice([None, {"email": f"u{i}@x.io"}])}
        issue["__tags"] = [{"name": n} for n in ["production", "staging", "dev"][: rng.randint(0, 3)]]
        items.append(issue)
    [compiled] = [c for c in mapping.resources if c.kind == "issue-tag"]
    serial = compiled.map(items, workers=1)
    parallel = compiled.map(items, workers=2)
    assert parallel.entities == serial.entities and len(serial.entities) > 300
    for attribute in ("misconfigurations", "nulls"):
        assert [(m.field, m.count, m.explained, m.example_item_id) for m in getattr(parallel, attribute)] == [
            (m.field, m.count, m.explained, m.example_item_id) for m in getattr(serial, attribute)
        ]
    assert serial.nulls and not serial.misconfigurations  # unassigned issues: the data's nulls


def test_input_reading_expression_is_not_batched():
    mapping = mapping_of({**BASE, "properties": {"next": "try input catch \"none\""}})
    [c] = mapping.resources
    assert c.batch_size == 1
    result = both(mapping, [{"id": "1"}, {"id": "2"}])
    assert [e["properties"]["next"] for e in result.entities] == ["none", "none"]


# --- the helpers the speed relies on ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expr,keys",
    [
        (".a.b", {"a", "b"}),
        ('(.project.slug as $s | .item | "\\($s)-\\(.name)")', {"project", "slug", "item", "name"}),
        ('.a + "-" + ."we ird"', {"a", "we ird"}),
        ("if .x == null then .y else .z end", {"x", "y", "z"}),
        (".", None),
        (".a[]", None),
        ("keys", None),
        ("{a}", None),
        ('"\\(.)"', None),
        (".. | .a?", None),
        ("tojson", None),
        ("@json", None),
        (".a | map(.b)", None),
    ],
)
def test_observed_keys(expr, keys):
    got = observed_keys(expr)
    assert (got if got is None else set(got)) == keys


def test_projection_never_changes_results():
    """A mapping that reads keys it does not name is not projected; one that only names keys is, and both agree
    with Ocean's field-by-field way (which always sees the whole item)."""
    item = {"id": "1", "a": 1, "b": {"c": 2}, "big": list(range(50))}
    named = mapping_of({**BASE, "properties": {"a": ".a", "c": ".b.c"}})
    whole = mapping_of({**BASE, "properties": {"keys": "keys", "n": "length"}})
    assert named.resources[0].projected_keys == ("a", "b", "c", "id")
    assert whole.resources[0].projected_keys is None
    assert both(named, [item]).entities[0]["properties"] == {"a": 1, "c": 2}
    assert both(whole, [item]).entities[0]["properties"] == {"keys": ["a", "b", "big", "id"], "n": 4}


@pytest.mark.parametrize(
    "src,out",
    [
        ("'abc'", '"abc"'),
        ('"it\'s"', '"it\'s"'),
        ("'a\\'b'", '"a\'b"'),
        ("# it's a comment\n.a", "# it's a comment\n.a"),
        ('"\\(\'x\')"', '"\\("x")"'),
        (".a", ".a"),
    ],
)
def test_normalize_single_quotes(src, out):
    assert normalize_expression(src) == out


def test_default_mapping_engine_equals_field_by_field_on_varied_items():
    """Cross-check on the default mapping with varied, partly broken items (types changed, keys missing)."""
    rng = random.Random(11)
    mapping = load_mapping()
    samples = json.loads(open("sentry_port_assets/sentry/seed_samples.json").read())
    def mutate(item):
        item = copy.deepcopy(item)
        for key in rng.sample(sorted(item), k=min(3, len(item))):
            item[key] = rng.choice([None, "str", 0, [], {}, True])
        return item
    kinds = {"user": samples["User"], "team": samples["Team"], "project-tag": samples["Project environment"]}
    issue = dict(samples["Issue"], __tags=[{"name": "production"}, {"name": "dev"}])
    kinds["issue-tag"] = issue
    for kind, sample in kinds.items():
        items = [sample] + [mutate(sample) for _ in range(40)]
        both(mapping, items, kind)


def test_several_generator_leaves_give_one_entity_of_first_outputs():
    """The constructor runs under one first(): the entity is made of every leaf's first output, never a
    cartesian product of entities."""
    mapping = mapping_of({**BASE, "properties": {"p": ".a[]", "q": ".b[]", "r": "range(3)"}})
    result = both(mapping, [{"id": "1", "a": [1, 2], "b": [3, 4]}])
    assert [e["properties"] for e in result.entities] == [{"p": 1, "q": 3, "r": 0}]


def test_leaf_without_output_sends_only_that_item_field_by_field(monkeypatch, tmp_path):
    mapping = mapping_of({**BASE, "properties": {"p": ".a[]"}})
    calls = record_naive_items(monkeypatch, tmp_path)
    result = mapping.map_items("user", [{"id": "1", "a": [5]}, {"id": "2", "a": []}, {"id": "3", "a": [7]}])
    assert [item["id"] for item in calls()] == ["2"]
    assert [e["properties"]["p"] for e in result.entities] == [5, None, 7]
    [m] = result.nulls  # the other rows yield a value: an empty list in the data, not a broken expression
    assert (m.field, m.count, m.example_item_id) == ("properties.p", 1, "2")


def test_parallel_keeps_order_when_a_worker_batch_fails(monkeypatch):
    """A batch on which jq fails in a worker is redone in the parent, in place."""
    monkeypatch.setattr(engine, "PARALLEL_MIN_ITEMS", 10)
    monkeypatch.setattr(engine, "BATCH_SIZE", 5)
    mapping = itp_mapping({"identifier": '"e-\\(.item)-\\(.n)"', "blueprint": '"bp"'}, itemsToParse="[1]")
    items = [{"n": i} for i in range(60)]
    items[47] = 5  # a non-object item makes the combined program fail on its batch
    [c] = mapping.resources
    serial = c.map(items, workers=1)
    parallel = c.map(items, workers=2)
    assert parallel.entities == serial.entities and len(serial.entities) == 60
    assert serial.entities[47]["identifier"] == "e-1-null"  # mapped field by field
    assert parallel.items == serial.items == 60
