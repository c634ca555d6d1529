"""The mapping as a step reads it: a mapping that does not load fails the step with one line naming the source,
the resource, the field and the expression (jq's full message, with its caret, goes to the failure's metadata)."""

from __future__ import annotations

from dagster import Failure, MetadataValue

from sentry_port_assets.mapping.config import MappingConfig
from sentry_port_assets.mapping.loader import MappingConfigError
from sentry_port_assets.mapping.resource import MappingResource


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def mapping_for_step(mapping: MappingResource) -> MappingConfig:
    try:
        return mapping.load()
    except MappingConfigError as exc:
        raise Failure(description=f"the mapping does not load, nothing was fetched or published: {one_line(str(exc))}",
                      metadata={"error": MetadataValue.md(f"```\n{exc}\n```")}, allow_retries=False) from None
