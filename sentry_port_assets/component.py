"""`SentryPortComponent`: this project as a Dagster component, for code locations that already exist.

    dg scaffold defs sentry_port_assets.SentryPortComponent sentry_acme --organization acme

writes `defs/sentry_acme/defs.yaml` (`scaffold.py`), in short:

    type: sentry_port_assets.SentryPortComponent
    attributes:
      key_prefix: acme
      sentry_organization: acme
      sentry_token_env: ACME_SENTRY_TOKEN          # the NAME of the variable: the UI shows it, never the value
      port_client_id_env: PORT_CLIENT_ID
      port_client_secret_env: PORT_CLIENT_SECRET
      port_identity: sentry-acme                   # what this instance writes as in Port, and so may delete
      webhook_installation: 54a3e698-…             # with one receiver for several organizations: this one's

Every name the instance defines carries `key_prefix` (`names.py`); several components live side by side. Secrets
are given as the names of environment variables and become `EnvVar` references, so they never appear in defs.yaml,
the UI or run config. Leave `sentry_token_env` unset for the bundled demo organization (into the local catalog).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg

from sentry_port_assets.config import (DEFAULT_PORT_BASE_URL, DEFAULT_SENTRY_HOST, ConfigError, Settings,
                                      default_port_identity, identity_problem, resync_cron, url_problem)
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.resources import build_resources
from sentry_port_assets.scaffold import SentryPortScaffolder


@dg.scaffold_with(SentryPortScaffolder)
class SentryPortComponent(dg.Component, dg.Model, dg.Resolvable):
    """One Sentry organization kept in sync with Port: raw and entity assets, checks, jobs, the resync schedule and
    the sensors, every name prefixed with `key_prefix`."""

    key_prefix: str = ""
    sentry_host: str = DEFAULT_SENTRY_HOST
    sentry_organization: Optional[str] = None
    # The name of the variable holding the Sentry token; unset: the bundled demo organization.
    sentry_token_env: Optional[str] = None
    # The mapping: a file (relative to this defs.yaml's folder), else Port's integration config, else the default.
    mapping_file: Optional[str] = None
    port_integration_identifier: Optional[str] = None
    port_base_url: str = DEFAULT_PORT_BASE_URL
    port_client_id_env: Optional[str] = None
    port_client_secret_env: Optional[str] = None
    # Who this instance is in Port (`$datasource`): it deletes only what it wrote. Default: sentry-<organization> on
    # sentry.io, sentry-<organization>.<host> on any other Sentry (config.default_port_identity).
    port_identity: Optional[str] = None
    # The identifier of Port's Ocean Sentry integration this instance replaces (PORT_ADOPT_INTEGRATION): what it wrote
    # becomes this instance's (README, "Switching from Ocean").
    adopt_integration: Optional[str] = None
    # Without Port credentials: the local catalog file (default: PORT_LOCAL_CATALOG, else under DAGSTER_HOME; shared
    # by every instance, as one Port is, each deleting only what it wrote).
    local_catalog: Optional[str] = None
    # How often the resync runs: every `resync_minutes` (as SENTRY_PORT_RESYNC_MINUTES), or a cron expression.
    resync_minutes: int = 60
    resync_cron: Optional[str] = None
    webhooks: bool = True
    # This instance's webhook inbox (a file or a postgresql:// URL); unset: SENTRY_WEBHOOK_INBOX.
    webhook_inbox: Optional[str] = None
    # The uuid of this organization's Sentry installation (the `installation.uuid` of its webhooks): with one
    # receiver for several organizations, this instance applies only its own events. Unset: every event.
    webhook_installation: Optional[str] = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        demo = not self.sentry_token_env
        if demo and (self.port_client_id_env or self.port_client_secret_env):
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path}: Port credentials are set but sentry_token_env is not: the bundled demo organization "
                "would be the source, and demo data must never reach a real Port. Set sentry_token_env and "
                "sentry_organization, or remove the Port credentials to use the local catalog")
        if not demo and not self.sentry_organization:
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path}: sentry_token_env is set but sentry_organization is not: name the organization")
        for attribute, url in (("sentry_host", self.sentry_host), ("port_base_url", self.port_base_url)):
            problem = url_problem(attribute, url)
            if problem:
                raise dg.DagsterInvalidDefinitionError(f"{context.path}: {problem}")
        # The same settings the standalone location reads from the environment, so the resources (and the demo's
        # own ones) are chosen in one place: `resources/__init__.py`.
        settings = Settings(
            sentry_host=self.sentry_host, sentry_organization=self.sentry_organization,
            sentry_token_var=self.sentry_token_env, port_base_url=self.port_base_url,
            port_client_id_var=self.port_client_id_env, port_client_secret_var=self.port_client_secret_env,
            mapping_file=str((Path(context.path) / self.mapping_file).resolve()) if self.mapping_file else None,
            integration_identifier=self.port_integration_identifier, local_catalog=self.local_catalog,
            resync_cron=self.resync_cron or self._cron_of_minutes(context),
            port_identity=self._identity(context, demo), adopt_integration=self._adopted(context))
        resources = build_resources(settings)
        return build_sentry_port_defs(sentry=resources["sentry"], mapping=resources["mapping"],
                                      port=resources["port"], key_prefix=self.key_prefix,
                                      resync_cron=settings.resync_cron, webhooks=self.webhooks,
                                      webhook_inbox=self.webhook_inbox,
                                      webhook_installation=self.webhook_installation)

    def _identity(self, context: dg.ComponentLoadContext, demo: bool) -> str:
        """`port_identity`, else the default of `config.default_port_identity` (per Sentry host and organization);
        demo instances are told apart by their prefix, so that two of them may share a code location."""
        if self.port_identity:
            problem = identity_problem("port_identity", self.port_identity)
            if problem:
                raise dg.DagsterInvalidDefinitionError(f"{context.path}: {problem}")
            return self.port_identity
        if demo and not self.port_integration_identifier:
            return f"sentry-demo-{self.key_prefix}" if self.key_prefix else "sentry-demo"
        return default_port_identity(self.port_integration_identifier, self.sentry_organization, self.sentry_host)

    def _adopted(self, context: dg.ComponentLoadContext) -> str | None:
        if not self.adopt_integration:
            return None
        problem = identity_problem("adopt_integration", self.adopt_integration, "name the Ocean integration to adopt")
        if not problem and not (self.port_client_id_env and self.port_client_secret_env):
            problem = ("adopt_integration is set without Port credentials (port_client_id_env, "
                       "port_client_secret_env): an Ocean integration's entities are in Port, not in the local catalog")
        if problem:
            raise dg.DagsterInvalidDefinitionError(f"{context.path}: {problem}")
        return self.adopt_integration

    def _cron_of_minutes(self, context: dg.ComponentLoadContext) -> str:
        try:
            return resync_cron(self.resync_minutes)
        except ConfigError as exc:
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path}: resync_minutes: {exc}".replace("SENTRY_PORT_RESYNC_MINUTES=", "")
                + "; or set resync_cron to a cron expression") from None
