"""`sentry-port catalog`, the target chosen from the environment, and no secret anywhere it could leak."""

from __future__ import annotations

import argparse
import asyncio
import io
import json

import pytest

from sentry_port_assets.emulators.port import Fault
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.cli import main as catalog_main
from sentry_port_assets.cli.catalog import run_catalog
from sentry_port_assets.port.policy import PublishPolicy
from sentry_port_assets.port.errors import PortConfigError, PortError
from sentry_port_assets.port.reconciler import reconcile
from sentry_port_assets.port.target import LocalCatalogTarget, PortApiTarget
from sentry_port_assets.config import ConfigError
from sentry_port_assets.resources import build_resources
from sentry_port_assets.resources.demo import DemoPortResource
from sentry_port_assets_tests import port_fixtures as fx


def _publish(target, entities):
    async def go():
        async with target:
            return await reconcile(
                target, entities, PublishPolicy(owned=frozenset(fx.OWNED), blueprints=fx.blueprints(),
                                                fragments=[fx.USER_FRAGMENT], ensure_blueprints=True),
                allow_delete=True, blocked_reason=None,
            )

    return asyncio.run(go())


def test_catalog_cli_lists_blueprints_and_entities(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    _publish(LocalCatalogTarget(path), fx.dataset())
    assert catalog_main(["catalog", "--path", str(path)]) == 0
    table = capsys.readouterr().out
    assert "tIssue" in table and "8" in table and "16 entities in 4 blueprints" in table

    assert catalog_main(["catalog", "--path", str(path), "--blueprint", "tIssue", "--json"]) == 0
    issues = json.loads(capsys.readouterr().out)
    assert [e["identifier"] for e in issues][:2] == ["ISSUE-0", "ISSUE-1"]
    assert issues[1]["relations"]["assignee"] == "user1@example.com"

    assert catalog_main(["catalog", "--path", str(path), "--blueprint", "tUser"]) == 0
    assert "user3@example.com" in capsys.readouterr().out
    assert catalog_main(["catalog", "--path", str(path), "--blueprint", "nope"]) == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_catalog_cli_fits_values_to_the_terminal_or_shows_them_whole(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    link = "https://sentry.example.com/organizations/acme/issues/4605173695/?environment=" + "production" * 12
    user = fx.user(1)
    user["properties"]["role"] = link
    _publish(LocalCatalogTarget(path), [user])
    monkeypatch.setenv("COLUMNS", "80")

    def show(*extra: str, out: io.StringIO) -> list[str]:
        args = ["--path", str(path), "--blueprint", "tUser", *extra]
        assert run_catalog(_parse(args), out, io.StringIO()) == 0
        return out.getvalue().splitlines()

    fitted = show(out=Terminal())
    assert max(len(line) for line in fitted if line.startswith(("- ", "    "))) == 80
    [role] = [line for line in fitted if line.startswith("    role: ")]
    assert role.endswith("…") and role[len("    role: "):-1] in link
    assert f"    role: {link}" in show("--wide", out=Terminal())
    assert f"    role: {link}" in show(out=io.StringIO()), "piped output keeps whole values"


def _parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    from sentry_port_assets.cli.catalog import add_catalog_parser

    add_catalog_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["catalog", *args])


def test_catalog_cli_does_not_create_a_missing_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("PORT_LOCAL_CATALOG", str(tmp_path / "missing.sqlite"))

    err = io.StringIO()
    assert run_catalog(argparse.Namespace(path=None, blueprint=None, json=False), io.StringIO(), err) == 1
    assert "missing.sqlite" in err.getvalue()
    assert not (tmp_path / "missing.sqlite").exists()


def target_from_env():
    """The Port target exactly as the Dagster definitions build it from the environment."""
    return build_resources()["port"].process_config_and_initialize().target()


def test_target_from_env(tmp_path, monkeypatch):
    for name in ("PORT_CLIENT_ID", "PORT_CLIENT_SECRET", "PORT_BASE_URL", "OCEAN__PORT__CLIENT_ID", "OCEAN__PORT__CLIENT_SECRET", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT_LOCAL_CATALOG", str(tmp_path / "env.sqlite"))
    local = target_from_env()
    assert isinstance(local, LocalCatalogTarget) and local.catalog.path == tmp_path / "env.sqlite"
    asyncio.run(local.aclose())

    monkeypatch.delenv("PORT_LOCAL_CATALOG")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    local = target_from_env()
    assert local.catalog.path == tmp_path / "home" / "sentry_port" / "catalog.sqlite"
    asyncio.run(local.aclose())

    monkeypatch.setenv("OCEAN__PORT__CLIENT_ID", fx.CLIENT_ID)
    with pytest.raises(ConfigError, match="PORT_CLIENT_SECRET is not set"):
        target_from_env()
    monkeypatch.setenv("PORT_CLIENT_SECRET", fx.CLIENT_SECRET)
    with pytest.raises(ConfigError, match="demo") as demo:
        target_from_env()  # no SENTRY_TOKEN: the demo organization is the source
    assert fx.CLIENT_SECRET not in str(demo.value)
    with pytest.raises(PortConfigError, match="demo"):  # the same rule where a run's own config builds the target
        DemoPortResource(client_id="id", client_secret="secret").target()
    monkeypatch.setenv("SENTRY_TOKEN", "token")
    monkeypatch.setenv("SENTRY_ORGANIZATION", "acme")
    monkeypatch.setenv("PORT_BASE_URL", "http://127.0.0.1:9")
    api = target_from_env()
    assert isinstance(api, PortApiTarget) and api.description == "Port at http://127.0.0.1:9"
    assert fx.CLIENT_SECRET not in repr(api.client) and fx.CLIENT_SECRET not in api.description
    asyncio.run(api.aclose())


def _texts(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_no_secret_in_errors_or_in_the_sqlite_file(tmp_path):
    path = tmp_path / "port.sqlite"
    catalog = LocalCatalog(path)
    catalog.create_blueprint(fx.PORT_USER)
    faults = [Fault("bulk_upsert", status=500, times=1), Fault("search", kind="drop", times=1)]
    with fx.serve_port(catalog, faults=faults) as (url, emulator):
        report = _publish(PortApiTarget(fx.client(url)), fx.dataset() + [fx.port_user_link(1)])
        assert report.ok, report.failures
        # an entity the emulator refuses: its 207 message goes into the report
        bad = fx.user(77, active="not a bool")
        report = _publish(PortApiTarget(fx.client(url)), fx.dataset() + [bad])
        assert [f.identifier for f in report.failures] == ["user77@example.com"]

        errors: list[BaseException] = []
        for fault in (Fault("blueprint_get", status=503, times=50), Fault("blueprint_get", status=401, times=50)):
            emulator.faults[:] = [fault]
            try:
                _publish(PortApiTarget(fx.client(url, max_retries=1)), fx.dataset())
            except PortError as exc:
                errors.append(exc)
        emulator.faults[:] = []
        tokens = list(emulator._tokens)
    assert len(errors) == 2 and len(tokens) >= 3
    catalog.close()

    secrets = [fx.CLIENT_SECRET, *tokens]
    for exc in errors:
        text = _texts(exc)
        assert "X-Trace-Id" in text
        assert not any(s in text for s in secrets), text
    metadata = json.dumps(report.to_metadata())
    assert not any(s in metadata for s in secrets)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("port.sqlite")]
    assert files
    for file in files:
        data = file.read_bytes()
        assert not any(s.encode() in data for s in secrets), file


def test_catalog_summary_says_how_many_port_users_a_publish_creates(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    report = _publish(LocalCatalogTarget(path), fx.dataset() + [fx.port_user_link(i) for i in range(3)])
    assert report.to_metadata()["port_users_created"] == 3
    assert catalog_main(["catalog", "--path", str(path)]) == 0
    assert "3 _user entities: in this local file they are only entities; published to Port, each would be a Port user" in capsys.readouterr().out
