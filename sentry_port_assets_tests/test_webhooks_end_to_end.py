"""Webhook → inbox → sensor → sentry_webhook_sync → Port, checked against what a full resync would leave:
after the webhook run, a full resync of the same Sentry must find nothing to change."""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta, timezone
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dagster import DagsterInstance, SensorResult, build_sensor_context, materialize

from sentry_port_assets.assets.catalog import CATALOG_KEY, port_catalog
from sentry_port_assets.assets.entities import entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.emulators.port import create_port_emulator
from sentry_port_assets.emulators.sentry_api import Fault
from sentry_port_assets.emulators.serve import ServerThread
from sentry_port_assets.mapping.loader import DEFAULT_MAPPING_FILE
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sensors.webhooks import sentry_webhook_sensor
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets.webhooks.inbox import Inbox
from sentry_port_assets.webhooks.job import sentry_webhook_sync
from sentry_port_assets.webhooks.receiver import create_receiver, sign
from sentry_port_assets_tests.conftest import ENTITY_INPUTS, RunningSentry

SECRET = "webhook-secret-for-tests"
CLIENT_ID, CLIENT_SECRET = "wh-client", "wh-secret-5d1c"
EXAMPLE_WITH_COMMENTS = DEFAULT_MAPPING_FILE.parent / "examples" / "mapping-with-comments.yaml"
ALL = [*raw_assets, *entity_assets, port_catalog]


@dataclass
class Loop:
    sentry: RunningSentry
    catalog: LocalCatalog
    port_state: Any
    receiver_url: str
    inbox: Inbox
    resources: dict[str, Any]
    instance: DagsterInstance
    cursor: str | None = None
    deliveries: int = 0

    def full_resync(self) -> dict[str, Any]:
        result = materialize(ALL, resources=self.resources, instance=self.instance)
        [mat] = [m for m in result.get_asset_materialization_events() if m.asset_key == CATALOG_KEY]
        return {k: v.value for k, v in mat.materialization.metadata.items()}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        out = {}
        for bp in ("sentryIssue", "sentryComment", "sentryUser", "sentryTeam", "sentryProjectEnvironment"):
            for e in self.catalog.entities(bp):
                out[f"{bp}/{e['identifier']}"] = {k: e.get(k) for k in ("title", "properties", "relations")}
        return out

    def deliver(self, resource: str, action: str, data: dict[str, Any]) -> None:
        body = json.dumps({"action": action, "installation": {"uuid": "5a1e"}, "data": data,
                           "actor": {"type": "application", "id": "sentry", "name": "Sentry"}},
                          separators=(",", ":")).encode()
        self.deliveries += 1
        answer = httpx.post(f"{self.receiver_url}/webhooks/sentry", content=body, headers={
            "Content-Type": "application/json", "Sentry-Hook-Resource": resource,
            "Sentry-Hook-Signature": sign(SECRET, body), "Request-ID": f"req-{self.deliveries}",
            "Sentry-Hook-Timestamp": str(int(time.time()))})
        assert answer.status_code == 202, answer.text

    def new_comment(self, comment_id: str, text: str, timestamp: str) -> dict[str, Any]:
        """A comment on the first issue, made in Sentry; returns the `data` its webhook carries."""
        issue = self.sentry.state.dataset.issues[0]
        self.sentry.state.dataset.add_comment(issue["id"], text, comment_id=comment_id)
        return {"comment_id": comment_id, "issue_id": issue["id"], "project_slug": issue["project"]["slug"],
                "timestamp": timestamp, "comment": text}

    def process_webhooks(self) -> None:
        """One sensor tick launches the batch; the run executes; the next tick marks its events done."""
        tick = sentry_webhook_sensor(build_sensor_context(instance=self.instance, cursor=self.cursor))
        assert isinstance(tick, SensorResult) and tick.run_requests, tick
        [request] = tick.run_requests
        result = sentry_webhook_sync.execute_in_process(
            run_config=request.run_config, instance=self.instance, resources=self.resources, tags=request.tags)
        assert result.success
        [observation] = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        assert observation.asset_key == CATALOG_KEY
        settle = sentry_webhook_sensor(build_sensor_context(instance=self.instance, cursor=tick.cursor))
        self.cursor = settle.cursor if isinstance(settle, SensorResult) else tick.cursor
        assert self.inbox.count_pending() == 0


