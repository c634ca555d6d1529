"""The Sentry side: async API client, rate-limit governor, the Dagster resource, the demo organization."""
