"""A resync and webhooks interleaved for real: the resync (`dagster job execute`, its own process) has read the issue
list when an issue is resolved, another reassigned and a new one created in Sentry, and their webhooks arrive. The
webhook run applies them while the resync is still fetching tag values (the Sentry emulator holds the resync's
requests until then), then the resync publishes its older read. After the runs, Port must equal what a fresh resync
produces: the resync's publish is followed by the webhook events received since it began, applied again.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance, build_sensor_context

from sentry_port_assets.emulators.sentry_data import demo_dataset
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.sensors.webhooks import sentry_webhook_sensor
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import RunningSentry, tag_values, write_mapping

REPO = Path(__file__).resolve().parents[1]
TAGS_ENDPOINT = "/organizations/{org}/issues/{issue}/tags/{key}/values/"
BLUEPRINTS = ("sentryIssue", "sentryUser", "sentryTeam", "sentryProjectEnvironment", "_user")


def dagster(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dagster", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finished(process: subprocess.Popen[str], timeout: float = 300) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


def snapshot(path: Path) -> dict[str, Any]:
    with LocalCatalog(path) as catalog:
        return {f"{bp}/{e['identifier']}": {k: e.get(k) for k in ("title", "properties", "relations", "team")}
                for bp in BLUEPRINTS for e in catalog.entities(bp)}


def environment(home: Path, sentry: RunningSentry, port_url: str, inbox: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "PORT_", "OCEAN__", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), SENTRY_HOST=sentry.url, SENTRY_TOKEN=sentry.token,
               SENTRY_ORGANIZATION=sentry.organization, PORT_BASE_URL=port_url, PORT_CLIENT_ID=fx.CLIENT_ID,
               PORT_CLIENT_SECRET=fx.CLIENT_SECRET, SENTRY_WEBHOOK_INBOX=str(inbox))
    return env


def new_home(path: Path) -> Path:
    path.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", path / "dagster.yaml")  # the pool's limit of 1
    return path


def test_webhooks_arriving_mid_fetch_are_not_undone_by_the_resyncs_older_read(
        tmp_path: Path, sentry_emulator: Callable[..., RunningSentry], monkeypatch: pytest.MonkeyPatch) -> None:
    data = demo_dataset()
    unresolved = [i for i in data.issues if i["status"] == "unresolved"]
    fixed, reassigned, template = unresolved[0], unresolved[1], unresolved[2]
    now = datetime.now(timezone.utc)
    created = {**copy.deepcopy(template), "id": "4605179999", "shortId": "PYTHON-FASTAPI-NEW",
               "title": "Created while the resync was reading", "firstSeen": now.isoformat(),
               "lastSeen": now.isoformat()}
    inbox_path = tmp_path / "inbox.sqlite"
    armed, mutated, release = threading.Event(), threading.Event(), threading.Event()
    changed = {fixed["id"], reassigned["id"], created["id"]}
    lock = threading.Lock()

    def change_sentry_and_deliver() -> None:
        fixed.update(status="resolved", substatus=None)
        member = data.members[0]
        reassigned["assignedTo"] = {"type": "user", "id": member["id"], "name": member["name"],
                                    "email": member["email"]}
        data.issues.append(created)
        data.issue_tag_values[(created["id"], "environment")] = copy.deepcopy(
            data.issue_tag_values[(template["id"], "environment")])
        with Inbox(inbox_path) as inbox:
            for n, (action, issue) in enumerate([("resolved", fixed), ("assigned", reassigned),
                                                 ("created", created)]):
                body = json.dumps({"action": action, "installation": {"uuid": "5a1e"},
                                   "data": {"issue": copy.deepcopy(issue)}}).encode()
                inbox.append(request_id=f"mid-fetch-{n}", resource="issue", action=action, issue_id=issue["id"],
                             body=body)

    async def hold(endpoint: str, params: dict[str, str]) -> None:
        """The resync's first tag-values request: Sentry changes now (the issue list is already read). The
        resync's other tag requests wait until the webhook run is done; the webhook run's own go through."""
        if not armed.is_set() or endpoint != TAGS_ENDPOINT:
            return
        with lock:
            if not mutated.is_set():
                change_sentry_and_deliver()
                mutated.set()
        if params.get("issue") not in changed:
            while not release.is_set():
                await asyncio.sleep(0.05)

    sentry = sentry_emulator(dataset=data, hold=hold, limits={})
    home = new_home(tmp_path / "home")
    catalog_path = tmp_path / "port.sqlite"
    catalog = LocalCatalog(catalog_path)
    catalog.create_blueprint(fx.PORT_USER)
    monkeypatch.setenv("SENTRY_WEBHOOK_INBOX", str(inbox_path))
    # The resync reads each issue's tag values (the default mapping alone would list environments instead).
    mapping = write_mapping(tmp_path, tag_values("per-issue"))
    monkeypatch.setenv("PORT_MAPPING_FILE", mapping)
    with fx.serve_port(catalog) as (url, _):
        env = {**environment(home, sentry, url, inbox_path), "PORT_MAPPING_FILE": mapping}
        finished(dagster(["job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"], env, tmp_path))
        Inbox(inbox_path).close()
        with DagsterInstance.from_config(str(home)) as instance:
            cursor = _tick(instance, None).cursor  # records the publish so far: history is not replayed

            armed.set()
            # A resync that reads every issue's tag values again (as the periodic full refresh does), so that it is
            # still reading Sentry when the webhook run applies the changes.
            resync = dagster(["job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"],
                             {**env, "SENTRY_PORT_FULL_REFRESH_HOURS": "0.0001"}, tmp_path)
            assert mutated.wait(180), "the resync never asked for tag values"

            cursor = _apply(instance, cursor, env, tmp_path, expected={fixed["id"], reassigned["id"], created["id"]})
            during = snapshot(catalog_path)
            assert not [k for k in during if k.startswith(f"sentryIssue/{fixed['id']}-")], "the webhook applied"
            assert [k for k in during if k.startswith(f"sentryIssue/{created['id']}-")]

            release.set()
            finished(resync)
            raced = snapshot(catalog_path)
            # The resync read the issue list before the change: its publish brings the resolved issue back. This is
            # the race the replay exists for (without it, Port would stay like this).
            assert [k for k in raced if k.startswith(f"sentryIssue/{fixed['id']}-")]

            cursor = _apply(instance, cursor, env, tmp_path, expected={fixed["id"], reassigned["id"], created["id"]})
            final = snapshot(catalog_path)
            assert not _tick(instance, cursor).run_requests, "nothing left to apply"

    fresh_catalog = LocalCatalog(tmp_path / "fresh.sqlite")
    fresh_catalog.create_blueprint(fx.PORT_USER)
    armed.clear()
    with fx.serve_port(fresh_catalog) as (url, _):
        fresh_env = environment(new_home(tmp_path / "fresh_home"), sentry, url, tmp_path / "fresh_inbox.sqlite")
        finished(dagster(["job", "execute", "-m", "sentry_port_assets", "-j", "sentry_port_sync"], fresh_env,
                         tmp_path))
    fresh = snapshot(tmp_path / "fresh.sqlite")
    assert final == fresh
    assert [k for k in final if k.startswith(f"sentryIssue/{created['id']}-")]
    assignees = {final[k]["relations"].get("assignee") and json.dumps(final[k]["relations"]["assignee"])
                 for k in final if k.startswith(f"sentryIssue/{reassigned['id']}-")}
    assert assignees and all(data.members[0]["email"] in (a or "") for a in assignees)


def _tick(instance: DagsterInstance, cursor: str | None) -> Any:
    with build_sensor_context(instance=instance, cursor=cursor) as context:
        return sentry_webhook_sensor.evaluate_tick(context)


def _apply(instance: DagsterInstance, cursor: str | None, env: dict[str, str], cwd: Path,
           expected: set[str]) -> str | None:
    """One sensor tick launches a batch, `dagster job execute` runs it (its own process, like the daemon's run
    launcher), the next tick marks it done. The batch must hold the events of these issues."""
    tick = _tick(instance, cursor)
    assert tick.run_requests, tick.skip_message
    [request] = tick.run_requests
    config = cwd / "batch.yaml"
    config.write_text(yaml.safe_dump(request.run_config))
    with Inbox(Path(env["SENTRY_WEBHOOK_INBOX"])) as inbox:
        issues = {e.issue_id for e in inbox.get(request.run_config["ops"]["sync_webhook_events"]["config"]["event_ids"])}
    assert issues == expected
    finished(dagster(["job", "execute", "-m", "sentry_port_assets", "-j", "sentry_webhook_sync", "-c", str(config),
                      "--tags", json.dumps(request.tags)], env, cwd))
    deadline = time.monotonic() + 30
    settled = _tick(instance, tick.cursor)
    while time.monotonic() < deadline and "waiting for webhook batch" in (settled.skip_message or ""):
        time.sleep(0.5)
        settled = _tick(instance, tick.cursor)
    return settled.cursor or tick.cursor


def test_every_step_that_writes_to_port_is_in_the_pool_and_the_bundled_instance_limits_it() -> None:
    """The pool keeps a webhook run's writes and a resync's publish apart (Dagster blocks the second step until the
    first releases its slot; the bundled dagster.yaml gives every pool a limit of 1)."""
    from sentry_port_assets.config import PORT_WRITES_POOL
    from sentry_port_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    pools = {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()}
    assert {k for k, p in pools.items() if p} == {"port/catalog"}
    assert pools["port/catalog"] == {PORT_WRITES_POOL}
    webhook_job = defs.resolve_job_def("sentry_webhook_sync")
    assert [node.definition.pool for node in webhook_job.graph.nodes] == [PORT_WRITES_POOL]
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