@pytest.fixture
def make_loop(tmp_path: Path, sentry_emulator: Callable[..., RunningSentry],
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], Loop]]:
    inbox_path = tmp_path / "inbox.sqlite"
    monkeypatch.setenv("SENTRY_WEBHOOK_INBOX", str(inbox_path))
    servers: list[ServerThread] = []

    def make(mapping_path: str | None) -> Loop:
        sentry = sentry_emulator()
        catalog = LocalCatalog(tmp_path / "port.sqlite")
        port_app = create_port_emulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        inbox = Inbox(inbox_path)
        port = ServerThread(port_app).start()
        receiver = ServerThread(create_receiver(SECRET, inbox)).start()
        servers.extend([port, receiver])
        resources = {
            "sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                     max_retries=1, backoff_seconds=0.01),
            "mapping": MappingResource(path=mapping_path),
            "port": PortResource(base_url=port.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            **ENTITY_INPUTS,
        }
        return Loop(sentry, catalog, port_app.state.port, receiver.url, inbox, resources, DagsterInstance.ephemeral())

    yield make
    for server in servers:
        server.stop()


def every_status_mapping(tmp_path: Path) -> str:
    data = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    for resource in data["resources"]:
        if resource["kind"] == "issue-tag":
            resource["selector"]["sentryQuery"] = ""
    path = tmp_path / "every-status.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("every_status", [False, True], ids=["is-unresolved", "every-status"])
def test_webhooks_leave_port_as_a_full_resync_would(make_loop: Callable[[str | None], Loop], tmp_path: Path,
                                                     every_status: bool) -> None:
    loop = make_loop(every_status_mapping(tmp_path) if every_status else None)
    data = loop.sentry.state.dataset
    loop.full_resync()
    before = loop.snapshot()

    unresolved = [i for i in data.issues if i["status"] == "unresolved"]
    resolved = [i for i in data.issues if i["status"] == "resolved"]
    fixed, reassigned, reopened, deleted = unresolved[0], unresolved[1], resolved[0], unresolved[2]
    fixed.update(status="resolved", substatus=None)
    reassigned["assignedTo"] = {"type": "user", "id": data.members[0]["id"], "name": data.members[0]["name"],
                                "email": data.members[0]["email"]}
    reopened.update(status="unresolved", substatus="regressed")
    loop.deliver("issue", "resolved", {"issue": copy.deepcopy(fixed), "resolution_type": "resolved"})
    loop.deliver("issue", "assigned", {"issue": copy.deepcopy(reassigned), "assignee": reassigned["assignedTo"]})
    loop.deliver("issue", "unresolved", {"issue": copy.deepcopy(reopened)})
    loop.deliver("issue", "ignored", {"issue": copy.deepcopy(deleted)})
    data.remove_issue(deleted["id"])

    loop.process_webhooks()
    after_webhooks = loop.snapshot()
    assert after_webhooks != before

    fixed_keys = [k for k in after_webhooks if k.startswith(f"sentryIssue/{fixed['id']}-")]
    if every_status:
        assert fixed_keys and all(after_webhooks[k]["properties"]["status"] == "resolved" for k in fixed_keys)
    else:
        assert not fixed_keys, "a resolved issue must leave Port under is:unresolved"
    assert not [k for k in after_webhooks if k.startswith(f"sentryIssue/{deleted['id']}-")]
    assert [k for k in after_webhooks if k.startswith(f"sentryIssue/{reopened['id']}-")]

    resync = loop.full_resync()
    assert resync["upserts_sent"] == 0 and resync["deleted"] == 0, resync
    assert loop.snapshot() == after_webhooks


def test_comment_webhooks_upsert_and_delete_comment_entities(make_loop: Callable[[str | None], Loop]) -> None:
    loop = make_loop(str(EXAMPLE_WITH_COMMENTS))
    loop.full_resync()
    data = loop.sentry.state.dataset
    issue = data.issues[0]
    comment = loop.new_comment("1729635072", "Hello admin please take a look at this", "2023-06-15T17:15:53.383120Z")
    loop.deliver("comment", "created", comment)
    loop.process_webhooks()
    entity = loop.catalog.get_entity("sentryComment", "1729635072")
    assert entity is not None
    assert entity["properties"] == {"action": "created", "comment": comment["comment"], "project": "python-fastapi",
                                    "issue_id": issue["id"], "timestamp": comment["timestamp"]}
    assert entity["relations"] == {"sentryIssue": issue["id"]}
    assert loop.full_resync()["deleted"] == 0, "a resync must not treat webhook-only comments as stale"

    data.edit_comment(issue["id"], "1729635072", "edited")
    loop.deliver("comment", "updated", {**comment, "comment": "edited"})
    loop.process_webhooks()
    assert loop.catalog.get_entity("sentryComment", "1729635072")["properties"]["comment"] == "edited"

    data.delete_comment(issue["id"], "1729635072")
    loop.deliver("comment", "deleted", comment)
    loop.process_webhooks()
    assert loop.catalog.get_entity("sentryComment", "1729635072") is None


def test_a_failed_webhook_run_leaves_its_events_pending_and_they_are_retried(
        make_loop: Callable[[str | None], Loop], monkeypatch: pytest.MonkeyPatch) -> None:
    loop = make_loop(None)
    loop.full_resync()
    issue = [i for i in loop.sentry.state.dataset.issues if i["status"] == "unresolved"][0]
    issue.update(status="resolved")
    loop.deliver("issue", "resolved", {"issue": copy.deepcopy(issue)})
    outage = Fault("500", endpoint="/organizations/{org}/issues/", times=None)  # the batch refresh (group=)
    loop.sentry.state.config.faults.append(outage)

    tick = sentry_webhook_sensor(build_sensor_context(instance=loop.instance, cursor=None))
    assert isinstance(tick, SensorResult)
    [first] = tick.run_requests or []
    failed = sentry_webhook_sync.execute_in_process(run_config=first.run_config, instance=loop.instance,
                                                    resources=loop.resources, tags=first.tags, raise_on_error=False)
    assert not failed.success
    backing_off = sentry_webhook_sensor(build_sensor_context(instance=loop.instance, cursor=tick.cursor))
    assert isinstance(backing_off, SensorResult) and not backing_off.run_requests
    assert "retrying in" in (backing_off.skip_reason.skip_message or "")
    assert json.loads(backing_off.cursor or "{}")["failures"] == 1
    monkeypatch.setattr("sentry_port_assets.sensors.webhooks.RETRY_BASE_SECONDS", 0.0)
    retry = sentry_webhook_sensor(build_sensor_context(instance=loop.instance, cursor=tick.cursor))
    assert isinstance(retry, SensorResult)
    [second] = retry.run_requests or []
    assert second.run_key != first.run_key
    assert second.run_config == first.run_config
    assert loop.inbox.count_pending() == 1
    assert [k for k in loop.snapshot() if k.startswith(f"sentryIssue/{issue['id']}-")], "nothing applied yet"

    loop.sentry.state.config.faults.remove(outage)
    loop.cursor = tick.cursor
    loop.process_webhooks()
    assert not [k for k in loop.snapshot() if k.startswith(f"sentryIssue/{issue['id']}-")]


def test_a_batch_whose_run_never_started_is_retried_after_the_grace(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_WEBHOOK_INBOX", str(tmp_path / "inbox.sqlite"))
    with Inbox(tmp_path / "inbox.sqlite") as inbox:
        inbox.append(request_id="r1", resource="issue", action="resolved", issue_id="42",
                     body=b'{"action":"resolved","data":{"issue":{"id":"42"}}}')
    instance = DagsterInstance.ephemeral()
    recent = json.dumps({"batch": 1, "inflight": {"1": {"ids": [1], "at": time.time()}}})
    waiting = sentry_webhook_sensor(build_sensor_context(instance=instance, cursor=recent))
    assert isinstance(waiting, SensorResult) and not waiting.run_requests
    stale = json.dumps({"batch": 1, "inflight": {"1": {"ids": [1], "at": time.time() - 3600}}})
    monkeypatch.setattr("sentry_port_assets.sensors.webhooks.RETRY_BASE_SECONDS", 0.0)
    relaunch = sentry_webhook_sensor(build_sensor_context(instance=instance, cursor=stale))
    assert isinstance(relaunch, SensorResult)
    [request] = relaunch.run_requests or []
    assert request.run_key == "webhooks-2"
    assert request.run_config["ops"]["sync_webhook_events"]["config"]["event_ids"] == [1]


def test_done_events_are_purged_after_the_retention(make_loop: Callable[[str | None], Loop],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    loop = make_loop(None)
    loop.full_resync()
    issue = loop.sentry.state.dataset.issues[0]
    loop.deliver("issue", "assigned", {"issue": copy.deepcopy(issue)})
    loop.process_webhooks()
    assert [e.status for e in loop.inbox.get([1])] == ["done"]
    monkeypatch.setattr("sentry_port_assets.sensors.webhooks.RETAIN_DONE", timedelta(0))
    sentry_webhook_sensor(build_sensor_context(instance=loop.instance, cursor=loop.cursor))
    assert loop.inbox.get([1]) == []


@pytest.mark.parametrize("every_status", [False, True], ids=["is-unresolved", "every-status"])
def test_an_issue_outside_sentrys_90_day_window_leaves_port_by_resync_and_by_webhook(
        make_loop: Callable[[str | None], Loop], tmp_path: Path, every_status: bool) -> None:
    loop = make_loop(every_status_mapping(tmp_path) if every_status else None)
    data = loop.sentry.state.dataset
    loop.full_resync()
    quiet, touched = [i for i in data.issues if i["status"] == "unresolved"][1:3]
    old = (datetime.now(timezone.utc) - timedelta(days=91)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for issue in (quiet, touched):
        issue.update(lastSeen=old, firstSeen=old)
        assert [k for k in loop.snapshot() if k.startswith(f"sentryIssue/{issue['id']}-")]

    # A webhook for an issue Sentry's list no longer shows: not upserted again, but removed as a resync would.
    loop.deliver("issue", "assigned", {"issue": copy.deepcopy(touched)})
    loop.process_webhooks()
    assert not [k for k in loop.snapshot() if k.startswith(f"sentryIssue/{touched['id']}-")]

    resync = loop.full_resync()  # the resync lists neither, so the quiet one leaves Port now
    assert not [k for k in loop.snapshot() if k.startswith(f"sentryIssue/{quiet['id']}-")]
    assert resync["upserts_sent"] == 0, "the webhook left Port as the resync wants it"


def test_include_archived_false_leaves_ignored_issues_out_of_resync_and_webhooks(
        make_loop: Callable[[str | None], Loop], tmp_path: Path) -> None:
    """Ocean's `includeArchived: false`: an ignored ("archived") issue is removed, not upserted, here by the resync and
    the webhooks alike, even with a Sentry query that lists every status."""
    data = yaml.safe_load(Path(every_status_mapping(tmp_path)).read_text())
    for resource in data["resources"]:
        if resource["kind"] == "issue-tag":
            resource["selector"]["includeArchived"] = False
    path = tmp_path / "no-archived.yaml"
    path.write_text(yaml.safe_dump(data))
    loop = make_loop(str(path))
    issues = loop.sentry.state.dataset.issues
    loop.full_resync()
    ignored = [i for i in issues if i["status"] == "ignored"]
    assert ignored and not [k for k in loop.snapshot() for i in ignored if k.startswith(f"sentryIssue/{i['id']}-")]
    assert [k for k in loop.snapshot() for i in issues if i["status"] == "resolved"
            and k.startswith(f"sentryIssue/{i['id']}-")], "resolved issues stay: the query lists every status"

    archived = next(i for i in issues if i["status"] == "unresolved")
    archived.update(status="ignored", substatus="archived_forever")
    loop.deliver("issue", "ignored", {"issue": copy.deepcopy(archived)})
    loop.process_webhooks()
    assert not [k for k in loop.snapshot() if k.startswith(f"sentryIssue/{archived['id']}-")]
    assert loop.full_resync()["upserts_sent"] == 0


def test_webhook_deletes_leave_entities_other_writers_made(make_loop: Callable[[str | None], Loop]) -> None:
    """A webhook run deletes only what this integration wrote, as a resync does: an issue entity that Port's own Sentry
    integration (Ocean) wrote last, during a migration, stays when the issue is resolved."""
    loop = make_loop(None)
    data = loop.sentry.state.dataset
    loop.full_resync()
    fixed = next(i for i in data.issues if i["status"] == "unresolved"
                 and any(k.startswith(f"sentryIssue/{i['id']}-") for k in loop.snapshot()))
    ours = [e for e in loop.catalog.entities("sentryIssue") if e["identifier"].startswith(f"{fixed['id']}-")]
    ocean = ours[0]
    loop.catalog.upsert_entities("sentryIssue", [ocean], datasource="port-ocean/sentry/0.1.150/my-sentry/exporter")

    fixed.update(status="resolved", substatus=None)
    loop.deliver("issue", "resolved", {"issue": copy.deepcopy(fixed), "resolution_type": "resolved"})
    loop.process_webhooks()

    left = {e["identifier"] for e in loop.catalog.entities("sentryIssue") if e["identifier"].startswith(f"{fixed['id']}-")}
    assert left == {ocean["identifier"]}, "only the entity Ocean wrote stays; ours of the resolved issue go"
    assert len(ours) == 1 or left < {e["identifier"] for e in ours}


def test_a_value_that_becomes_null_in_sentry_is_cleared_in_port(make_loop: Callable[[str | None], Loop]) -> None:
    """enableMergeEntity: true (the default) merges what is sent; a property whose value became null is sent as an
    explicit null, so Port clears it rather than keeping the old value."""
    loop = make_loop(None)
    data = loop.sentry.state.dataset
    member = next(m for m in data.members if (m.get("user") or {}).get("lastLogin"))
    loop.full_resync()
    assert loop.catalog.get_entity("sentryUser", member["email"])["properties"]["lastLogin"]
    member["user"]["lastLogin"] = None
    meta = loop.full_resync()
    assert meta["updated"] >= 1, meta
    assert loop.catalog.get_entity("sentryUser", member["email"])["properties"].get("lastLogin") is None


def test_one_event_that_keeps_failing_is_dead_lettered_and_the_others_are_applied(
        make_loop: Callable[[str | None], Loop], monkeypatch: pytest.MonkeyPatch) -> None:
    """An issue seen in an environment Port refuses as an identifier (`staging eu`) fails every run that applies it.
    Its batch is split, the event fails alone MAX_ATTEMPTS times and is set aside; the other events land."""
    from sentry_port_assets.sensors import webhooks as sensor_module
    from sentry_port_assets.cli import main as webhooks_cli

    monkeypatch.setattr(sensor_module, "RETRY_BASE_SECONDS", 0.0)
    loop = make_loop(None)
    data = loop.sentry.state.dataset
    loop.full_resync()
    unresolved = [i for i in data.issues if i["status"] == "unresolved"]
    fixed, poison, reassigned = unresolved[0], unresolved[1], unresolved[2]
    fixed.update(status="resolved", substatus=None)
    data.issue_tag_values[(poison["id"], "environment")].append(
        {"key": "environment", "name": "staging eu", "value": "staging eu", "count": 1,
         "firstSeen": poison["firstSeen"], "lastSeen": poison["lastSeen"]})
    reassigned["assignedTo"] = {"type": "user", "id": data.members[0]["id"], "name": data.members[0]["name"],
                                "email": data.members[0]["email"]}
    loop.deliver("issue", "resolved", {"issue": copy.deepcopy(fixed)})
    loop.deliver("issue", "created", {"issue": copy.deepcopy(poison)})
    loop.deliver("issue", "assigned", {"issue": copy.deepcopy(reassigned)})

    cursor, runs = None, 0
    for _ in range(12):
        tick = sentry_webhook_sensor(build_sensor_context(instance=loop.instance, cursor=cursor))
        assert isinstance(tick, SensorResult), tick
        cursor = tick.cursor
        for request in tick.run_requests or []:
            runs += 1
            sentry_webhook_sync.execute_in_process(run_config=request.run_config, instance=loop.instance,
                                                   resources=loop.resources, tags=request.tags, raise_on_error=False)
        if not tick.run_requests and loop.inbox.count_pending() == 0:
            break
    assert loop.inbox.count_pending() == 0
    [(event, attempts, error, _)] = loop.inbox.dead_letters()
    assert event.issue_id == poison["id"] and attempts == sensor_module.MAX_ATTEMPTS and "FAILURE" in error
    snapshot = loop.snapshot()
    assert not [k for k in snapshot if k.startswith(f"sentryIssue/{fixed['id']}-")]
    assignees = {v["relations"]["assignee"] for k, v in snapshot.items() if k.startswith(f"sentryIssue/{reassigned['id']}-")}
    assert assignees == {data.members[0]["email"]}
    assert runs == 1 + 3 + sensor_module.MAX_ATTEMPTS - 1, runs  # the batch, each event alone, the retries
    assert "dead_lettered" in json.dumps(httpx.get(loop.receiver_url + "/healthz").json())

    webhooks_cli(["webhooks", "status", "--inbox", str(loop.inbox.path)])


def test_a_webhook_batch_refreshes_its_issues_in_one_request_per_hundred(
        make_loop: Callable[[str | None], Loop], monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated `group=` parameters make Sentry's issue list return exactly those issues: a batch of issue events
    costs one issue-list request per 100 issues (20 here, for a 50-issue organization), not one issue read each
    (which Sentry limits to 5 per second); only an issue the lookup misses is read on its own."""
    monkeypatch.setattr("sentry_port_assets.sentry.client.ISSUES_PER_GROUP_REQUEST", 20)
    loop = make_loop(None)
    data = loop.sentry.state.dataset
    loop.full_resync()
    stats = loop.sentry.state.endpoints
    single = "/organizations/{org}/issues/{issue}/"
    listed_before = stats["/organizations/{org}/issues/"].requests
    single_before = stats[single].requests if single in stats else 0
    issues = list(data.issues)
    gone = issues[5]["id"]
    data.remove_issue(gone)
    for issue in issues:
        loop.deliver("issue", "assigned", {"issue": copy.deepcopy(issue)})
    loop.process_webhooks()
    assert stats["/organizations/{org}/issues/"].requests - listed_before == 3  # 50 ids, 20 a request
    # only the issue the lookup did not return is read on its own, to tell "gone" (404) from "not covered" (403)
    assert (stats[single].requests if single in stats else 0) == single_before + 1
    assert not [k for k in loop.snapshot() if k.startswith(f"sentryIssue/{gone}-")]
    assert loop.full_resync()["upserts_sent"] == 0, "the webhook run left Port as a full resync would"
