"""Configuration mistakes stop `dagster job execute` when the code location loads: before any Sentry request,
printed once, as one line naming the variable to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sentry_port_assets.config import ConfigError, read_settings
from sentry_port_assets_tests.conftest import RunningSentry

TOKEN = "sntrys_config_test_token_never_printed"
# (case, extra environment; "{sentry}" is the emulator's URL, "{org}" its slug, "{token}" its token), message part
CASES = [
    ("client id without secret", {"PORT_CLIENT_ID": "id"},
     "PORT_CLIENT_SECRET is not set while its partner is"),
    ("client secret without id", {"OCEAN__PORT__CLIENT_SECRET": "secret"},
     "PORT_CLIENT_ID is not set while its partner is"),
    ("demo data with Port credentials", {"SENTRY_TOKEN": None, "SENTRY_ORGANIZATION": None,
                                         "PORT_CLIENT_ID": "id", "PORT_CLIENT_SECRET": "secret"},
     "demo data must never reach a real Port"),
    ("host without scheme", {"SENTRY_HOST": "sentry.example.com"},
     "SENTRY_HOST='sentry.example.com' is not a URL"),
    ("host not a URL", {"SENTRY_HOST": "https://"}, "SENTRY_HOST='https://' is not a URL"),
    ("organization without token", {"SENTRY_TOKEN": None},
     "without a token the bundled demo organization would be read and the slug ignored"),
    ("resync minutes not cron", {"SENTRY_PORT_RESYNC_MINUTES": "7"},
     "SENTRY_PORT_RESYNC_MINUTES=7 cannot be expressed as a cron schedule"),
    ("resync minutes not a number", {"SENTRY_PORT_RESYNC_MINUTES": "hourly"},
     "SENTRY_PORT_RESYNC_MINUTES must be a whole number of minutes, not 'hourly'"),
    ("refused entities mode", {"PORT_REFUSED_ENTITIES": "ignore"},
     "PORT_REFUSED_ENTITIES='ignore' must be 'fail'"),
]


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__"))}
    env["DAGSTER_HOME"] = str(home)
    return env


@pytest.mark.parametrize(("extra", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_config_error_stops_the_job_before_any_sentry_request_once(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry], extra: dict[str, str | None],
        message: str) -> None:
    sentry = sentry_emulator(token=TOKEN)
    env = clean_env(tmp_path)
    env.update({"SENTRY_HOST": sentry.url, "SENTRY_ORGANIZATION": sentry.organization, "SENTRY_TOKEN": TOKEN,
                "PORT_LOCAL_CATALOG": str(tmp_path / "catalog.sqlite")})
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    run = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert output.count(message) == 1, output[-4000:]
    [line] = [line for line in output.splitlines() if message in line]
    assert line.startswith("sentry_port_assets.config.ConfigError: "), line
    assert "STEP_START" not in output and "RUN_START" not in output
    assert sentry.state.total_requests == 0
    assert TOKEN not in output
    assert not (tmp_path / "catalog.sqlite").exists()


def test_every_problem_is_named_in_the_one_line(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("OCEAN__INTEGRATION__CONFIG__SENTRY_HOST", "sentry.example.com")
    settings_env.setenv("PORT_CLIENT_ID", "id")
    settings_env.setenv("SENTRY_PORT_RESYNC_MINUTES", "0")
    with pytest.raises(ConfigError) as error:
        read_settings()
    message = str(error.value)
    assert "\n" not in message
    assert "OCEAN__INTEGRATION__CONFIG__SENTRY_HOST (alias of SENTRY_HOST)='sentry.example.com'" in message
    assert "PORT_CLIENT_SECRET is not set" in message
    assert "SENTRY_PORT_RESYNC_MINUTES=0" in message


def test_the_embedded_default_and_a_real_setup_are_valid(settings_env: pytest.MonkeyPatch) -> None:
    assert read_settings().demo
    settings_env.setenv("SENTRY_TOKEN", TOKEN)
    settings_env.setenv("SENTRY_ORGANIZATION", "acme")
    settings_env.setenv("SENTRY_HOST", "https://sentry.example.com/")
    settings_env.setenv("PORT_CLIENT_ID", "id")
    settings_env.setenv("PORT_CLIENT_SECRET", "secret")
    settings_env.setenv("SENTRY_PORT_RESYNC_MINUTES", "15")
    settings = read_settings()
    assert not settings.demo and settings.resync_cron == "*/15 * * * *"
    assert settings.sentry_token_var == "SENTRY_TOKEN" and TOKEN not in repr(settings)


def test_a_mapping_error_stops_the_load_naming_every_broken_expression(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    """A PORT_MAPPING_FILE that does not compile is caught when the code location loads, like every other setting,
    and each broken expression is named at once (fixing them one load at a time is a slow loop)."""
    sentry = sentry_emulator(token=TOKEN)
    mapping = tmp_path / "broken.yaml"
    mapping.write_text("resources:\n- kind: team\n  selector:\n    query: 'true'\n  port:\n    entity:\n"
                       "      mappings:\n        identifier: .slug |||\n        title: .name ))\n"
                       "        blueprint: '\"sentryTeam\"'\n"
                       "- kind: user\n  port:\n    entity:\n      mappings:\n        identifier: .email[\n"
                       "        blueprint: '\"sentryUser\"'\n")
    env = clean_env(tmp_path)
    env.update({"SENTRY_HOST": sentry.url, "SENTRY_ORGANIZATION": sentry.organization, "SENTRY_TOKEN": TOKEN,
                "PORT_MAPPING_FILE": str(mapping), "PORT_LOCAL_CATALOG": str(tmp_path / "catalog.sqlite")})
    run = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "RUN_START" not in output and "STEP_START" not in output, "caught at load, not by a run"
    assert f"MappingConfigError: {mapping}: 3 problems:" in output, output[-3000:]
    for broken in ("resources[0] (kind 'team') port.entity.mappings.identifier: jq expression '.slug |||'",
                   "resources[0] (kind 'team') port.entity.mappings.title: jq expression '.name ))'",
                   "resources[1] (kind 'user') port.entity.mappings.identifier: jq expression '.email['"):
        assert broken in output
    assert sentry.state.total_requests == 0 and TOKEN not in output


def test_the_mapping_comes_from_one_readable_place(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("OCEAN__INTEGRATION__IDENTIFIER", "my-sentry")
    with pytest.raises(ConfigError, match=r"OCEAN__INTEGRATION__IDENTIFIER \(alias of PORT_INTEGRATION_IDENTIFIER\) "
                                          r"is set .* set PORT_CLIENT_ID and PORT_CLIENT_SECRET"):
        read_settings()
    settings_env.setenv("PORT_MAPPING_FILE", "mine.yaml")
    with pytest.raises(ConfigError, match=r"both PORT_MAPPING_FILE \(mine.yaml\) and OCEAN__INTEGRATION__IDENTIFIER"):
        read_settings()
