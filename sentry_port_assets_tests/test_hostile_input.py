"""Hostile and broken input, as an attacker or an unlucky operator would send it. Every case ends in a clear error
within bounded time, and nothing is lost.

Mapping programs can come from Port's integration config, so whoever may edit that integration writes the jq our
workers run; webhook bodies are signed by Sentry but carry what anyone holding a DSN can put into an event."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance, build_sensor_context

from sentry_port_assets.mapping.bounded import Limits
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE, MappingConfigError, load_mapping, parse_mapping
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.sensors.mapping import port_mapping_sensor
from sentry_port_assets_tests.test_webhooks_end_to_end import EXAMPLE_WITH_COMMENTS, make_loop  # noqa: F401 - fixture

TIGHT = Limits(seconds=1.0, memory_bytes=256 * 1024 * 1024)


def user_mapping(title: str) -> Any:
    return parse_mapping({"resources": [{"kind": "user", "selector": {"query": "true"}, "port": {"entity": {
        "mappings": {"identifier": ".id", "blueprint": '"bp"', "title": title}}}}]})


def map_users(title: str, n: int = 5, limits: Limits = TIGHT, workers: int = 1):
    [compiled] = user_mapping(title).resources
    started = time.monotonic()
    result = compiled.map([{"id": str(i)} for i in range(n)], workers=workers, limits=limits)
    return result, time.monotonic() - started


# -- 1-2. mapping programs are bounded in time and memory ------------------------------------------------------------

@pytest.mark.parametrize("title, limit", [
    ("until(false; .)", "SENTRY_PORT_JQ_TIMEOUT_SECONDS"),
    ("[range(1e12)] | length", "SENTRY_PORT_JQ_TIMEOUT_SECONDS"),
    ("def f: 1 + f; f", "SENTRY_PORT_JQ_MEMORY_MB"),
], ids=["endless-loop", "endless-range", "runaway-recursion"])
@pytest.mark.parametrize("workers", [1, 2], ids=["serial", "parallel"])
def test_a_runaway_program_fails_its_resource_naming_field_and_expression(title: str, limit: str, workers: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sentry_port_assets.mapping import engine

    monkeypatch.setattr(engine, "PARALLEL_MIN_ITEMS", 4)
    result, seconds = map_users(title, n=8, workers=workers)
    assert result.entities == []
    [error] = result.errors
    assert (error.field, error.expression) == ("port.entity.mappings.title", title)
    assert limit in error.message and "stopped" in error.message
    assert "resources[0] (user) port.entity.mappings.title" in error.describe()
    assert seconds < 30, f"{seconds:.1f} s to a clean error"


def test_a_program_within_its_limits_is_untouched() -> None:
    result, _ = map_users('.id + "-ok"')
    assert [e["title"] for e in result.entities] == [f"{i}-ok" for i in range(5)] and not result.errors


def test_the_limits_are_checked_when_the_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from sentry_port_assets.config import ConfigError, number_problem, read_settings

    assert "SENTRY_PORT_JQ_TIMEOUT_SECONDS" in (number_problem("SENTRY_PORT_JQ_TIMEOUT_SECONDS", "soon") or "")
    assert "SENTRY_PORT_JQ_MEMORY_MB" in (number_problem("SENTRY_PORT_JQ_MEMORY_MB", "1") or "")
    assert number_problem("SENTRY_PORT_JQ_TIMEOUT_SECONDS", "2.5") is None
    assert number_problem("SENTRY_PORT_JQ_MEMORY_MB", "512") is None
    monkeypatch.setenv("SENTRY_PORT_JQ_MEMORY_MB", "12.5")
    monkeypatch.setenv("SENTRY_WEBHOOK_MAX_CONNECTIONS", "-1")
    with pytest.raises(ConfigError) as refused:
        read_settings()
    assert "SENTRY_PORT_JQ_MEMORY_MB" in str(refused.value) and "SENTRY_WEBHOOK_MAX_CONNECTIONS" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_runaway_recursion_fails_the_cli_run_cleanly_and_deletes_nothing(tmp_path: Path) -> None:
    """`dagster job execute` on the demo: a good run, then one whose mapping recurses without end. Today's code grew
    the run's process to ~1.4 GB until it died; now the run fails with the mapping error and Port keeps its entities."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(tmp_path / "home"), PORT_LOCAL_CATALOG=str(tmp_path / "catalog.sqlite"),
               SENTRY_PORT_JQ_MEMORY_MB="256")
    (tmp_path / "home").mkdir()
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"]
    good = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, (good.stdout + good.stderr)[-3000:]
    held = _count(tmp_path / "catalog.sqlite")

    data = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    [team] = [r for r in data["resources"] if r["kind"] == "team"]
    team["port"]["entity"]["mappings"]["title"] = "def f: 1 + f; f"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    started = time.monotonic()
    bad = subprocess.run(command, cwd=tmp_path, env={**env, "PORT_MAPPING_FILE": str(tmp_path / "bad.yaml")},
                         capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    output = bad.stdout + bad.stderr
    assert bad.returncode not in (0, -9), output[-3000:]  # failed, and not killed
    assert "port.entity.mappings.title" in output and "SENTRY_PORT_JQ_MEMORY_MB" in output, output[-3000:]
    assert "RUN_FAILURE" in output or "sentry_port_sync" in output
    assert _count(tmp_path / "catalog.sqlite") == held
    assert seconds < 300


def _count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM entities").fetchone()[0]


# -- 3. YAML alias bombs ---------------------------------------------------------------------------------------------

BOMB = "".join(
    [f'a0: &a0 ["{"x" * 4}"]\n']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)]
    + ["resources: []\n"]
)


