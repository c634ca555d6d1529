"""The newest data wins: after each resync's publish, the webhook events received since that resync began reading
Sentry are applied again, so the resync's older read never has the last word in Port. Used by the webhook sensor
(batch runs) and the webhook worker alike."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from dagster import AssetKey, DagsterInstance

from sentry_port_assets.assets.catalog import RESYNC_STARTED
from sentry_port_assets.webhooks.inbox import Inbox

MAX_EVENTS = 1000


def replay_after_publish(instance: DagsterInstance, log: logging.Logger | logging.LoggerAdapter | Any, state: dict,
                         inbox: Inbox, catalog_key: AssetKey, installation: str | None) -> None:
    """Adds to `state["replay"]` the events received since the latest resync began, once per new publish
    (`state["published"]`: the storage id of the latest `port/catalog` materialization seen). The first call only
    records the latest publish: history is not replayed."""
    records = instance.fetch_materializations(catalog_key, limit=1).records
    if not records:
        return
    record = records[0]
    if "published" not in state:
        state["published"] = record.storage_id
        return
    if record.storage_id <= state["published"]:
        return
    state["published"] = record.storage_id
    materialization = record.asset_materialization
    started = materialization.metadata.get(RESYNC_STARTED) if materialization is not None else None
    if started is None:
        return
    # A timestamp (epoch seconds); materializations of earlier releases hold the RFC 3339 text.
    since = (datetime.fromtimestamp(started.value, timezone.utc) if isinstance(started.value, (int, float))
             else datetime.fromisoformat(str(started.value)))
    ids = [e.id for e in inbox.received_since(since, MAX_EVENTS, installation)]
    if ids:
        state["replay"] = sorted(set(state.get("replay", [])) | set(ids))
        log.info(f"{len(ids)} webhook events received since the resync began reading Sentry ({since}) are "
                 "applied again after its publish, so its older read does not have the last word")
