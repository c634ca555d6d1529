"""`pip install sentry_port_assets` as a library: the built wheel, installed with its dependencies into a fresh
virtual environment (not this editable checkout), in a Dagster project created on the fly; `dg scaffold defs`
(Dagster's own command, from that environment) adds two `SentryPortComponent` instances, `dg check defs` and `dg
list defs` load them with the README's variables already exported, and `dagster job execute` runs one against the emulators. The default mapping, blueprints
and examples must come from the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Callable
from importlib.metadata import version
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


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = out.glob("sentry_port_assets-*.whl")
    return wheel


def fresh_environment(where: Path, wheel: Path) -> Path:
    """A new virtual environment (no system site-packages) with the wheel and its dependencies, resolved by pip from
    the configured index as a user's install would be, plus `dg` at the version this checkout uses. Returns its bin."""
    venv.EnvBuilder(with_pip=True).create(where)
    bin_dir = where / ("Scripts" if os.name == "nt" else "bin")
    install = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              str(wheel), f"dagster-dg-cli=={version('dagster-dg-cli')}"],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, f"pip could not install the wheel into a fresh environment:\n{install.stderr[-3000:]}"
    return bin_dir


def test_the_wheel_in_a_fresh_environment_runs_one_of_two_scaffolded_components(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("defaults/mapping.yaml", "defaults/blueprints.json", "defaults/examples/mapping-with-comments.yaml",
                    "defaults/examples/mapping-organization-prefix.yaml", "sentry/seed_samples.json"):
        assert f"sentry_port_assets/{shipped}" in names, shipped
    assert not [n for n in names if n.startswith("sentry_port_assets_tests/")]
    project = tmp_path / "project"
    bin_dir = fresh_environment(project / ".venv", wheel)

    orgs = {"acme": build_org("acme"), "globex": build_org("globex", seed=8)}
    sentries = {org: sentry_emulator(data) for org, data in orgs.items()}
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    (project / "dataops" / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "dataops" / "__init__.py").write_text("")
    (project / "dataops" / "defs" / "__init__.py").write_text("")
    (project / "dataops" / "definitions.py").write_text(DEFINITIONS)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]), VIRTUAL_ENV=str(project / ".venv"),
               PYTHONPATH=str(project), DAGSTER_HOME=str(tmp_path / "home"))

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(bin_dir / command[0]), *command[1:]], cwd=project, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{' '.join(command)}:\n{(done.stdout + done.stderr)[-4000:]}"
        return done

    probe = run("python", "-c", "import sentry_port_assets as s; print(s.__file__)")
    assert probe.stdout.strip().startswith(str(project / ".venv")), f"not the wheel's copy: {probe.stdout}"
    components = run("dg", "list", "components", "--json").stdout
    # registered from sentry_port_assets.component (pyproject.toml says why); the package exports the same class
    assert "sentry_port_assets.component.SentryPortComponent" in {c["key"] for c in json.loads(components)["items"]}

    with fx.serve_port(catalog) as (url, _):
        for org, sentry in sentries.items():
            run("dg", "scaffold", "defs", "sentry_port_assets.SentryPortComponent", f"sentry_{org}",
                "--organization", org)
            defs_yaml = project / "dataops" / "defs" / f"sentry_{org}" / "defs.yaml"
            scaffolded = defs_yaml.read_text()
            assert f"sentry_token_env: {org.upper()}_SENTRY_TOKEN" in scaffolded and f"key_prefix: {org}" in scaffolded
            # what a user edits: where their Sentry and Port are (here, the emulators)
            defs_yaml.write_text(scaffolded.replace("https://sentry.io", sentry.url)
                                 .replace("https://api.getport.io", url))
        # The README's order: the variables are exported before `dg check defs`. They configure the components,
        # not the standalone code location, whose settings (no SENTRY_TOKEN, Port credentials set) would be refused
        # if dg's scan of `sentry_port_assets` (the package the type names) loaded it.
        env.update(ACME_SENTRY_TOKEN=sentries["acme"].token, GLOBEX_SENTRY_TOKEN=sentries["globex"].token,
                   PORT_CLIENT_ID=fx.CLIENT_ID, PORT_CLIENT_SECRET=fx.CLIENT_SECRET)
        run("dg", "check", "defs")
        listed = run("dg", "list", "defs", "--json").stdout
        jobs = {job["name"] for job in json.loads(listed[listed.index("{"):])["jobs"]}
        assert {"acme__sentry_port_sync", "globex__sentry_port_sync", "acme__sentry_webhook_sync"} <= jobs
        assert not any(s.requests for sentry in sentries.values() for s in sentry.state.endpoints.values()), \
            "loading the definitions sends no request"

        job = run("dagster", "job", "execute", "-m", "dataops.definitions", "-j", "acme__sentry_port_sync")
        (tmp_path / "run.log").write_text(job.stdout + job.stderr)
        held = {bp: {e["identifier"] for e in catalog.entities(bp)} for bp in expected_entities(orgs["acme"])}
        assert held == expected_entities(orgs["acme"])
        assert sentries["globex"].state.total_429 == 0 and not any(
            s.requests for s in sentries["globex"].state.endpoints.values()), "only acme's job ran"
        assert fx.CLIENT_SECRET not in job.stdout + job.stderr
    catalog.close()
