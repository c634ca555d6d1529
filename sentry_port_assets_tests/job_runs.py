"""`dagster job execute -m sentry_port_assets` as users run it: a subprocess with a clean environment (no setting of
the test process leaks in), against emulators the test started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from dagster import AssetKey, DagsterInstance

from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import SETTINGS_PREFIXES, RunningSentry


def job_env(home: Path, sentry: RunningSentry, port_url: str, **more: str) -> dict[str, str]:
    """The standalone code location's variables for `sentry` into the Port at `port_url` (the fixtures' credentials),
    with DAGSTER_HOME `home`, plus `more`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*SETTINGS_PREFIXES, "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), SENTRY_HOST=sentry.url, SENTRY_ORGANIZATION=sentry.organization,
               SENTRY_TOKEN=sentry.token, PORT_BASE_URL=port_url, PORT_CLIENT_ID=fx.CLIENT_ID,
               PORT_CLIENT_SECRET=fx.CLIENT_SECRET, **more)
    return env


def execute(job: str, env: dict[str, str], cwd: Path, config: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `job`; with `check`, asserts it succeeded (showing the end of its output otherwise)."""
    args = [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", job]
    if config is not None:
        path = cwd / f"{job}-config.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["-c", str(path)]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def latest_publish(home: Path, prefix: str = "") -> dict[str, Any]:
    """The metadata of the newest `port/catalog` materialization in the instance at `home`, as plain values."""
    key = AssetKey([prefix, "port", "catalog"] if prefix else ["port", "catalog"])
    with DagsterInstance.from_config(str(home)) as instance:
        record = instance.fetch_materializations(key, limit=1).records[0]
        return {k: v.value for k, v in record.asset_materialization.metadata.items()}
