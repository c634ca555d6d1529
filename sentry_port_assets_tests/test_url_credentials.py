"""A password in SENTRY_HOST or PORT_BASE_URL (`http://user:PASSWORD@host`, as for a basic-auth proxy) used to
replace the Bearer token with Basic auth (every call 401, blamed on SENTRY_TOKEN) and to be stored in Dagster's run
snapshots, asset metadata and the tag-cache key. Such URLs are refused wherever they enter (the settings, the
component's attributes, the resources, the clients), naming the variable and never repeating the password; a proxy
that needs a password is set in HTTP(S)_PROXY, which httpx reads and sends to the proxy alone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dagster.components.testing import create_defs_folder_sandbox

from sentry_port_assets.component import SentryPortComponent
from sentry_port_assets.config import ConfigError, read_settings
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.client import PortClient
from sentry_port_assets.port.errors import PortConfigError
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sentry.client import SentryClient
from sentry_port_assets.sentry.errors import SentryConfigError
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.port_fixtures import serve_port
from sentry_port_assets_tests.proxy import ForwardProxy

PASSWORD = "Pr0xyPassw0rd-never-shown"
TOKEN = "sntryu_url_credentials_token_never_shown"
JOB = [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"]


def _env(home: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_")) and "proxy" not in k.lower()}
    env.update(DAGSTER_HOME=str(home), **values)
    return env


def _files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def with_password(url: str) -> str:
    scheme, rest = url.split("//", 1)
    return f"{scheme}//proxyuser:{PASSWORD}@{rest}"


@pytest.mark.parametrize("case", ["SENTRY_HOST", "OCEAN__INTEGRATION__CONFIG__SENTRY_HOST", "PORT_BASE_URL",
                                  "malformed", "no scheme"])
def test_a_password_in_a_url_setting_stops_the_job_naming_the_variable_never_the_password(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry], case: str) -> None:
    """Run as users run it (`dagster job execute`): the load fails before any request, the message names the
    variable, and the password is in no output and no file of DAGSTER_HOME or the working directory."""
    sentry = sentry_emulator(token=TOKEN)
    catalog = tmp_path / "catalog.sqlite"
    with serve_port(LocalCatalog(catalog)) as (port_url, port_state):
        values = {"SENTRY_HOST": sentry.url, "SENTRY_ORGANIZATION": sentry.organization, "SENTRY_TOKEN": TOKEN,
                  "PORT_BASE_URL": port_url, "PORT_CLIENT_ID": fx.CLIENT_ID, "PORT_CLIENT_SECRET": fx.CLIENT_SECRET}
        named = case
        if case in ("SENTRY_HOST", "OCEAN__INTEGRATION__CONFIG__SENTRY_HOST"):
            del values["SENTRY_HOST"]
            values[case] = with_password(sentry.url)
        elif case == "PORT_BASE_URL":
            values[case] = with_password(port_url)
        elif case == "malformed":  # not even a URL, and a password in it
            values["SENTRY_HOST"], named = f"htps:/proxyuser:{PASSWORD}@{sentry.url.split('//')[1]}", "SENTRY_HOST"
        else:
            values["SENTRY_HOST"], named = f"proxyuser:{PASSWORD}@{sentry.url.split('//')[1]}", "SENTRY_HOST"
        run = subprocess.run(JOB, cwd=tmp_path, env=_env(tmp_path, **values), capture_output=True, text=True,
                             timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert named in output and "ConfigError" in output, output[-3000:]
    assert PASSWORD not in output and TOKEN not in output
    assert not _files_holding(tmp_path, PASSWORD)
    assert "RUN_START" not in output
    assert sentry.state.total_requests == 0, "Sentry was called with the password as Basic auth"
    assert port_state.stats.total_requests == 0


@pytest.mark.parametrize("build", [
    lambda: SentryResource(host=with_password("https://sentry.example.com"), organization="acme", token="t"),
    lambda: PortResource(base_url=with_password("https://api.getport.io")),
    lambda: SentryClient(with_password("https://sentry.example.com"), "acme", "t"),
    lambda: PortClient("id", "secret", with_password("https://api.getport.io")),
], ids=["SentryResource", "PortResource", "SentryClient", "PortClient"])
def test_resources_and_clients_refuse_a_password_in_their_url_without_repeating_it(build: Callable[[], object]) -> None:
    """Where code builds them by hand (build_sentry_port_defs): refused when built, before a run snapshot holds the
    config, with our error rather than pydantic's, whose message would repeat the value."""
    with pytest.raises((SentryConfigError, PortConfigError)) as refused:
        build()
    assert PASSWORD not in str(refused.value) and "user name or password" in str(refused.value)


