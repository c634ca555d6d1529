"""One receiver for several Sentry installations: each delivery is verified with its own installation's secret
(picked by the envelope's `installation.uuid`, as Sentry's `AppPlatformEvent` sends it), stored with that
installation, and applied only by the instance of that organization."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from dagster import DagsterInstance, Definitions, SensorResult, build_sensor_context
from sqlalchemy import MetaData, Table, create_engine, inspect
from sqlalchemy.engine import make_url

from sentry_port_assets.config import ConfigError, webhook_secrets
from sentry_port_assets.emulators.sentry_data import build_org
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.names import Names
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets.sensors.webhooks import build_webhook_sensor
from sentry_port_assets.webhooks import inbox as inbox_module
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets.webhooks.job import OP, build_webhook_job
from sentry_port_assets.webhooks.receiver import WebhookSecretMissing, create_receiver, sign
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry
from sentry_port_assets_tests.test_end_to_end import PORT_USER
from sentry_port_assets_tests.test_factory import PREFIXED, org_instance

ACME, GLOBEX = "54a3e698-f389-4d86-b9f8-50093a228449", "d5a2de51-0138-496a-8e79-c17747c3a40d"
SECRETS = {ACME: "acme-client-secret-91f2", GLOBEX: "globex-client-secret-c07e"}


def envelope(installation: str | None, issue: dict[str, Any], action: str = "resolved") -> bytes:
    body: dict[str, Any] = {"action": action, "data": {"issue": issue},
                            "actor": {"type": "application", "id": "sentry", "name": "Sentry"}}
    if installation is not None:
        body["installation"] = {"uuid": installation}
    return json.dumps(body, separators=(",", ":")).encode()


def post(url: str, body: bytes, secret: str, request_id: str) -> httpx.Response:
    return httpx.post(f"{url}/webhooks/sentry", content=body, timeout=10, headers={
        "Content-Type": "application/json", "Sentry-Hook-Resource": "issue", "Request-ID": request_id,
        "Sentry-Hook-Signature": sign(secret, body), "Sentry-Hook-Timestamp": str(int(time.time()))})


# -- the receiver --------------------------------------------------------------------------------------------------


def test_each_installation_is_verified_with_its_own_secret(tmp_path: Path) -> None:
    issue = {"id": "42", "status": "resolved"}
    with Inbox(tmp_path / "inbox.sqlite") as inbox, ServerThread(create_receiver(SECRETS, inbox)) as server:
        for n, installation in enumerate((ACME, GLOBEX)):
            answer = post(server.url, envelope(installation, issue), SECRETS[installation], f"ok-{n}")
            assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
        refused = {
            "signed with the other installation's secret": (envelope(ACME, issue), SECRETS[GLOBEX], 401),
            "an installation not configured": (envelope("0000-unknown", issue), SECRETS[ACME], 401),
            "no installation at all": (envelope(None, issue), SECRETS[ACME], 401),
            "not JSON, so no installation can be read": (b"not json", SECRETS[ACME], 400),
        }
        for n, (why, (body, secret, status)) in enumerate(refused.items()):
            answer = post(server.url, body, secret, f"bad-{n}")
            assert answer.status_code == status, (why, answer.text)
            assert not any(s in answer.text for s in SECRETS.values())
        stored = inbox.pending_after(0, 10)
    assert [(e.request_id, e.installation) for e in stored] == [("ok-0", ACME), ("ok-1", GLOBEX)]


def test_one_secret_for_every_installation_still_works_and_records_the_installation(tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.sqlite") as inbox, ServerThread(create_receiver("shared", inbox)) as server:
        assert post(server.url, envelope(GLOBEX, {"id": "7"}), "shared", "r").status_code == 202
        assert post(server.url, envelope(None, {"id": "8"}), "shared", "s").status_code == 202
        assert [e.installation for e in inbox.pending_after(0, 10)] == [GLOBEX, None]


def test_a_receiver_refuses_an_installation_without_a_secret(tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.sqlite") as inbox:
        for secrets in ({}, {ACME: "x", GLOBEX: " "}):
            with pytest.raises(WebhookSecretMissing, match="SENTRY_WEBHOOK"):
                create_receiver(secrets, inbox)


@pytest.mark.parametrize("environment, problem", [
    ({}, "SENTRY_WEBHOOK_SECRET is not set"),
    ({"SENTRY_WEBHOOK_SECRET": "s", "SENTRY_WEBHOOK_INSTALLATIONS": f"{ACME}=ACME_SECRET"}, "both set"),
    ({"SENTRY_WEBHOOK_INSTALLATIONS": f"{ACME}"}, "is not uuid=VARIABLE_NAME"),
    ({"SENTRY_WEBHOOK_INSTALLATIONS": f"{ACME}=acme-secret-value"}, "is not uuid=VARIABLE_NAME"),
    ({"SENTRY_WEBHOOK_INSTALLATIONS": f"{ACME}=ACME_SECRET"}, f"ACME_SECRET (the secret of installation {ACME}) is "
                                                             "not set"),
    ({"SENTRY_WEBHOOK_INSTALLATIONS": f"{ACME}=GLOBEX_SECRET,{ACME}=GLOBEX_SECRET", "GLOBEX_SECRET": "g"},
     "listed twice"),
], ids=["nothing", "both", "no-variable", "a-value-not-a-name", "variable-unset", "twice"])
def test_the_installations_setting_names_what_to_fix(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str],
                                                     problem: str) -> None:
    for name in ("SENTRY_WEBHOOK_SECRET", "SENTRY_WEBHOOK_INSTALLATIONS", "ACME_SECRET", "GLOBEX_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(problem)) as refused:
        webhook_secrets()
    assert "acme-secret-value" not in str(refused.value)


def test_the_installations_setting_reads_each_secret_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("SENTRY_WEBHOOK_INSTALLATIONS", f" {ACME}=ACME_SECRET,\n{GLOBEX}=GLOBEX_SECRET ")
    monkeypatch.setenv("ACME_SECRET", SECRETS[ACME])
    monkeypatch.setenv("GLOBEX_SECRET", SECRETS[GLOBEX])
    assert webhook_secrets() == SECRETS


def test_the_command_serves_several_installations(tmp_path: Path) -> None:
    """`sentry-port webhooks serve` in its own process, configured as a deployment would configure it."""
    inbox_path = tmp_path / "inbox.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_WEBHOOK")}
    env.update(SENTRY_WEBHOOK_INSTALLATIONS=f"{ACME}=ACME_WEBHOOK_SECRET {GLOBEX}=GLOBEX_WEBHOOK_SECRET",
               ACME_WEBHOOK_SECRET=SECRETS[ACME], GLOBEX_WEBHOOK_SECRET=SECRETS[GLOBEX])
    proc = subprocess.Popen([sys.executable, "-m", "sentry_port_assets.cli", "webhooks", "serve", "--host",
                             "127.0.0.1", "--port", "0", "--inbox", str(inbox_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        assert proc.stderr is not None
        port = None
        for line in proc.stderr:
            log.append(line)
            if match := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "".join(log)
        url = f"http://127.0.0.1:{port}"
        assert post(url, envelope(ACME, {"id": "1"}), SECRETS[ACME], "a").status_code == 202
        assert post(url, envelope(GLOBEX, {"id": "2"}), SECRETS[GLOBEX], "g").status_code == 202
        assert post(url, envelope(GLOBEX, {"id": "3"}), SECRETS[ACME], "x").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
        log.append(rest or "")
    assert f"installations {ACME}, {GLOBEX}" in "".join(log)
    assert not any(secret in "".join(log) for secret in SECRETS.values())
    with Inbox(inbox_path) as inbox:
        assert [(e.request_id, e.installation) for e in inbox.pending_after(0, 10)] == [("a", ACME), ("g", GLOBEX)]
    status = subprocess.run([sys.executable, "-m", "sentry_port_assets.cli", "webhooks", "status", "--inbox",
                             str(inbox_path)], env=env, capture_output=True, text=True, timeout=60)
    assert f"installation {ACME}: 1 pending" in status.stdout and f"installation {GLOBEX}: 1 pending" in status.stdout


# -- the inbox -----------------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "inbox.sqlite")
    return request.getfixturevalue("postgres").database()


def _append(inbox: Inbox, request_id: str, installation: str | None) -> None:
    assert inbox.append(request_id=request_id, resource="issue", action="resolved", issue_id="1",
                        body=envelope(installation, {"id": "1"}), installation=installation)


def test_each_installation_reads_only_its_own_events(location: str) -> None:
    with Inbox(location) as inbox:
        for request_id, installation in (("a1", ACME), ("g1", GLOBEX), ("a2", ACME), ("old", None)):
            _append(inbox, request_id, installation)
        assert [e.request_id for e in inbox.pending_after(0, 10, ACME)] == ["a1", "a2"]
        assert [e.request_id for e in inbox.pending_after(0, 10, GLOBEX)] == ["g1"]
        assert [e.request_id for e in inbox.pending_after(0, 10)] == ["a1", "g1", "a2", "old"]
        assert (inbox.count_pending(ACME), inbox.count_pending(GLOBEX), inbox.count_pending()) == (2, 1, 4)
        assert inbox.pending_by_installation() == {ACME: 2, GLOBEX: 1, None: 1}
        since = inbox.pending_after(0, 1)[0].received_at
        assert [e.request_id for e in inbox.received_since(since, 10, GLOBEX)] == ["g1"]
        [g1] = inbox.pending_after(0, 10, GLOBEX)
        inbox.dead_letter([g1.id], "refused")
        assert (inbox.count_dead(GLOBEX), inbox.count_dead(ACME), inbox.count_dead()) == (1, 0, 1)


def test_an_inbox_made_before_installations_were_recorded_gains_the_column(location: str) -> None:
    """Inboxes written by the previous release have no `installation` column: opening one adds it (and its
    index), keeps every event, and a consumer without an installation still reads the old ones."""
    url = location if "://" in location else f"sqlite:///{location}"
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg") if "://" in location else url)
    previous = MetaData()
    Table("events", previous, *(c._copy() for c in inbox_module.events.c if c.name != "installation"),
          sqlite_autoincrement=True)
    inbox_module.failures.to_metadata(previous)
    with engine.begin() as conn:
        previous.create_all(conn)
        conn.execute(previous.tables["events"].insert().values(
            request_id="before", resource="issue", action="resolved", issue_id="9", received_at="2026-01-01T00:00:00+00:00",
            body=envelope(ACME, {"id": "9"})))
    engine.dispose()

    with Inbox(location) as inbox:
        [old] = inbox.pending_after(0, 10)
        assert (old.request_id, old.installation) == ("before", None)
        _append(inbox, "after", ACME)
        assert [e.request_id for e in inbox.pending_after(0, 10, ACME)] == ["after"]
        with inbox._engine.connect() as conn:
            indexes = {i["name"] for i in inspect(conn).get_indexes("events")}
        assert "events_installation_status_id" in indexes
    with Inbox(location) as again:  # opening a migrated inbox changes nothing
        assert [e.request_id for e in again.pending_after(0, 10)] == ["before", "after"]


# -- two organizations, one receiver, one Port ---------------------------------------------------------------------


def test_each_event_reaches_its_own_organizations_instance(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry]) -> None:
    acme_data, globex_data = build_org("acme"), build_org("globex", seed=8)
    sentries = {"acme": sentry_emulator(acme_data), "globex": sentry_emulator(globex_data)}
    installations = {"acme": ACME, "globex": GLOBEX}
    inbox_path = tmp_path / "inbox.sqlite"
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    instance = DagsterInstance.ephemeral()

    def issue_ids(org: str) -> set[str]:
        return {e["identifier"].split("-")[1] for e in catalog.entities("sentryIssue")
                if e["identifier"].startswith(f"{org}-")}

    with fx.serve_port(catalog) as (port_url, _), Inbox(inbox_path) as inbox, \
            ServerThread(create_receiver(SECRETS, inbox)) as receiver:
        instances = {}
        for org in ("acme", "globex"):
            mapping = tmp_path / f"{org}.yaml"
            mapping.write_text(PREFIXED.read_text().replace("acme-", f"{org}-"))
            instances[org] = org_instance(org, sentries[org], port_url, mapping, webhook_inbox=str(inbox_path),
                                          webhook_installation=installations[org])
        merged = Definitions.merge(*instances.values())
        repo = merged.get_repository_def()
        for org in ("acme", "globex"):
            assert merged.resolve_job_def(f"{org}__sentry_port_sync").execute_in_process(instance=instance).success

        # each organization resolves an issue in Sentry; both webhooks go to the one receiver
        resolved = {}
        for n, (org, data) in enumerate((("acme", acme_data), ("globex", globex_data))):
            issue = next(i for i in data.issues if i["status"] == "unresolved" and i["id"] in issue_ids(org))
            issue.update(status="resolved", substatus=None)
            resolved[org] = issue["id"]
            body = envelope(installations[org], copy.deepcopy(issue))
            assert post(receiver.url, body, SECRETS[installations[org]], f"req-{n}").status_code == 202

        cursors: dict[str, str | None] = {"acme": None, "globex": None}

        def tick(org: str) -> SensorResult:
            sensor = repo.get_sensor_def(f"{org}__sentry_webhook_sensor")
            result = sensor(build_sensor_context(instance=instance, cursor=cursors[org]))
            assert isinstance(result, SensorResult)
            cursors[org] = result.cursor
            return result

        def apply(org: str) -> None:
            [request] = tick(org).run_requests
            events = inbox.get(request.run_config["ops"][f"{org}__sync_webhook_events"]["config"]["event_ids"])
            assert [e.installation for e in events] == [installations[org]], "only its own installation's events"
            assert merged.resolve_job_def(f"{org}__sentry_webhook_sync").execute_in_process(
                run_config=request.run_config, instance=instance, tags=request.tags).success
            tick(org)  # marks the batch done

        apply("acme")
        assert resolved["acme"] not in issue_ids("acme"), "acme's resolved issue leaves Port (is:unresolved)"
        assert resolved["globex"] in issue_ids("globex"), "globex's event waits for globex's instance"
        assert inbox.count_pending(GLOBEX) == 1 and inbox.count_pending(ACME) == 0
        assert not tick("acme").run_requests

        apply("globex")
        assert resolved["globex"] not in issue_ids("globex")
        assert inbox.count_pending() == 0
    catalog.close()


def test_an_instance_without_an_installation_refuses_events_of_several(tmp_path: Path) -> None:
    """Applying another organization's event with its own Sentry, it would find the issue gone and mark the event
    done: the right instance would never apply it. So the tick fails and says what to set; one installation is fine."""
    inbox_path = tmp_path / "inbox.sqlite"
    sensor = build_webhook_sensor(Names("acme"), inbox_location=str(inbox_path))
    instance = DagsterInstance.ephemeral()
    with Inbox(inbox_path) as inbox:
        _append(inbox, "a1", ACME)
        _append(inbox, "old", None)
        tick = sensor(build_sensor_context(instance=instance))
        assert isinstance(tick, SensorResult) and len(tick.run_requests) == 1
        _append(inbox, "g1", GLOBEX)
        with pytest.raises(Exception, match="set webhook_installation on each instance") as refused:
            sensor(build_sensor_context(instance=instance, cursor=tick.cursor))
        assert ACME in str(refused.value) and GLOBEX in str(refused.value)
        assert inbox.count_pending() == 3, "nothing applied or marked done"
        own = build_webhook_sensor(Names("globex"), inbox_location=str(inbox_path), installation=GLOBEX)
        [request] = own(build_sensor_context(instance=instance)).run_requests
        assert request.run_config["ops"]["globex__sync_webhook_events"]["config"]["event_ids"] == [
            e.id for e in inbox.pending_after(0, 10, GLOBEX)]


# -- the run reads its instance's inbox ----------------------------------------------------------------------------


def test_the_run_reads_the_inbox_its_instance_names_not_the_processs(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry], location: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance's `webhook_inbox` (a component attribute): its sensor reads it, and so must the run it launches,
    with no database URL (and password) in the run's config. The process's SENTRY_WEBHOOK_INBOX names another inbox
    here, whose event 1 is another organization's: a run that read it would apply that event and leave its own."""
    other = tmp_path / "other.sqlite"
    monkeypatch.setenv("SENTRY_WEBHOOK_INBOX", str(other))
    data = build_org("acme")
    sentry = sentry_emulator(data)
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(PORT_USER)
    mapping = tmp_path / "acme.yaml"
    mapping.write_text(PREFIXED.read_text())
    instance = DagsterInstance.ephemeral()
    with fx.serve_port(catalog) as (port_url, _), Inbox(location) as inbox, Inbox(other) as elsewhere:
        defs = org_instance("acme", sentry, port_url, mapping, webhook_inbox=location, webhook_installation=ACME)
        assert defs.resolve_job_def("acme__sentry_port_sync").execute_in_process(instance=instance).success
        held = {e["identifier"] for e in catalog.entities("sentryIssue")}
        issue = next(i for i in data.issues if i["status"] == "unresolved" and f"acme-{i['id']}" in str(held))
        issue.update(status="resolved", substatus=None)
        assert inbox.append(request_id="acme-1", resource="issue", action="resolved", issue_id=issue["id"],
                            body=envelope(ACME, copy.deepcopy(issue)), installation=ACME)
        _append(elsewhere, "globex-1", GLOBEX)

        sensor = defs.get_repository_def().get_sensor_def("acme__sentry_webhook_sensor")
        tick = sensor(build_sensor_context(instance=instance))
        assert isinstance(tick, SensorResult)
        [request] = tick.run_requests
        assert location not in json.dumps(request.run_config) and "postgresql" not in json.dumps(request.run_config)
        assert defs.resolve_job_def("acme__sentry_webhook_sync").execute_in_process(
            run_config=request.run_config, instance=instance, tags=request.tags).success
        sensor(build_sensor_context(instance=instance, cursor=tick.cursor))  # marks the batch done
        assert inbox.count_pending() == 0 and elsewhere.count_pending() == 1, "the other inbox was left alone"
    held = {e["identifier"] for e in catalog.entities("sentryIssue")}
    assert not [i for i in held if i.startswith(f"acme-{issue['id']}-")], "the resolved issue left Port"
    catalog.close()


def test_the_run_refuses_events_of_another_installation(tmp_path: Path) -> None:
    """A run launched by hand with another organization's event ids applies nothing: with this instance's Sentry, that
    organization's issues would look gone and their events be marked done."""
    inbox_path = str(tmp_path / "inbox.sqlite")
    with Inbox(inbox_path) as inbox:
        _append(inbox, "g1", GLOBEX)
        [event] = inbox.pending_after(0, 10)
    job = build_webhook_job(Names("acme"), inbox_path, ACME)
    result = job.execute_in_process(
        run_config={"ops": {f"acme__{OP}": {"config": {"event_ids": [event.id]}}}}, raise_on_error=False,
        resources={"acme_sentry": SentryResource(host="http://127.0.0.1:9", organization="acme", token="t"),
                   "acme_mapping": MappingResource(),
                   "acme_port": PortResource(local_catalog=str(tmp_path / "port.sqlite"))})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    why = failure.step_failure_data.user_failure_data.description
    assert GLOBEX in why and ACME in why and "nothing was applied" in why, why
    assert not (tmp_path / "port.sqlite").exists(), "Port was not touched"
    with Inbox(inbox_path) as inbox:
        assert inbox.count_pending() == 1
