"""The emulator answers in the shapes Sentry's published schemas give, for every endpoint this sync calls.

`sentry_response_schemas.json` holds the facts in our own format: per endpoint, the properties the schema
(getsentry/sentry-api-schema `openapi-derefed.json`) marks required with their JSON types, the enums, and the nested
objects we read; where the schema is silent, Sentry's serializers (named in each entry's `source`). Fields Sentry
sends only with `expand=` (which this sync never sends) are listed apart and not required here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from urllib.parse import quote

import httpx

from sentry_port_assets.emulators.sentry_data import QUOTED_VERSION
from sentry_port_assets_tests.conftest import RunningSentry

FACTS = json.loads((Path(__file__).parent / "sentry_response_schemas.json").read_text())["endpoints"]
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array",
              type(None): "null"}


def _fits(value: Any, allowed: list[str]) -> bool:
    kind = JSON_TYPES[type(value)]
    return "any" in allowed or kind in allowed or (kind == "integer" and "number" in allowed)


def problems_of(endpoint: str, item: dict[str, Any]) -> list[str]:
    facts = FACTS[endpoint]
    expand_only = set((facts.get("expand_only") or {}).get("fields", []))
    found = []
    for key, allowed in facts["required"].items():
        if key in expand_only:
            continue
        if key not in item:
            found.append(f"{key}: missing")
        elif not _fits(item[key], allowed):
            found.append(f"{key}: {json.dumps(item[key])[:40]} is not {allowed}")
    for key, values in facts.get("enums", {}).items():
        if not key.startswith("_") and key in item and item[key] not in values:
            found.append(f"{key}: {item[key]!r} not in {values}")
    for name, nested in facts.get("nested", {}).items():
        value = item.get(name.rstrip("[]"))
        for sub in value if isinstance(value, list) else [value]:
            if not isinstance(sub, dict):
                continue
            for key, allowed in {**nested["required"], **nested.get("optional", {})}.items():
                if key not in sub:
                    if key in nested["required"]:
                        found.append(f"{name}.{key}: missing")
                elif not _fits(sub[key], allowed):
                    found.append(f"{name}.{key}: {json.dumps(sub[key])[:40]} is not {allowed}")
            for key, values in nested.get("enums", {}).items():
                if sub.get(key) not in values:
                    found.append(f"{name}.{key}: {sub.get(key)!r} not in {values}")
    return found


def test_every_endpoint_answers_in_sentrys_published_shape(sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    issue = next(i for i in data.issues if i["assignedTo"] and i["assignedTo"].get("type") == "user")
    team, project = data.teams[0]["slug"], data.org_projects()[0]["slug"]
    version = quote(QUOTED_VERSION, safe="")  # a release with deploys, named deploys and unnamed ones
    calls = {
        "/organizations/{org}/": f"/organizations/{data.slug}/",
        "/organizations/{org}/members/": f"/organizations/{data.slug}/members/",
        "/organizations/{org}/teams/": f"/organizations/{data.slug}/teams/",
        "/teams/{org}/{team}/members/": f"/teams/{data.slug}/{team}/members/",
        "/organizations/{org}/projects/": f"/organizations/{data.slug}/projects/",
        "/organizations/{org}/issues/": f"/organizations/{data.slug}/issues/?query=&project=-1",
        "/organizations/{org}/issues/{issue_id}/": f"/organizations/{data.slug}/issues/{issue['id']}/",
        "/projects/{org}/{project}/tags/{key}/values/": f"/projects/{data.slug}/{project}/tags/environment/values/",
        "/organizations/{org}/issues/{issue_id}/tags/{key}/values/":
            f"/organizations/{data.slug}/issues/{issue['id']}/tags/environment/values/",
        "/organizations/{org}/releases/": f"/organizations/{data.slug}/releases/?project=-1&health=1",
        "/organizations/{org}/releases/{version}/": f"/organizations/{data.slug}/releases/{version}/?health=1",
        "/organizations/{org}/releases/{version}/deploys/": f"/organizations/{data.slug}/releases/{version}/deploys/",
        "/organizations/{org}/stats_v2/": f"/organizations/{data.slug}/stats_v2/?field=sum(quantity)&groupBy=project"
                                          "&groupBy=outcome&category=error&statsPeriod=24h&project=-1",
        "/organizations/{org}/sessions/": f"/organizations/{data.slug}/sessions/?field=crash_free_rate(session)"
                                          "&groupBy=project&statsPeriod=24h&includeSeries=0&project=-1",
        "/projects/{org}/{project}/ownership/": f"/projects/{data.slug}/{project}/ownership/",
        "/organizations/{org}/repos/": f"/organizations/{data.slug}/repos/",
        "/organizations/{org}/monitors/": f"/organizations/{data.slug}/monitors/?project=-1",
        "/organizations/{org}/workflows/": f"/organizations/{data.slug}/workflows/",
        "/organizations/{org}/detectors/": f"/organizations/{data.slug}/detectors/?project=-1",
        "/projects/{org}/{project}/rules/": f"/projects/{data.slug}/{project}/rules/?expand=lastTriggered",
        "/organizations/{org}/alert-rules/": f"/organizations/{data.slug}/alert-rules/?project=-1",
    }
    assert set(calls) == set(FACTS)
    found: dict[str, list[str]] = {}
    for endpoint, path in calls.items():
        answer = httpx.get(f"{sentry.url}/api/0{path}", headers={"Authorization": f"Bearer {sentry.token}"})
        assert answer.status_code == 200, (endpoint, answer.text)
        body = answer.json()
        items = body if FACTS[endpoint]["list"] else [body]
        assert isinstance(body, list) == FACTS[endpoint]["list"] and items, endpoint
        for item in items:
            for problem in problems_of(endpoint, item):
                found.setdefault(endpoint, []).append(problem)
    assert not found, {e: sorted(set(p))[:10] for e, p in found.items()}


def test_a_user_assignee_is_the_users_id_not_the_members(sentry_emulator: Callable[..., RunningSentry]) -> None:
    data = sentry_emulator().state.dataset
    users = {m["user"]["id"]: m["user"] for m in data.members if m["user"]}
    assignees = [i["assignedTo"] for i in data.issues if i["assignedTo"] and i["assignedTo"]["type"] == "user"]
    assert assignees and all(a["id"] in users and users[a["id"]]["email"] == a["email"] for a in assignees)
    assert not {a["id"] for a in assignees} & {m["id"] for m in data.members}


def test_the_validator_catches_the_seed_shapes(sentry_emulator: Callable[..., RunningSentry]) -> None:
    """What the emulator served before: the seed's "None" strings and an assignee without a type."""
    issue = dict(sentry_emulator().state.dataset.issues[0])
    issue.update(subscriptionDetails="None", assignedTo={"id": "1", "name": "Danny", "email": "d@x.io"})
    assert {p.split(":")[0] for p in problems_of("/organizations/{org}/issues/", issue)} >= {
        "subscriptionDetails", "assignedTo.type"}
