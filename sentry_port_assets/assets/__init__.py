"""Dagster assets: raw Sentry data (group `sentry`), Port entities (group `port`), and the publish step."""
