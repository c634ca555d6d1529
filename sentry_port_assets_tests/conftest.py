"""Shared fixtures: emulators on loopback, started by the tests themselves."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentry_port_assets.assets.entities import OPTIONAL_ENTITIES, optional_entities
from sentry_port_assets.emulators.sentry_api import EmulatorConfig, SentryEmulatorState, create_sentry_emulator
from sentry_port_assets.emulators.sentry_data import SentryDataset, demo_dataset
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE
from sentry_port_assets_tests.postgres import PostgresServer, start_postgres


class RunningSentry:
    def __init__(self, server: ServerThread, state: SentryEmulatorState) -> None:
        self.server = server
        self.state = state

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def organization(self) -> str:
        return self.state.dataset.slug

    @property
    def token(self) -> str:
        return self.state.config.token


SETTINGS_PREFIXES = ("SENTRY_", "PORT_", "OCEAN__")
# What `port/catalog` and the checks read their entity inputs through (the factory wires it the same way): tests that
# materialize the assets directly add it to their resources.
ENTITY_INPUTS = {OPTIONAL_ENTITIES: optional_entities}


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """`monkeypatch`, with every setting the project reads (ours and Ocean's aliases) unset: the embedded default."""
    for name in list(os.environ):
        if name.startswith(SETTINGS_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def sentry_emulator() -> Iterator[Callable[..., RunningSentry]]:
    """`sentry_emulator(dataset=None, **EmulatorConfig fields)` starts an emulator on 127.0.0.1."""
    started: list[ServerThread] = []

    def start(dataset: SentryDataset | None = None, **config: object) -> RunningSentry:
        app = create_sentry_emulator(dataset or demo_dataset(), EmulatorConfig(**config))  # type: ignore[arg-type]
        server = ServerThread(app).start()
        started.append(server)
        return RunningSentry(server, app.state.sentry)

    yield start
    for server in started:
        server.stop()


def write_mapping(directory: Path, edit: Callable[[dict[str, Any]], None], name: str = "mapping.yaml") -> str:
    """The bundled default mapping, changed by `edit`, written to `directory`; returns its path."""
    data = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    edit(data)
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def tag_values(how: str) -> Callable[[dict[str, Any]], None]:
    """A `write_mapping` edit setting `tagValues: <how>` on every issue-tag resource (tests of the per-issue path
    set `per-issue`: the default mapping lists environments instead)."""
    def edit(mapping: dict[str, Any]) -> None:
        for r in mapping["resources"]:
            if r["kind"] == "issue-tag":
                r["selector"]["tagValues"] = how
    return edit


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Ends a process the test started: SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()


def table_text(value: Any) -> str:
    """Every cell of a table metadata value (`MetadataValue.table`), as JSON text to search."""
    return json.dumps([r.data for r in value.records], ensure_ascii=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 for the session (skipped with the reason where none can start)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
