-- The webhook inbox lives in its own database beside Dagster's (SENTRY_WEBHOOK_INBOX points at it).
CREATE DATABASE sentry_port_inbox OWNER dagster;
