"""The README's quick start as a new user runs it: its bash block, literally, in a fresh copy of the repository, with a
home directory of its own. It prints what a user needs (progress, counts, where the entities went), not Dagster's
DEBUG events, writes nothing outside the folder (no `~/.dagster`, no `./.sentry_port/`), and `sentry-port catalog`
reads what the job wrote. Two lines of the block are the machine's, not the folder's, and are not re-run here:
`pip install -e '.[dev]'` (done by CI before the suite; a second editable install would move the package under the
other tests) and `pytest` (this suite)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
NOT_RERUN = ("pip install", "pytest")


def quick_start_block() -> list[str]:
    """The commands of the README's first bash block under `## Quick start`, comments dropped."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Quick start"):]
    block = section[section.index("```bash\n") + len("```bash\n"):]
    block = block[:block.index("```")]
    return [line.split("   #")[0].split("  #")[0].rstrip() for line in block.splitlines() if line.strip()]


def fresh_copy(where: Path) -> Path:
    """The repository's tracked files, as a clone has them."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        target = where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return where


def test_the_readme_quick_start_runs_as_written_and_writes_only_in_its_folder(tmp_path: Path) -> None:
    commands = quick_start_block()
    assert commands[0] == "pip install -e '.[dev]'" and commands[1] == 'export DAGSTER_HOME="$PWD/dagster_home"', \
        "DAGSTER_HOME comes first, before anything writes"
    folder = fresh_copy(tmp_path / "sentry_port_assets")
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    env.update(HOME=str(home), TMPDIR=str(scratch), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    script = "set -euo pipefail\n" + "\n".join(
        f"echo '>>> {c}'\n{c}" for c in commands if not c.startswith(NOT_RERUN))
    run = subprocess.run(["bash", "-c", script], cwd=folder, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=600)
    output = run.stdout
    assert run.returncode == 0, output[-4000:]

    job, catalog = output.split(">>> sentry-port catalog")
    lines = job.splitlines()[1:]
    assert not [line for line in lines if " - DEBUG - " in line]
    assert "BetaWarning" not in job and "misconfigured" not in job
    assert sum(" - WARNING - " in line for line in lines) == 1, "one warning, the demo organization:\n" + job
    assert sum("reading the bundled DEMO organization" in line for line in lines) == 1
    written = re.search(r"wrote the local catalog (\S*catalog\.sqlite): 161 created, 3 updated", job)
    assert written, job[-2000:]
    assert Path(written.group(1)) == folder / "dagster_home" / "sentry_port" / "catalog.sqlite"
    assert len(lines) <= 25, "the README says about twenty lines:\n" + job
    assert "164 entities" in catalog and "sentryIssue" in catalog and "sentryRelease" in catalog and str(folder / "dagster_home") in catalog
    # the demo's environments, with what Port computes from their deploys and issues (aggregation properties)
    listed = subprocess.run(["sentry-port", "catalog", "-b", "sentryProjectEnvironment", "--json"], cwd=folder,
                            env={**env, "DAGSTER_HOME": str(folder / "dagster_home")}, capture_output=True, text=True)
    environments = json.loads(listed.stdout)
    assert all(e["relations"]["project"] == e["identifier"].rsplit("-", 1)[0] for e in environments), environments
    assert any(e["properties"]["deploysLast30Days"] > 0 and e["properties"]["lastDeployFinished"] for e in environments)

    assert not list(home.iterdir()), f"written to the home directory: {list(home.rglob('*'))[:5]}"
    assert not (folder / ".sentry_port").exists(), "the catalog went to ./.sentry_port instead of DAGSTER_HOME"
    assert (folder / "dagster_home" / "storage").is_dir() or (folder / "dagster_home" / "history").is_dir()


def test_debug_brings_dagsters_events_back(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env.update(DAGSTER_HOME=str(home), SENTRY_PORT_LOG_LEVEL="debug")
    debug = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_refresh"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert debug.returncode == 0 and " - DEBUG - " in debug.stdout + debug.stderr


def test_dg_launches_the_job_and_lists_the_definitions(tmp_path: Path) -> None:
    """The repository is a dg project too (`[tool.dg]`): `dg launch --job sentry_port_sync`, the command Dagster 1.13
    recommends over `dagster job execute`, runs the same job; `dg check defs` loads the same definitions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env.update(DAGSTER_HOME=str(home), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    dg = shutil.which("dg", path=env["PATH"])
    assert dg, "dagster-dg-cli is in [dev]"
    checked = subprocess.run([dg, "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and "All definitions loaded successfully" in checked.stdout + checked.stderr
    launched = subprocess.run([dg, "launch", "--job", "sentry_port_sync"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
    output = launched.stdout + launched.stderr
    assert launched.returncode == 0, output[-3000:]
    assert re.search(r"wrote the local catalog \S*catalog\.sqlite: 161 created, 3 updated", output), output[-2000:]


SENSORS = """
query { sensorsOrError(repositorySelector: {repositoryLocationName: "sentry_port_assets", repositoryName:
  "__repository__"}) { ... on Sensors { results { name sensorState { status } } } } }"""


def test_dg_dev_serves_the_project_with_its_daemon(tmp_path: Path) -> None:
    """`dg dev` (Dagster's recommended `dagster dev`) in this folder: the code location loads under the project's
    name, with its jobs, and the webhook sensor is stopped where nothing configures webhooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env.update(DAGSTER_HOME=str(home), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([shutil.which("dg", path=env["PATH"]) or "dg", "dev", "--host", "127.0.0.1", "--port",
                                str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 180
        sensors: list[dict] = []
        while not sensors:
            assert process.poll() is None, process.stderr.read().decode()[-3000:] if process.stderr else ""
            assert time.monotonic() < deadline, "dg dev did not serve the code location"
            try:
                answer = httpx.post(url, json={"query": SENSORS}, timeout=10).json()
                sensors = (answer.get("data") or {}).get("sensorsOrError", {}).get("results") or []
            except httpx.TransportError:
                pass
            time.sleep(1)
        status = {s["name"]: s["sensorState"]["status"] for s in sensors}
        assert status == {"port_mapping_sensor": "RUNNING", "publish_on_new_entities": "RUNNING",
                          "sentry_release_sensor": "RUNNING", "sentry_webhook_sensor": "STOPPED"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