def test_the_settings_name_the_alias_and_each_url(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("OCEAN__INTEGRATION__CONFIG__SENTRY_HOST", with_password("https://sentry.example.com"))
    settings_env.setenv("PORT_BASE_URL", with_password("https://api.getport.io"))
    with pytest.raises(ConfigError) as refused:
        read_settings()
    message = str(refused.value)
    assert "OCEAN__INTEGRATION__CONFIG__SENTRY_HOST (alias of SENTRY_HOST) holds a user name or password" in message
    assert "PORT_BASE_URL holds a user name or password" in message and "HTTPS_PROXY" in message
    assert PASSWORD not in message


@pytest.mark.parametrize("attribute", ["sentry_host", "port_base_url"])
def test_a_component_attribute_with_a_password_is_refused_naming_it_and_its_file(attribute: str) -> None:
    with create_defs_folder_sandbox() as sandbox:
        sandbox.scaffold_component(SentryPortComponent, defs_path="acme", defs_yaml_contents={
            "type": "sentry_port_assets.SentryPortComponent",
            "attributes": {"key_prefix": "acme", attribute: with_password("https://example.com")}})
        with pytest.raises(Exception) as refused:
            with sandbox.build_all_defs():
                pass
    text = str(refused.value) + str(refused.value.__cause__ or "")
    assert f"{attribute} holds a user name or password" in text and "acme" in text
    assert PASSWORD not in text


def test_the_map_command_refuses_a_password_in_port_base_url(tmp_path: Path) -> None:
    raw = tmp_path / "raw.json"
    raw.write_text("{}")
    run = subprocess.run([sys.executable, "-m", "sentry_port_assets.cli", "map", "--raw", str(raw)], cwd=tmp_path,
                         env=_env(tmp_path, PORT_INTEGRATION_IDENTIFIER="sentry", PORT_CLIENT_ID="id",
                                  PORT_CLIENT_SECRET="secret", PORT_BASE_URL=with_password("http://127.0.0.1:9")),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "PORT_BASE_URL holds a user name or password" in run.stderr and PASSWORD not in run.stdout + run.stderr


def test_a_proxy_that_needs_a_password_is_set_in_http_proxy_and_the_token_still_reaches_sentry(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    """The supported way through a password-protected proxy: HTTP_PROXY (HTTPS_PROXY for https:// services) holds
    the proxy's URL with its password; httpx sends it to the proxy as Proxy-Authorization, the service still gets the
    Bearer token, and the password reaches no output and no file."""
    sentry = sentry_emulator(token=TOKEN)
    catalog = LocalCatalog(tmp_path / "catalog.sqlite")
    catalog.create_blueprint(fx.PORT_USER)
    with ForwardProxy("proxyuser", PASSWORD).running() as proxy, serve_port(catalog) as (port_url, _):
        proxy_url = with_password(proxy.url)
        run = subprocess.run(JOB, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env(
            tmp_path, SENTRY_HOST=sentry.url, SENTRY_ORGANIZATION=sentry.organization, SENTRY_TOKEN=TOKEN,
            PORT_BASE_URL=port_url, PORT_CLIENT_ID=fx.CLIENT_ID, PORT_CLIENT_SECRET=fx.CLIENT_SECRET,
            HTTP_PROXY=proxy_url))
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert proxy.forwarded >= sentry.state.total_requests > 0 and proxy.refused == 0
    assert f"Bearer {TOKEN}" in proxy.seen_authorization, "Sentry got the token, not the proxy's password"
    assert catalog.count("sentryIssue") > 0
    assert PASSWORD not in output and not _files_holding(tmp_path, PASSWORD)
