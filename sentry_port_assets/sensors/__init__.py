"""Sensors: publish new entities, consume the webhook inbox, resync on a mapping change."""

from sentry_port_assets.sensors.mapping import port_mapping_sensor
from sentry_port_assets.sensors.publish import publish_on_new_entities
from sentry_port_assets.sensors.webhooks import sentry_webhook_sensor

__all__ = ["port_mapping_sensor", "publish_on_new_entities", "sentry_webhook_sensor"]
