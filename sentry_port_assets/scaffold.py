"""What `dg scaffold defs sentry_port_assets.SentryPortComponent <folder> [--organization ORG]` writes: a `defs.yaml`
with every attribute a team sets, commented, instead of Dagster's default `attributes: {}` (which is the bundled
demo organization without a prefix: fine to try, not what a second organization needs)."""

from __future__ import annotations

import re
from typing import Optional

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel, Field

from sentry_port_assets.config import DEFAULT_PORT_BASE_URL, DEFAULT_SENTRY_HOST

DEMO = """type: {type_name}

# The bundled demo organization into the local catalog: no credentials needed. For a real organization, scaffold
# again with --organization <slug>, or see the README ("Add to your Dagster project").
attributes:
  key_prefix: {prefix}
"""

ORGANIZATION = """type: {type_name}

# One Sentry organization kept in sync with Port. Secrets are the NAMES of environment variables (EnvVar
# references): their values never appear here, in the UI or in run config.
attributes:
  key_prefix: {prefix}{prefix_note}
  sentry_host: {sentry_host}
  sentry_organization: {organization}
  sentry_token_env: {token_env}
  port_base_url: {port_base_url}    # US region: https://api.us.getport.io
  port_client_id_env: PORT_CLIENT_ID
  port_client_secret_env: PORT_CLIENT_SECRET
  # port_identity: sentry-{organization}  # who this instance writes as in Port ($datasource): it deletes only what
  #                                  it wrote. Default: sentry-<organization> on sentry.io, sentry-<organization>.<host>
  #                                  on any other Sentry host. Pin it when moving an install to a new host.
  # adopt_integration: my-sentry     # replacing Port's Ocean Sentry integration: what it wrote becomes this one's
  resync_minutes: 60                             # or a cron expression: resync_cron: "0 6 * * 1-5"
  webhooks: true
  # mapping_file: mapping.yaml                   # Ocean's mapping YAML, relative to this folder; or Port's own:
  # port_integration_identifier: my-sentry-integration
  # webhook_inbox: "{{{{ env.{inbox_env} }}}}"   # a file or postgresql:// URL, from a variable so no password
  #                                  is in this file; its sensor and runs read it. Default: SENTRY_WEBHOOK_INBOX
  # webhook_installation: <uuid>                 # one receiver for several organizations: this one's installation
  # owners: [team:platform]                      # on every asset of this instance, with tags: and group_name:
"""


class SentryPortScaffoldParams(BaseModel):
    organization: Optional[str] = Field(default=None, description="the Sentry organization's slug (unset: the demo)")


def key_prefix_for(name: str) -> str:
    """A valid key prefix (`names.py`: lowercase letters, digits, _, starting with a letter) from a slug or folder."""
    prefix = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not prefix or not prefix[0].isalpha():
        prefix = f"sentry_{prefix}".rstrip("_")
    return prefix[:40]


class SentryPortScaffolder(dg.Scaffolder[SentryPortScaffoldParams]):
    @classmethod
    def get_scaffold_params(cls) -> type[SentryPortScaffoldParams]:
        return SentryPortScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[SentryPortScaffoldParams]) -> None:
        if request.scaffold_format != "yaml" or request.append:
            scaffold_component(request)
            return
        organization = request.params.organization if request.params else None
        if organization:
            prefix = key_prefix_for(organization)
            text = ORGANIZATION.format(
                type_name=request.type_name, prefix=prefix, organization=organization, sentry_host=DEFAULT_SENTRY_HOST,
                token_env=f"{prefix.upper()}_SENTRY_TOKEN", inbox_env=f"{prefix.upper()}_WEBHOOK_INBOX",
                port_base_url=DEFAULT_PORT_BASE_URL,
                prefix_note="" if prefix == organization else f"   # from the slug {organization!r}")
        else:
            text = DEMO.format(type_name=request.type_name, prefix=key_prefix_for(request.target_path.name))
        (request.target_path / "defs.yaml").write_text(text, encoding="utf-8")
