"""A Sentry value Port does not allow (an environment named `staging eu`: Sentry allows spaces, Port's identifier
pattern does not) is isolated: every other entity lands, the stale ones are still deleted, and the refusal either
fails the run (the default) or, with PORT_REFUSED_ENTITIES=warn, the publish's asset check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, materialize

from sentry_port_assets.assets.catalog import REFUSED_CHECK, port_catalog
from sentry_port_assets.assets.entities import entity_assets
from sentry_port_assets.assets.sentry_raw import raw_assets
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.port.catalog import LocalCatalog
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets_tests import port_fixtures as fx
from sentry_port_assets_tests.conftest import ENTITY_INPUTS, RunningSentry, table_text

ALL = [*raw_assets, *entity_assets, port_catalog]


def resources(sentry: RunningSentry, port_url: str, mode: str) -> dict[str, Any]:
    return {"sentry": SentryResource(host=sentry.url, organization=sentry.organization, token=sentry.token,
                                     max_retries=1, backoff_seconds=0.01),
            "mapping": MappingResource(),
            "port": PortResource(base_url=port_url, client_id=fx.CLIENT_ID, client_secret=fx.CLIENT_SECRET,
                                 refused_entities=mode), **ENTITY_INPUTS}


def test_an_environment_port_refuses_is_isolated_and_reported(
        sentry_emulator: Callable[..., RunningSentry], tmp_path: Path) -> None:
    sentry = sentry_emulator()
    data = sentry.state.dataset
    catalog = LocalCatalog(tmp_path / "port.sqlite")
    catalog.create_blueprint(fx.PORT_USER)
    instance = DagsterInstance.ephemeral()
    with fx.serve_port(catalog) as (url, emulator):
        assert materialize(ALL, resources=resources(sentry, url, "fail"), instance=instance).success
        gone = next(i for i in data.issues if i["status"] == "unresolved")
        data.remove_issue(gone["id"])
        first = data.issues[0]
        # An environment is the project's as soon as one of its issues is seen there (Sentry's tag store).
        slug = first["project"]["slug"]
        data.project_tag_values[(slug, "environment")].append(
            dict(data.project_tag_values[(slug, "environment")][0], name="staging eu", value="staging eu"))
        data.issue_tag_values[(first["id"], "environment")].append(
            dict(data.issue_tag_values[(first["id"], "environment")][0], name="staging eu", value="staging eu"))
        data.record_event(first["id"])  # a value appears with an event, which moves the issue's lastSeen and count
        held_before = catalog.count()

        failed = materialize(ALL, resources=resources(sentry, url, "fail"), instance=instance, raise_on_error=False)
        assert not failed.success
        [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        refused = failure.event_specific_data.user_failure_data.metadata
        assert refused["failed"].value == 2 and "staging eu" in table_text(refused["failures"])
        assert emulator.stats.requests_refused_whole >= 1
        assert catalog.get_entity("sentryProjectEnvironment", f"{slug}-staging eu") is None
        assert not [e for e in catalog.entities("sentryIssue") if e["identifier"].startswith(f"{gone['id']}-")], \
            "the refused entities do not block deleting what is stale"
        assert catalog.count() < held_before

        warned = materialize(ALL, resources=resources(sentry, url, "warn"), instance=instance)
        assert warned.success
        [check] = warned.get_asset_check_evaluations()
        assert check.check_name == REFUSED_CHECK and not check.passed
        assert check.metadata["refused"].value == 2 and "staging eu" in table_text(check.metadata["entities"])
