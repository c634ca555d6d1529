"""The services example (defaults/examples/mapping-services.yaml with blueprints-services.json), as a user runs it:
`dagster job execute` against the Sentry emulator and a Port emulator that already holds Port's `service` blueprint
and services made by Port's GitHub integration (one per repository, named after it)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sentry_port_assets.config import ConfigError, read_settings
from sentry_port_assets.emulators.port import create_port_emulator
from sentry_port_assets.emulators.sentry_data import demo_dataset
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets_tests.conftest import RunningSentry

EXAMPLES = DEFAULT_MAPPING_FILE.parent / "examples"
CLIENT_ID, CLIENT_SECRET = "services-client", "services-secret-4711"
PORT_USER = {"identifier": "_user", "title": "User", "schema": {"properties": {}, "required": []}, "relations": {}}
# Port's GitHub integration's service blueprint (its default `.port/resources/blueprints.json`, abridged)
SERVICE = {"identifier": "service", "title": "Service", "icon": "Github",
           "schema": {"properties": {"readme": {"type": "string", "format": "markdown"},
                                     "url": {"type": "string", "format": "url"},
                                     "language": {"type": "string"}}, "required": []},
           "relations": {}}
SERVICES = [{"identifier": name, "title": name, "properties": {"url": f"https://github.com/test-org/{name}",
                                                                "language": "Python"}, "relations": {}}
            for name in ("python-fastapi", "admin-service", "billing")]


def test_the_example_is_the_default_mapping_plus_the_service_resource() -> None:
    default = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    example = yaml.safe_load((EXAMPLES / "mapping-services.yaml").read_text())
    assert example["resources"][:len(default["resources"])] == default["resources"]
    [extra] = example["resources"][len(default["resources"]):]
    assert extra["kind"] == "project" and set(extra["port"]["entity"]["mappings"]["relations"]) == {"service"}


def test_sentry_projects_relate_to_their_services_by_repository(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    sentry = sentry_emulator(demo_dataset())
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    catalog.create_blueprint(SERVICE)
    catalog.upsert_entities("service", copy.deepcopy(SERVICES), datasource="port-ocean/github/1.0/github/exporter")
    before = {e["identifier"]: e for e in catalog.entities("service")}
    app = create_port_emulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    home = tmp_path / "home"
    home.mkdir()
    with ServerThread(app) as port:
        env = {**os.environ, "DAGSTER_HOME": str(home), "SENTRY_HOST": sentry.url,
               "SENTRY_ORGANIZATION": sentry.organization, "SENTRY_TOKEN": sentry.token,
               "PORT_CLIENT_ID": CLIENT_ID, "PORT_CLIENT_SECRET": CLIENT_SECRET, "PORT_BASE_URL": port.url,
               "PORT_MAPPING_FILE": str(EXAMPLES / "mapping-services.yaml"),
               "PORT_BLUEPRINTS_FILE": str(EXAMPLES / "blueprints-services.json")}
        run = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j",
                              "sentry_port_sync"], cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    projects = {e["identifier"]: e for e in catalog.entities("sentryProject")}
    assert projects["python-fastapi"]["relations"]["service"] == ["python-fastapi"]
    assert projects["admin-service"]["relations"]["service"] == ["admin-service"]
    assert projects["oauth-service"]["relations"]["service"] == [], "its repository has no service in Port"
    assert catalog.get_blueprint("sentryProject")["relations"]["service"]["target"] == "service"
    # Port's `$team` from the project's Sentry teams, through the example's dictionary
    assert sorted(projects["admin-service"]["team"]) == ["Payments", "Platform"]
    assert projects["python-fastapi"]["team"] == [], "a project on no Sentry team"
    # the services are read, never written or deleted: they are the GitHub integration's
    assert {e["identifier"]: e for e in catalog.entities("service")} == before
    # and the scorecard reads the same project entity the services relate to
    found, _ = catalog.search("sentryProject", None)
    assert {e["identifier"]: e["scorecards"]["sentryHealth"]["level"] for e in found}["admin-service"] == "Bronze"


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"), ("{not json", "is not JSON"), ('{"identifier": "x"}', "expected a JSON list")])
def test_a_bad_blueprints_file_is_refused_at_start_naming_the_variable(
        tmp_path: Path, settings_env: pytest.MonkeyPatch, content: str | None, says: str) -> None:
    path = tmp_path / "extra.json"
    if content is not None:
        path.write_text(content)
    settings_env.setenv("PORT_BLUEPRINTS_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        read_settings()
    assert "PORT_BLUEPRINTS_FILE" in str(info.value) and says in str(info.value)