def test_an_alias_bomb_is_refused_at_load_without_expanding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 700  # expanded, it is 9 ** 9 strings
    started = time.monotonic()
    with pytest.raises(MappingConfigError, match="expands to more than"):
        load_mapping(path)
    assert time.monotonic() - started < 5


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "recursive.yaml"
    path.write_text("a: &a [*a]\nresources: []\n")
    with pytest.raises(MappingConfigError, match="recursive|alias"):
        load_mapping(path)


def test_the_mapping_sensor_skips_an_alias_bomb(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(DEFAULT_MAPPING_FILE.read_text())
    resource = MappingResource(path=str(path))
    with DagsterInstance.ephemeral() as instance:
        with build_sensor_context(instance=instance, cursor=None, resources={"mapping": resource}) as context:
            first = port_mapping_sensor.evaluate_tick(context)
        path.write_text(BOMB)
        started = time.monotonic()
        with build_sensor_context(instance=instance, cursor=first.cursor, resources={"mapping": resource}) as context:
            data = port_mapping_sensor.evaluate_tick(context)
    assert not data.run_requests
    assert "expands to more than" in (data.skip_message or "")
    assert time.monotonic() - started < 5


def test_ordinary_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(
        "common: &common {identifier: .slug, blueprint: '\"sentryTeam\"'}\n"
        "resources:\n"
        "  - kind: team\n    selector: {query: 'true'}\n    port: {entity: {mappings: *common}}\n")
    assert load_mapping(path).resources[0].kind == "team"


# -- 4. halt, halt_error and empty cannot misalign a batch ------------------------------------------------------------

@pytest.mark.parametrize("title", [
    'if .id == "2" then halt else "t-" + .id end',
    'if .id == "2" then empty else "t-" + .id end',
    'if .id == "2" then halt_error else "t-" + .id end',
    'if .id == "2" then ("x" | halt_error(1)) else "t-" + .id end',
], ids=["halt", "empty", "halt_error", "halt_error-1"])
def test_an_item_that_halts_in_the_middle_of_a_batch_takes_no_other_items_output(title: str) -> None:
    result, _ = map_users(title, n=5)
    assert [e["identifier"] for e in result.entities] == ["0", "1", "2", "3", "4"]
    for entity in result.entities:
        assert entity["title"] in (f"t-{entity['identifier']}", None), entity
    assert [e["title"] for e in result.entities if e["identifier"] != "2"] == ["t-0", "t-1", "t-3", "t-4"]


def test_a_lone_item_that_halts_is_mapped_not_dropped() -> None:
    """A batch of one (a webhook's issue, the last item of a list): no output at all must not read as one output."""
    result, _ = map_users('if .id == "0" then halt else "t-" + .id end', n=1)
    assert [(e["identifier"], e["title"]) for e in result.entities] == [("0", None)]


def test_a_batch_where_every_item_halts_ends() -> None:
    result, seconds = map_users("halt", n=20)
    assert [e["identifier"] for e in result.entities] == [str(i) for i in range(20)]
    assert all(e.get("title") is None for e in result.entities)
    assert seconds < 30


def test_a_halting_identifier_drops_only_its_own_item() -> None:
    mapping = parse_mapping({"resources": [{"kind": "user", "selector": {"query": "true"}, "port": {"entity": {
        "mappings": {"identifier": 'if .id == "1" then halt else .id end', "blueprint": '"bp"', "title": '"t-" + .id'}}}}]})
    [compiled] = mapping.resources
    result = compiled.map([{"id": str(i)} for i in range(4)], workers=1, limits=TIGHT)
    assert [(e["identifier"], e["title"]) for e in result.entities] == [("0", "t-0"), ("2", "t-2"), ("3", "t-3")]
    assert result.dropped == 1


def test_json_mapping_from_port_is_bounded_too() -> None:
    """Port's integration config arrives as JSON (no aliases); its jq runs under the same limits."""
    mapping = parse_mapping(json.loads(json.dumps({"resources": [{"kind": "user", "selector": {"query": "true"},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": '"bp"', "title": "until(false; .)"}}}}]})))
    [compiled] = mapping.resources
    result = compiled.map([{"id": "1"}], workers=1, limits=TIGHT)
    assert result.errors and result.errors[0].field == "port.entity.mappings.title"


# -- 5, 6, 8. webhooks: ids, replays, malformed bodies -----------------------------------------------------------------

WEBHOOK_SECRET = "hostile-webhook-secret"


@pytest.fixture
def receiver(tmp_path: Path):
    from sentry_port_assets.emulators.serve import ServerThread
    from sentry_port_assets.webhooks.inbox import Inbox
    from sentry_port_assets.webhooks.receiver import create_receiver

    with Inbox(tmp_path / "inbox.sqlite") as inbox, ServerThread(create_receiver(WEBHOOK_SECRET, inbox)) as server:
        yield server.url + "/webhooks/sentry", inbox


def deliver(url: str, body: bytes, timestamp: str | None = "now", resource: str = "issue", request_id: str = "r-1"):
    import httpx

    from sentry_port_assets.webhooks.receiver import sign

    headers = {"Content-Type": "application/json", "Sentry-Hook-Resource": resource,
               "Sentry-Hook-Signature": sign(WEBHOOK_SECRET, body), "Request-ID": request_id}
    if timestamp is not None:
        headers["Sentry-Hook-Timestamp"] = str(int(time.time())) if timestamp == "now" else timestamp
    return httpx.post(url, content=body, headers=headers, timeout=30)


def issue_body(issue_id: Any, action: str = "resolved") -> bytes:
    return json.dumps({"action": action, "installation": {"uuid": "5a1e"},
                       "data": {"issue": {"id": issue_id, "status": "resolved"}}}).encode()


@pytest.mark.parametrize("issue_id", ["4605173709#", "../../projects", "-1", "4605173709 ", "", "١٢٣", True, 1.5,
                                      "9" * 25], ids=repr)
def test_an_issue_id_that_is_not_a_decimal_number_is_refused(receiver, issue_id: Any) -> None:
    url, inbox = receiver
    answer = deliver(url, issue_body(issue_id))
    assert answer.status_code == 400 and "decimal" in answer.json()["detail"]
    assert inbox.count_pending() == 0


def test_decimal_ids_as_strings_or_numbers_are_stored(receiver) -> None:
    url, inbox = receiver
    assert deliver(url, issue_body("4605173709"), request_id="a").status_code == 202
    assert deliver(url, issue_body(4605173710), request_id="b").status_code == 202
    assert inbox.count_pending() == 2


def test_a_comment_with_a_bad_issue_id_is_refused(receiver) -> None:
    url, inbox = receiver
    body = json.dumps({"action": "created", "data": {"issue_id": "12#", "comment_id": "1", "comment": "x"}}).encode()
    assert deliver(url, body, resource="comment").status_code == 400
    assert inbox.count_pending() == 0


@pytest.mark.parametrize("timestamp", [None, "1700000000", str(int(time.time()) + 3600), "soon", "nan"],
                         ids=["missing", "2023", "an-hour-ahead", "text", "nan"])
def test_a_delivery_stamped_far_from_now_is_refused(receiver, timestamp: str | None) -> None:
    url, inbox = receiver
    answer = deliver(url, issue_body("4605173709"), timestamp=timestamp)
    assert answer.status_code == 400 and "Sentry-Hook-Timestamp" in answer.json()["detail"]
    assert inbox.count_pending() == 0


def test_a_replayed_comment_event_applies_what_sentry_holds_now(make_loop) -> None:  # noqa: F811 - the fixture
    """Only the body is signed and every delivery has a new Request-ID, so a captured `created` can be posted again
    after the comment was edited, or deleted. It applies the comment as Sentry holds it now: no revert, no
    resurrection."""
    loop = make_loop(str(EXAMPLE_WITH_COMMENTS))
    loop.full_resync()
    data = loop.sentry.state.dataset
    issue = data.issues[0]
    created = loop.new_comment("555", "first words", "2026-11-26T10:00:00Z")
    loop.deliver("comment", "created", created)
    data.edit_comment(issue["id"], "555", "second thoughts")
    loop.deliver("comment", "updated", {**created, "comment": "second thoughts"})
    loop.process_webhooks()
    assert loop.catalog.get_entity("sentryComment", "555")["properties"]["comment"] == "second thoughts"

    loop.deliver("comment", "created", created)  # the replay: the old body, a new Request-ID
    loop.process_webhooks()
    assert loop.catalog.get_entity("sentryComment", "555")["properties"]["comment"] == "second thoughts"

    data.delete_comment(issue["id"], "555")
    loop.deliver("comment", "deleted", created)
    loop.process_webhooks()
    loop.deliver("comment", "created", created)  # replayed after the delete
    loop.process_webhooks()
    assert loop.catalog.get_entity("sentryComment", "555") is None


def test_deeply_nested_signed_body_is_400_not_500(receiver) -> None:
    url, inbox = receiver
    body = b'{"action": "resolved", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    started = time.monotonic()
    answer = deliver(url, body)
    assert answer.status_code == 400, answer.text
    assert time.monotonic() - started < 10
    assert inbox.count_pending() == 0


def test_lone_surrogate_in_a_signed_body_is_400_not_500(receiver) -> None:
    url, inbox = receiver
    body = b'{"action": "resolved", "data": {"issue": {"id": "46051737\\ud800", "title": "\\udfff"}}}'
    answer = deliver(url, body)
    assert answer.status_code == 400, answer.text
    body = b'{"action": "resolved", "data": {"issue": {"id": "4605173709", "title": "x\\ud800"}}}'
    answer = deliver(url, body, request_id="r-2")
    assert answer.status_code == 400, answer.text
    assert inbox.count_pending() == 0


# -- 9. a killed run does not wedge the automation -------------------------------------------------------------------

def test_a_killed_refresh_run_does_not_block_publishing(tmp_path: Path, sentry_emulator, monkeypatch) -> None:
    """`kill -9` of a `sentry_refresh` run leaves it STARTED for ever. publish_on_new_entities used to wait for it
    ("refresh run … is still in progress") until someone cleared it by hand; now the dead worker's run is marked
    failed and publishing resumes."""
    import signal as signals

    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from sentry_port_assets.sensors.publish import publish_on_new_entities
    from sentry_port_assets.worker_host import HOST_TAG

    sentry = sentry_emulator()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), SENTRY_HOST=sentry.url, SENTRY_ORGANIZATION=sentry.organization,
               SENTRY_TOKEN=sentry.token, PORT_LOCAL_CATALOG=str(tmp_path / "catalog.sqlite"))
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "sentry_port_assets", "-j", "sentry_refresh"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    sentry.state.config.latency_seconds = 3.0  # the second refresh is slow: it is killed mid-fetch
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    try:
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 120
            while True:
                runs = instance.get_runs(RunsFilter(job_name="sentry_refresh", statuses=[DagsterRunStatus.STARTED]))
                if runs and HOST_TAG in runs[0].tags:
                    break
                assert time.monotonic() < deadline, "the second refresh never started"
                time.sleep(0.2)
            process.send_signal(signals.SIGKILL)
            process.wait(timeout=30)
            [killed] = runs
            assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.STARTED  # as Dagster leaves it

            started = time.monotonic()
            result = publish_on_new_entities.evaluate_tick(build_sensor_context(instance=instance))
            assert result.run_requests, result.skip_message
            assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE
            assert time.monotonic() - started < 30
    finally:
        if process.poll() is None:
            process.kill()
        sentry.state.config.latency_seconds = 0.0


def test_the_bundled_instance_enables_run_monitoring() -> None:
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] is True


# -- 10. concurrent first runs ---------------------------------------------------------------------------------------

def test_a_dagster_home_left_with_two_schema_versions_is_refused_with_how_to_recover(tmp_path: Path) -> None:
    """The code location (what the daemon's and the webserver's code servers load) refuses such a DAGSTER_HOME with
    how to recover. `dagster job execute` opens the instance before it loads the code, so there Dagster's own
    "more than one head" error comes first; the README names both."""
    home = tmp_path / "home"
    (home / "history").mkdir(parents=True)
    with sqlite3.connect(home / "history" / "runs.db") as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.executemany("INSERT INTO alembic_version VALUES (?)", [("7e2f3204cf8e",), ("a6cd6a1cd4cf",)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), PORT_LOCAL_CATALOG=str(tmp_path / "catalog.sqlite"))
    load = subprocess.run([sys.executable, "-c", "import sentry_port_assets.definitions"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert load.returncode != 0
    [line] = [x for x in load.stderr.splitlines() if x.startswith("sentry_port_assets.config.ConfigError")]
    assert "2 schema versions" in line and "dagster instance migrate" in line, line


def test_the_readme_ci_recipe_runs_one_sync_at_a_time() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    recipe = readme[readme.index("# .github/workflows/sentry-port.yml"):]
    recipe = recipe[:recipe.index("```")]
    assert "concurrency:" in recipe and "cancel-in-progress: false" in recipe


# -- 7. slow clients -------------------------------------------------------------------------------------------------

def ended_by_server(sockets: list[Any], until: Callable[[int], bool], seconds: float) -> set[int]:
    """Indexes of the sockets the server closed, reset or answered (408), polled until `until(count)` or `seconds`."""
    ended: set[int] = set()
    deadline = time.monotonic() + seconds
    while not until(len(ended)) and time.monotonic() < deadline:
        for index, sock in enumerate(sockets):
            if index in ended:
                continue
            sock.settimeout(0)
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                ended.add(index)
            except BlockingIOError:
                continue
            else:
                if data == b"" or b"408" in data:
                    ended.add(index)
        time.sleep(0.05)
    return ended


def test_slow_and_greedy_clients_cannot_starve_deliveries_or_healthz(tmp_path: Path) -> None:
    """A bounded slowloris on loopback against the real receiver (`sentry-port webhooks serve`): 150 connections from
    one address that trickle headers, 30 more that stall mid-body. Deliveries from Sentry's address and /healthz keep
    answering, the stalled ones are cut at their deadlines, and the attacker's extra connections are refused."""
    import socket

    import httpx

    from sentry_port_assets.webhooks.receiver import sign

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SENTRY_WEBHOOK_SECRET": WEBHOOK_SECRET, "SENTRY_WEBHOOK_HEADER_TIMEOUT_SECONDS": "3",
           "SENTRY_WEBHOOK_BODY_TIMEOUT_SECONDS": "3", "SENTRY_WEBHOOK_MAX_CONNECTIONS_PER_CLIENT": "100",
           "SENTRY_WEBHOOK_MAX_CONNECTIONS": "400"}
    server = subprocess.Popen([sys.executable, "-m", "sentry_port_assets.cli", "webhooks", "serve", "--port", str(port),
                               "--inbox", str(tmp_path / "inbox.sqlite"), "--log-level", "warning"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    attackers: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.2)

        for n in range(180):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))  # the attacker's address; Sentry's deliveries come from 127.0.0.1
            s.connect(("127.0.0.1", port))
            if n < 150:
                s.sendall(b"POST /webhooks/sentry HTTP/1.1\r\nHost: x\r\n")  # headers never finish
            else:
                s.sendall(b"POST /webhooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Signature: 00\r\n"
                          b"Content-Length: 1000\r\n\r\n{")  # the body never finishes
            attackers.append(s)
        # the server refuses the connections past the per-client limit at once (well before the 3 s deadlines)
        refused = len(ended_by_server(attackers, until=lambda n: n >= 80, seconds=2))
        assert refused >= 60, f"only {refused} of the attacker's 180 connections were refused (limit 100 per client)"

        body = issue_body("4605173709")
        started = time.monotonic()
        answer = httpx.post(base + "/webhooks/sentry", content=body, timeout=5, headers={
            "Content-Type": "application/json", "Sentry-Hook-Resource": "issue", "Request-ID": "valid-1",
            "Sentry-Hook-Signature": sign(WEBHOOK_SECRET, body), "Sentry-Hook-Timestamp": str(int(time.time()))})
        assert answer.status_code == 202, answer.text
        assert httpx.get(base + "/healthz", timeout=5).json()["pending"] == 1
        assert time.monotonic() - started < 3

        # past both 3 s deadlines: every stalled connection is closed by the server
        closed = len(ended_by_server(attackers, until=lambda n: n == len(attackers), seconds=10))
        assert closed == len(attackers), f"{len(attackers) - closed} stalled connections are still open"
    finally:
        for s in attackers:
            s.close()
        server.terminate()
        server.wait(timeout=20)
