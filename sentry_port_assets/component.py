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

import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import dagster as dg

from sentry_port_assets.config import (DEFAULT_PORT_BASE_URL, DEFAULT_SENTRY_HOST, ConfigError, Settings,
                                      default_port_identity, identity_problem, resync_cron, url_problem)
from sentry_port_assets.factory import build_sentry_port_defs
from sentry_port_assets.mapping.engine import MappingConfigError
from sentry_port_assets.resources import build_resources
from sentry_port_assets.scaffold import SentryPortScaffolder


# `{{ env.NAME }}` or `{{ env("NAME") }}`: Dagster's templating of an environment variable.
_ENV_TEMPLATE = re.compile(r"""\{\{\s*env(?:\.([A-Za-z_][A-Za-z0-9_]*)|\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]\s*\))\s*\}\}""")


# What a secret attribute resolves to when it holds something else than a template: the value itself is dropped at
# once; `build_defs` refuses the instance (an error raised while resolving would show the defs.yaml line, secret and
# all, in Dagster's load error).
_NOT_A_TEMPLATE = "\x00not an env template"


def _variable_of(context: dg.ResolutionContext, raw: Any) -> Optional[str]:
    """The NAME in a secret attribute's `{{ env.NAME }}`, read before Dagster renders the template: the secret then
    becomes an `EnvVar("NAME")` reference, as with the `*_env` attributes, and its value reaches no resource config,
    run snapshot or UI."""
    if raw is None:
        return None
    match = _ENV_TEMPLATE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    return (match.group(1) or match.group(2)) if match else _NOT_A_TEMPLATE


def _secret(description: str) -> Any:
    return dg.Resolver(_variable_of, model_field_type=Optional[str], inject_before_resolve=False,
                       description=description)


@dg.scaffold_with(SentryPortScaffolder)
class SentryPortComponent(dg.Component, dg.Model, dg.Resolvable):
    """One Sentry organization kept in sync with Port: raw and entity assets, checks, jobs, the resync schedule and
    the sensors, every name prefixed with `key_prefix`."""

    key_prefix: str = ""
    sentry_host: str = DEFAULT_SENTRY_HOST
    sentry_organization: Optional[str] = None
    # The name of the variable holding the Sentry token, or the token as "{{ env.NAME }}"; neither: the demo.
    sentry_token_env: Optional[str] = None
    sentry_token: Annotated[Optional[str], _secret('"{{ env.ACME_SENTRY_TOKEN }}": the Sentry token')] = None
    # The mapping: a file (relative to this defs.yaml's folder), else Port's integration config, else the default.
    mapping_file: Optional[str] = None
    port_integration_identifier: Optional[str] = None
    port_base_url: str = DEFAULT_PORT_BASE_URL
    port_client_id_env: Optional[str] = None
    port_client_secret_env: Optional[str] = None
    port_client_id: Annotated[Optional[str], _secret('"{{ env.PORT_CLIENT_ID }}": Port\'s client id')] = None
    port_client_secret: Annotated[Optional[str], _secret('"{{ env.PORT_CLIENT_SECRET }}": Port\'s client secret')] = None
    # Port's web app, for the links in the assets' metadata (default: from port_base_url's region).
    port_app_url: Optional[str] = None
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
    # Added to every asset of this instance, as Dagster's integrations take them: owners (emails or team:name),
    # tags, and one group for all of them. Anything else: `post_processing` in this defs.yaml (README).
    owners: list[str] = []
    tags: dict[str, str] = {}
    group_name: Optional[str] = None

    def _variable(self, context: dg.ComponentLoadContext, name: str) -> Optional[str]:
        """The variable holding secret `name`: its `*_env` attribute, or its `{{ env.X }}` one."""
        named, templated = getattr(self, f"{name}_env"), getattr(self, name)
        if templated == _NOT_A_TEMPLATE:
            raise dg.DagsterInvalidDefinitionError(
                f"{context.path}: {name} takes Dagster's template of an environment variable, \"{{{{ env.NAME }}}}\", "
                f"never the secret itself (what it holds is not repeated here); or set {name}_env to the variable's "
                "name. Remove the secret from the file.")
        if named and templated:
            raise dg.DagsterInvalidDefinitionError(f"{context.path}: set {name}_env or {name}, not both")
        return named or templated

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # dg copies every sensor a component returns to add its code references (Definitions.with_definition_
        # metadata_update), passing `owners=[]` for the None we gave, and Dagster 1.13 then warns that `owners` is a
        # beta parameter: once per sensor and command. Set here, not at import, so the filter is in force when dg
        # copies them (dg loads modules inside its own warnings context).
        warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`",
                                category=dg.BetaWarning)
        token, client_id, client_secret = (self._variable(context, n) for n in
                                           ("sentry_token", "port_client_id", "port_client_secret"))
        demo = not token
        if demo and (client_id or client_secret):
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
            sentry_token_var=token, port_base_url=self.port_base_url,
            port_client_id_var=client_id, port_client_secret_var=client_secret,
            mapping_file=str((Path(context.path) / self.mapping_file).resolve()) if self.mapping_file else None,
            integration_identifier=self.port_integration_identifier, local_catalog=self.local_catalog,
            resync_cron=self.resync_cron or self._cron_of_minutes(context),
            port_identity=self._identity(context, demo), adopt_integration=self._adopted(context, client_id,
                                                                                          client_secret),
            port_app_url=self.port_app_url, defs_yaml=str(Path(context.path) / "defs.yaml"))
        resources = build_resources(settings)
        try:
            return build_sentry_port_defs(sentry=resources["sentry"], mapping=resources["mapping"],
                                          port=resources["port"], key_prefix=self.key_prefix,
                                          resync_cron=settings.resync_cron, webhooks=self.webhooks,
                                          webhook_inbox=self.webhook_inbox,
                                          webhook_installation=self.webhook_installation, owners=self.owners,
                                          tags=self.tags, group_name=self.group_name)
        except MappingConfigError as exc:
            raise dg.DagsterInvalidDefinitionError(f"{context.path}: the mapping does not load: {exc}") from None

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

    def _adopted(self, context: dg.ComponentLoadContext, client_id: str | None,
                 client_secret: str | None) -> str | None:
        if not self.adopt_integration:
            return None
        problem = identity_problem("adopt_integration", self.adopt_integration, "name the Ocean integration to adopt")
        if not problem and not (client_id and client_secret):
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
