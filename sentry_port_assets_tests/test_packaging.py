"""`pip install sentry_port_assets` as a library: the built wheel (not this editable checkout) in a Dagster project
created on the fly with two `SentryPortComponent` instances, one of which `dagster job execute` runs against the
emulators. The default mapping, blueprints and examples must come from the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.test_end_to_end import PORT_USER, expected_entities

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = """[project]
name = "dataops"
version = "0.0.1"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "dataops"
code_location_name = "dataops.definitions"
"""
DEFINITIONS = """from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""
COMPONENT = """type: sentry_port_assets.SentryPortComponent
attributes:
  key_prefix: {org}
  sentry_host: {host}
  sentry_organization: {org}
  sentry_token_env: {org_upper}_SENTRY_TOKEN
  port_base_url: {port}
  port_client_id_env: PORT_CLIENT_ID
  port_client_secret_env: PORT_CLIENT_SECRET
  port_identity: sentry-{org}
  webhooks: false
"""


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = out.glob("sentry_port_assets-*.whl")
    return wheel


def test_the_wheel_runs_one_of_two_components_in_another_dagster_project(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("defaults/mapping.yaml", "defaults/blueprints.json", "defaults/examples/mapping-with-comments.yaml",
                    "defaults/examples/mapping-organization-prefix.yaml", "sentry/seed_samples.json"):
        assert f"sentry_port_assets/{shipped}" in names, shipped
    assert not [n for n in names if n.startswith("sentry_port_assets_tests/")]
    site = tmp_path / "site"  # the wheel installed on its own; its dependencies are this interpreter's
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)

    orgs = {"acme": build_org("acme"), "globex": build_org("globex", seed=8)}
    sentries = {org: sentry_emulator(data) for org, data in orgs.items()}
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    project = tmp_path / "project"
    with fx.serve_port(catalog) as (url, _):
        for org, sentry in sentries.items():
            folder = project / "dataops" / "defs" / f"sentry_{org}"
            folder.mkdir(parents=True)
            (folder / "defs.yaml").write_text(COMPONENT.format(org=org, org_upper=org.upper(), host=sentry.url,
                                                               port=url))
        (project / "pyproject.toml").write_text(PYPROJECT)
        (project / "dataops" / "__init__.py").write_text("")
        (project / "dataops" / "defs" / "__init__.py").write_text("")
        (project / "dataops" / "definitions.py").write_text(DEFINITIONS)
        (tmp_path / "home").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
        env.update(PYTHONPATH=os.pathsep.join([str(site), str(project)]), DAGSTER_HOME=str(tmp_path / "home"),
                   ACME_SENTRY_TOKEN=sentries["acme"].token, GLOBEX_SENTRY_TOKEN=sentries["globex"].token,
                   PORT_CLIENT_ID=fx.CLIENT_ID, PORT_CLIENT_SECRET=fx.CLIENT_SECRET)
        probe = subprocess.run([sys.executable, "-c", "import sentry_port_assets as s; print(s.__file__)"],
                               cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip().startswith(str(site)), f"not the wheel's copy: {probe.stdout}{probe.stderr}"
        run = subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "dataops.definitions",
                              "-j", "acme__sentry_port_sync"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=600)
        (tmp_path / "run.log").write_text(run.stdout + run.stderr)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        held = {bp: {e["identifier"] for e in catalog.entities(bp)} for bp in expected_entities(orgs["acme"])}
        assert held == expected_entities(orgs["acme"])
        assert sentries["globex"].state.total_429 == 0 and not any(
            s.requests for s in sentries["globex"].state.endpoints.values()), "only acme's job ran"
        assert fx.CLIENT_SECRET not in run.stdout + run.stderr
    catalog.close()
