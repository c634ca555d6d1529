"""Blueprints and entities for the Port tests (independent of the bundled defaults)."""

from __future__ import annotations

import copy
from typing import Any

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "s3cr3t-DO-NOT-LEAK-7f9a2c"

TEAM = {
    "identifier": "tTeam",
    "title": "Team",
    "icon": "Team",
    "schema": {"properties": {"size": {"type": "number"}, "slug": {"type": "string"}}, "required": []},
    "relations": {"members": {"target": "tUser", "many": True, "required": False, "title": "Members"}},
}
USER = {
    "identifier": "tUser",
    "title": "User",
    "schema": {
        "properties": {"email": {"type": "string"}, "active": {"type": "boolean"}, "role": {"type": "string"}},
        "required": [],
    },
    "relations": {},
}
ISSUE = {
    "identifier": "tIssue",
    "title": "Issue",
    "schema": {
        "properties": {"status": {"type": "string", "enum": ["resolved", "unresolved"]}, "count": {"type": "number"}},
        "required": ["status"],
    },
    "relations": {
        "team": {"target": "tTeam", "many": False, "required": False},
        "assignee": {"target": "tUser", "many": False, "required": False},
    },
}
# Port's own user blueprint, as it exists in every Port organization
PORT_USER = {
    "identifier": "_user",
    "title": "User",
    "schema": {
        "properties": {"port_role": {"type": "string"}, "status": {"type": "string"}},
        "required": [],
    },
    "relations": {},
}
USER_FRAGMENT = {
    "identifier": "_user",
    "relations": {"sentry_user": {"target": "tUser", "many": False, "required": False, "title": "Sentry user"}},
}
BLUEPRINTS = [TEAM, USER, ISSUE]
OWNED = {"tTeam", "tUser", "tIssue"}


def blueprints() -> list[dict[str, Any]]:
    return copy.deepcopy(BLUEPRINTS)


def user(i: int, **props: Any) -> dict[str, Any]:
    return {
        "identifier": f"user{i}@example.com",
        "title": f"User {i}",
        "blueprint": "tUser",
        "properties": {"email": f"user{i}@example.com", "active": True, "role": "member", **props},
        "relations": {},
    }


def team(i: int, members: list[int]) -> dict[str, Any]:
    return {
        "identifier": f"team-{i}",
        "title": f"Team {i}",
        "blueprint": "tTeam",
        "properties": {"size": len(members), "slug": f"team-{i}"},
        "relations": {"members": [f"user{m}@example.com" for m in members]},
    }


def issue(i: int, team_i: int, assignee: int | None, status: str = "unresolved") -> dict[str, Any]:
    return {
        "identifier": f"ISSUE-{i}",
        "title": f"Issue {i}",
        "blueprint": "tIssue",
        "properties": {"status": status, "count": i},
        "relations": {
            "team": f"team-{team_i}",
            "assignee": {
                "combinator": "and",
                "rules": [{"property": "$identifier", "operator": "=", "value": f"user{assignee}@example.com"}],
            }
            if assignee is not None
            else None,
        },
    }


def port_user_link(i: int) -> dict[str, Any]:
    return {"identifier": f"user{i}@example.com", "blueprint": "_user", "relations": {"sentry_user": f"user{i}@example.com"}}


def dataset(users: int = 6, teams: int = 2, issues: int = 8) -> list[dict[str, Any]]:
    out = [user(i) for i in range(users)]
    out += [team(t, [m for m in range(users) if m % teams == t]) for t in range(teams)]
    out += [issue(n, n % teams, n % users if n % 3 else None) for n in range(issues)]
    return out


# -- the Port emulator on loopback ----------------------------------------------------------------------

import contextlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402


@contextlib.contextmanager
def serve_port(catalog, **options: Any) -> Iterator[tuple[str, Any]]:
    """(base_url, emulator state) for a Port emulator over `catalog` on a loopback port."""
    from sentry_port_assets.emulators.port import create_port_emulator
    from sentry_port_assets.emulators.serve import ServerThread

    app = create_port_emulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **options)
    with ServerThread(app) as server:
        yield server.url, app.state.port


def client(base_url: str, **options: Any):
    from sentry_port_assets.port.client import PortClient

    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_max", 0.05)
    return PortClient(CLIENT_ID, CLIENT_SECRET, base_url, **options)
