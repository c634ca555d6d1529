"""`MappingResource`: the active mapping (Ocean's YAML) as a Dagster resource, one snapshot per run.

Two sources (`mapping/source.py`'s `MappingSource`):
- the file: `path` (PORT_MAPPING_FILE), None = the bundled default mapping;
- Port's integration config, when `integration_identifier` (PORT_INTEGRATION_IDENTIFIER) is set: `GET
  /v1/integration/{identifier}`, whose `config` is the mapping (as Ocean keeps it), read through the nested
  `port` resource (`PortResource`, the same credentials the publish uses).

One snapshot per run: the first step of a run that loads the mapping reads the source, keeps the content in the
instance's key-value store (content-addressed, so it works across step processes and machines) and tags the run
with its sha256 (`sentry_port/mapping_sha256`); every later step of that run maps with that content, whatever
the file or Port says by then. A run launched by `port_mapping_sensor` or `publish_on_new_entities` arrives with
the tag already set, so it maps with exactly what the sensor saw. Every asset records the sha256 it mapped with,
and `port/catalog` refuses deletes when its inputs disagree (see `assets/catalog.py`).
"""

from __future__ import annotations

import json
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.loader import MappingConfigError, MappingSnapshot
from sentry_port_assets.mapping.source import MappingSource, compile_snapshot
from sentry_port_assets.mapping_sources import READ_RETRIES, READ_TIMEOUT_SECONDS, MappingSettingsError, mapping_source
from sentry_port_assets.port.resource import PortResource

__all__ = ["MAPPING_SHA_TAG", "MappingResource", "MappingSettingsError", "run_snapshot", "store_snapshot"]

MAPPING_SHA_TAG = "sentry_port/mapping_sha256"
_KV_PREFIX = "sentry_port/mapping_snapshot/"


def store_snapshot(instance: dg.DagsterInstance, snapshot: MappingSnapshot) -> None:
    """Keeps `snapshot`'s content in the instance, under its sha256, for the runs tagged with it."""
    value = json.dumps({"source": snapshot.source, "sha256": snapshot.sha256, "text": snapshot.text,
                        "format": snapshot.format, "updated_at": snapshot.updated_at})
    instance.run_storage.set_cursor_values({_KV_PREFIX + snapshot.sha256: value})


def stored_snapshot(instance: dg.DagsterInstance, sha256: str) -> MappingSnapshot | None:
    value = instance.run_storage.get_cursor_values({_KV_PREFIX + sha256}).get(_KV_PREFIX + sha256)
    if not value:
        return None
    data = json.loads(value)
    return MappingSnapshot(source=data["source"], sha256=data["sha256"], text=data["text"], format=data["format"],
                           updated_at=data.get("updated_at"))


def run_snapshot(instance: dg.DagsterInstance, run_id: str, source: MappingSource) -> MappingSnapshot:
    """The run's one snapshot: the one its tag names, else the source's content now (then tagged on the run)."""
    run = instance.get_run_by_id(run_id)
    tagged = (run.tags if run else {}).get(MAPPING_SHA_TAG)
    if tagged:
        stored = stored_snapshot(instance, tagged)
        if stored is not None:
            return stored
        current = source.snapshot()
        if current.sha256 != tagged:
            raise MappingConfigError(
                f"this run is tagged to map with the mapping of sha256 {tagged[:12]} ({MAPPING_SHA_TAG}), which the "
                f"instance no longer holds, and {current.source} now has {current.sha256[:12]}: launch a new run")
        store_snapshot(instance, current)
        return current
    current = source.snapshot()
    store_snapshot(instance, current)
    instance.add_run_tags(run_id, {MAPPING_SHA_TAG: current.sha256})
    # Another step of this run may have tagged it in the same instant: every step goes by the tag that stuck.
    run = instance.get_run_by_id(run_id)
    final = (run.tags if run else {}).get(MAPPING_SHA_TAG, current.sha256)
    if final != current.sha256:
        return stored_snapshot(instance, final) or current
    return current


class MappingResource(dg.ConfigurableResource):
    """The mapping file (PORT_MAPPING_FILE; None = the bundled default), or Port's integration config when
    `integration_identifier` (PORT_INTEGRATION_IDENTIFIER) is set, read through the nested `port` resource."""

    path: Optional[str] = None
    integration_identifier: Optional[str] = None
    port: Optional[PortResource] = None
    # The snapshot this resource maps with: in a run, the run's; outside one, the first one read.
    _snapshot: Optional[MappingSnapshot] = PrivateAttr(default=None)

    def mapping_source(self) -> MappingSource:
        # Port's config is read with the Port resource's own client: the credentials the publish uses.
        port = self.port
        credentials = (bool(port and port.client_id), bool(port and port.client_secret))
        client = (lambda: port.client(timeout=READ_TIMEOUT_SECONDS, max_retries=READ_RETRIES)) \
            if port is not None and all(credentials) else None
        return mapping_source(self.path, self.integration_identifier, client, credentials)

    @property
    def source(self) -> str:
        return self.mapping_source().label

    def snapshot(self) -> MappingSnapshot:
        """The mapping's content as it is now (no compilation; the sensor compares hashes). Raises
        MappingConfigError when it cannot be read, MappingSettingsError when the settings are incomplete,
        PortError when Port cannot answer."""
        return self.mapping_source().snapshot()

    def at_load(self) -> Optional[CompiledMapping]:
        """The mapping as the code location loads it, compiled (so a broken file stops the load, as every other
        setting does), or None when it is Port's integration config: the runs read that one, the load does not call
        Port. Runs still map with their own snapshot (`load`): a file edited later is what they use."""
        if self.integration_identifier:
            return None
        return compile_snapshot(self.snapshot())

    def compile(self, snapshot: MappingSnapshot) -> CompiledMapping:
        return compile_snapshot(snapshot)

    def load(self, instance: Optional[dg.DagsterInstance] = None, run_id: Optional[str] = None) -> CompiledMapping:
        """The mapping, validated and compiled. Given the run (`instance`, `run_id`): the run's one snapshot, the
        same for every step; without: the first snapshot this resource read."""
        if self._snapshot is None:
            if instance is not None and run_id is not None:
                self._snapshot = run_snapshot(instance, run_id, self.mapping_source())
            else:
                self._snapshot = self.snapshot()
        return compile_snapshot(self._snapshot)
