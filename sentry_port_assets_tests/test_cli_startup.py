"""The `sentry-port` command does not load the Dagster definitions: it starts fast, and settings that only the
Dagster code location checks (an invalid schedule variable, half the Port credentials) do not break it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BROKEN_FOR_DAGSTER = {"SENTRY_PORT_RESYNC_MINUTES": "7", "PORT_CLIENT_ID": "only-the-id"}
# Runs a command in-process, then reports which Dagster modules it loaded.
PROBE = """
import json, sys
from sentry_port_assets.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "dagster": sorted(m for m in sys.modules if m.split(".")[0] == "dagster")}))
"""


def run(args: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **BROKEN_FOR_DAGSTER, "DAGSTER_HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ["catalog", "--path", "missing.sqlite"],
    ["map", "--raw", "-"],
], ids=["catalog", "map"])
def test_commands_run_without_loading_dagster(tmp_path: Path, args: list[str]) -> None:
    done = run(args, tmp_path, stdin=json.dumps({"team": [{"slug": "a", "name": "A", "projects": []}]}))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dagster"] == [], report["dagster"][:5]
    assert report["code"] == (1 if args[0] == "catalog" else 0), done.stderr


def test_help_of_every_command_needs_no_dagster(tmp_path: Path) -> None:
    for args in (["--help"], ["map", "--help"], ["catalog", "--help"], ["webhooks", "serve", "--help"]):
        env = {**os.environ, **BROKEN_FOR_DAGSTER}
        probe = ("import sys, runpy\nsys.argv = ['sentry-port', *sys.argv[1:]]\ntry:\n"
                 "    runpy.run_module('sentry_port_assets.cli', run_name='__main__')\nexcept SystemExit as e:\n"
                 "    assert e.code in (0, None), e.code\n"
                 "assert not [m for m in sys.modules if m.split('.')[0] == 'dagster'], 'dagster was imported'\n")
        done = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert "usage: sentry-port" in done.stdout, args
