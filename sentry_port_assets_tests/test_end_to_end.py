"""The whole loop as users run it: `dagster job execute -m sentry_port_assets -j sentry_port_sync` in a subprocess,
against the Sentry emulator and the Port emulator on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sentry_port_assets.emulators.port import create_port_emulator
from sentry_port_assets.emulators.sentry_api import Fault
from sentry_port_assets.emulators.sentry_data import SentryDataset, demo_dataset
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets_tests.conftest import RunningSentry

CLIENT_ID, CLIENT_SECRET = "e2e-client", "e2e-secret-never-logged-4242"
SENTRY_TOKEN = "sntrys_e2e_token_never_logged_77"
OWN = ("sentryUser", "sentryTeam", "sentryProjectEnvironment", "sentryIssue")
# Port's own user blueprint exists in every Port organization before any integration runs.
PORT_USER = {"identifier": "_user", "title": "User", "schema": {"properties": {}, "required": []}, "relations": {}}


def expected_entities(data: SentryDataset) -> dict[str, set[str]]:
    """What the default mapping must leave in Port, derived from the dataset without our mapping code."""
    unresolved = [i for i in data.issues if i["status"] == "unresolved"]
    return {
        "sentryUser": {m["email"] for m in data.members},
        "_user": {m["email"] for m in data.members},
        "sentryTeam": {t["slug"] for t in data.teams},
        "sentryProjectEnvironment": {f"{slug}-{v['name']}" for (slug, key), values in data.project_tag_values.items()
                                     if key == "environment" for v in values},
        "sentryIssue": {f"{i['id']}-{v['name']}" for i in unresolved
                        for v in data.issue_tag_values[(i["id"], "environment")]},
    }


@dataclass
class World:
    sentry: RunningSentry
    port_url: str
    port_state: Any
    catalog: LocalCatalog
    home: Path

    def held(self) -> dict[str, set[str]]:
        return {bp: {e["identifier"] for e in self.catalog.entities(bp)} for bp in (*OWN, "_user")}

    def run_sync(self) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DAGSTER_HOME": str(self.home), "SENTRY_HOST": self.sentry.url,
               "SENTRY_ORGANIZATION": self.sentry.organization, "SENTRY_TOKEN": self.sentry.token,
               "PORT_CLIENT_ID": CLIENT_ID, "PORT_CLIENT_SECRET": CLIENT_SECRET, "PORT_BASE_URL": self.port_url}
        env.pop("PORT_MAPPING_FILE", None)
        return subprocess.run(
            [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"],
            cwd=self.home, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def world(tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> Iterator[World]:
    sentry = sentry_emulator(demo_dataset(), token=SENTRY_TOKEN)
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    app = create_port_emulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    (tmp_path / "home").mkdir()
    with ServerThread(app) as port:
        yield World(sentry, port.url, app.state.port, catalog, tmp_path / "home")


def test_sync_job_converges_is_idempotent_deletes_stale_and_never_deletes_after_a_failure(world: World) -> None:
    data = world.sentry.state.dataset

    first = world.run_sync()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert world.held() == expected_entities(data)
    for secret in (CLIENT_SECRET, SENTRY_TOKEN):
        assert secret not in first.stdout + first.stderr

    upserts = world.port_state.stats.upsert_requests
    second = world.run_sync()
    assert second.returncode == 0, second.stderr[-3000:]
    assert world.port_state.stats.upsert_requests == upserts, "a run with no change in Sentry sent upserts"
    # PORT_INITIALIZE_RESOURCES (on by default): the "Sentry health" scorecard was created with the blueprints, once
    assert world.catalog.get_scorecard("sentryProject", "sentryHealth") is not None
    assert world.port_state.stats.requests["scorecard_create"] == 1
    assert world.port_state.stats.entities_deleted == 0

    gone = [i for i in data.issues if i["status"] == "unresolved"][:3]
    for issue in gone:
        data.remove_issue(issue["id"])
    third = world.run_sync()
    assert third.returncode == 0, third.stderr[-3000:]
    assert world.held() == expected_entities(data)
    assert not any(e.startswith(tuple(f"{i['id']}-" for i in gone)) for e in world.held()["sentryIssue"])

    # A Sentry outage mid-run: the job fails and nothing is deleted, although another issue vanished meanwhile.
    before = world.held()
    data.remove_issue([i for i in data.issues if i["status"] == "unresolved"][0]["id"])
    # An event on another issue, and the issue list (which also gives the environments) is down from then on.
    data.record_event([i for i in data.issues if i["status"] == "unresolved"][0]["id"])
    world.sentry.state.config.faults.append(Fault("500", endpoint="/organizations/{org}/issues/", times=None))
    deleted = world.port_state.stats.entities_deleted
    fourth = world.run_sync()
    assert fourth.returncode != 0
    assert world.port_state.stats.entities_deleted == deleted
    assert world.held() == before
    assert SENTRY_TOKEN not in fourth.stdout + fourth.stderr

    # Nothing Dagster or the catalogs wrote to disk (run storage, event logs, compute logs, SQLite) holds a secret.
    for path in [*world.home.rglob("*"), *world.catalog.path.parent.glob("*.sqlite*")]:
        if path.is_file():
            content = path.read_bytes()
            assert CLIENT_SECRET.encode() not in content and SENTRY_TOKEN.encode() not in content, path
