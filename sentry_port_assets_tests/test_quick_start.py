"""The README's quick start as a new user runs it: the main job on the embedded default, then `sentry-port catalog`.
It prints what a user needs (progress, counts, where the entities went), not Dagster's DEBUG events, and the
bundled demo with the bundled mapping reports no misconfiguration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_start_is_quiet_and_lands_in_the_local_catalog(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    # The README's DAGSTER_HOME: the repository's dagster_home/ (copied, so the test writes nothing there).
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(home)
    run = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    lines = output.splitlines()
    assert not [line for line in lines if " - DEBUG - " in line]
    assert "BetaWarning" not in output
    assert "misconfigured" not in output
    assert sum("reading the bundled DEMO organization" in line for line in lines) == 1
    assert re.search(r"published to local catalog \S*catalog\.sqlite: 76 created, 0 updated", output), output[-2000:]
    assert len(lines) <= 20, output

    shown = subprocess.run([sys.executable, "-m", "sentry_port_assets.cli", "catalog"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "76 entities" in shown.stdout and "sentryIssue" in shown.stdout

    debug = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_refresh"],
        cwd=tmp_path, env={**env, "SENTRY_PORT_LOG_LEVEL": "debug"}, capture_output=True, text=True, timeout=600)
    assert debug.returncode == 0 and " - DEBUG - " in debug.stdout + debug.stderr
