"""`build_sentry_port_defs(...)`: one instance of this project (one Sentry organization into one Port) as Dagster
`Definitions`, every name carrying `key_prefix` (`names.py`), so that several instances merge into one code location
(`Definitions.merge`). The standalone code location (`definitions.py`) is the instance without a prefix."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from dagster import ConfigurableResource, Definitions, FilesystemIOManager, in_process_executor

from sentry_port_assets.assets.catalog import build_port_catalog
from sentry_port_assets.assets.describe import Links, sentry_organization_url
from sentry_port_assets.assets.presentation import Presentation, Translate
from sentry_port_assets.assets.checks import build_entity_checks
from sentry_port_assets.assets.entities import OPTIONAL_ENTITIES, build_entity_assets, optional_entities, used_kinds
from sentry_port_assets.assets.sentry_raw import build_raw_assets
from sentry_port_assets.jobs import RELEASE_KINDS, build_jobs
from sentry_port_assets.config import webhook_worker_enabled, webhooks_configured
from sentry_port_assets.names import Names
from sentry_port_assets.port.resource import PortResource
from sentry_port_assets.resources.mapping import MappingResource
from sentry_port_assets.schedules import resync_schedule
from sentry_port_assets.sensors.mapping import build_mapping_sensor
from sentry_port_assets.sensors.publish import build_publish_sensor
from sentry_port_assets.sensors.releases import build_release_sensor
from sentry_port_assets.sensors.webhooks import build_webhook_sensor
from sentry_port_assets.sentry.resource import SentryResource
from sentry_port_assets.webhooks.job import build_webhook_job
from sentry_port_assets.webhooks.worker import build_webhook_worker_job

# Shared by every instance (one object, so merged Definitions agree on it): values are stored per asset key.
IO_MANAGER = FilesystemIOManager()


class PortIdentity(ConfigurableResource):
    """What one instance writes as in Port (`$datasource`), and so what it may delete; shown in the UI's resources.

    Its resource key is derived from the identity (`identity_resource_key`): `Definitions.merge`, which both
    `dg`'s defs folder and hand-written code locations use, refuses two different resources under one key, so two
    instances of one code location with the same identity (each of whose resyncs would delete the other's
    entities) stop the load, naming the identity."""

    identity: str
    instance: str


def identity_resource_key(identity: str) -> str:
    # Resource keys are identifiers; the digest keeps two identities that differ only in punctuation apart.
    readable = re.sub(r"[^A-Za-z0-9]+", "_", identity).strip("_")[:60]
    return f"port_identity__{readable}_{hashlib.sha256(identity.encode()).hexdigest()[:6]}"


def build_sentry_port_defs(
    *,
    sentry: SentryResource,
    mapping: MappingResource,
    port: PortResource,
    key_prefix: str = "",
    resync_cron: str = "0 * * * *",
    webhooks: bool = True,
    webhook_inbox: str | None = None,
    webhook_installation: str | None = None,
    owners: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    group_name: str | None = None,
    translate: Translate | None = None,
) -> Definitions:
    """The assets, checks, jobs, schedule and sensors of one instance, with its resources under prefixed keys.

    `webhook_inbox`: this instance's inbox (a file or a postgresql:// URL; None: SENTRY_WEBHOOK_INBOX);
    `webhook_installation`: the uuid of this organization's Sentry installation, whose events alone this instance
    applies (None: every event of the inbox; set it when instances share a receiver). `owners`, `tags`: added to
    every asset; `group_name`: one group for every asset; `translate(spec) -> spec`: any other change to each asset's
    `AssetSpec` but its key (`assets/presentation.py`).

    The mapping is loaded here (a mapping file that does not load stops the code location's load, naming what to
    fix): the jobs select the assets of the kinds it maps, and the entity assets describe its columns."""
    names = Names(key_prefix)
    mapping_at_load = mapping.at_load()
    links = Links(sentry_organization=None if sentry.is_demo else sentry_organization_url(sentry.host,
                                                                                          sentry.organization),
                  port_app=port.app_url_or_default if port.client_id else None)
    present = Presentation(owners=tuple(owners), tags=dict(tags or {}), group_name=group_name, translate=translate)
    jobs = build_jobs(names, used_kinds(mapping_at_load))
    webhook_job = build_webhook_job(names, webhook_inbox, webhook_installation)
    sensors = [build_mapping_sensor(names, jobs.sync), build_publish_sensor(names, jobs.publish)]
    if set(RELEASE_KINDS) & set(used_kinds(mapping_at_load)):
        sensors.append(build_release_sensor(names, jobs.releases.name))
    worker_job = (build_webhook_worker_job(names, webhook_inbox, webhook_installation)
                  if webhooks and webhook_worker_enabled() else None)
    if webhooks:
        sensors.append(build_webhook_sensor(names, webhook_job, webhook_inbox, webhook_installation,
                                            running=webhooks_configured(webhook_inbox),
                                            worker_job=worker_job.name if worker_job else None))
    return Definitions(
        assets=[*build_raw_assets(names, links, present), *build_entity_assets(names, mapping_at_load, links, present),
                build_port_catalog(names, links, present)],
        asset_checks=[build_entity_checks(names)],
        jobs=[*jobs.all, *([webhook_job] if webhooks else []), *([worker_job] if worker_job else [])],
        schedules=[resync_schedule(resync_cron, names, jobs.sync)],
        sensors=sensors,
        resources={
            names.resource("sentry"): sentry,
            names.resource("mapping"): mapping,
            names.resource("port"): port,
            # Named explicitly: `optional_entities` loads through it, and Dagster resolves every top-level resource's
            # dependencies when it builds a sensor's or schedule's context, where no default io_manager is added.
            "io_manager": IO_MANAGER,
            OPTIONAL_ENTITIES: optional_entities,
            identity_resource_key(port.integration_identifier): PortIdentity(
                identity=port.integration_identifier, instance=key_prefix or "(no prefix)"),
        },
        # Each asset already runs its Sentry/Port calls concurrently; a process per step would cost more to start
        # (~2 s each) than the parallelism between steps gains.
        executor=in_process_executor,
    )
