"""The mapping as a step reads it: the run's one snapshot (`resources/mapping.py`). A mapping that does not load
fails the step with one line naming the source, the resource, the field and the expression (jq's full message,
with its caret, goes to the failure's metadata). Every asset that maps records the snapshot's sha256 under
`MAPPING_SHA`, which `port/catalog` compares before it deletes anything."""

from __future__ import annotations

from dagster import AssetExecutionContext, Failure, MetadataValue, OpExecutionContext

from sentry_port_assets.mapping.compiled import CompiledMapping
from sentry_port_assets.mapping.loader import MappingConfigError
from sentry_port_assets.resources.mapping import MappingResource

MAPPING_SHA = "mapping_sha256"


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def mapping_for_step(context: AssetExecutionContext | OpExecutionContext, mapping: MappingResource) -> CompiledMapping:
    try:
        return mapping.load(context.instance, context.run.run_id)
    except MappingConfigError as exc:
        raise Failure(description=f"the mapping does not load, nothing was fetched or published: {one_line(str(exc))}",
                      metadata={"error": MetadataValue.md(f"```\n{exc}\n```")}, allow_retries=False) from None
