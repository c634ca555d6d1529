"""Typed Port errors. Each message names the request, Port's answer and its X-Trace-Id; none carries the
client secret or the access token (`redact` scrubs them from anything that came back from the wire)."""

from __future__ import annotations

from collections.abc import Iterable


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


class PortError(Exception):
    """Base of every error the Port client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        trace_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error
        self.trace_id = trace_id
        self.method = method
        self.path = path


class PortConfigError(PortError):
    """The settings are incomplete or contradictory (missing credentials, demo data with a real Port)."""


class PortAuthError(PortError):
    """Port refused the credentials in PORT_CLIENT_ID / PORT_CLIENT_SECRET, or a fresh token."""


class PortNotFoundError(PortError):
    """404: the blueprint or entity does not exist."""


class PortRequestError(PortError):
    """Port refused the request (4xx other than 401/404/413/429): retrying cannot fix it."""


class PortServerError(PortError):
    """5xx or 429 still answered after every retry."""


class PortConnectionError(PortError):
    """Timeouts or dropped connections after every retry."""


class PortPagingError(PortError):
    """A paged search whose `next` repeats, or that runs on far past any catalog's size: it would never end."""
