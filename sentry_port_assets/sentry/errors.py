"""Typed Sentry errors. Each message names what to fix; none carries the token."""

from __future__ import annotations

# The scope each endpoint needs, keyed by the endpoint template the client uses.
SCOPES: dict[str, str] = {
    "/organizations/{org}/": "org:read",
    "/organizations/{org}/members/": "member:read",
    "/organizations/{org}/teams/": "org:read",
    "/teams/{org}/{team}/members/": "team:read",
    "/organizations/{org}/projects/": "org:read",
    "/projects/{org}/{project}/tags/{key}/values/": "project:read",
    "/organizations/{org}/issues/": "event:read",
    "/organizations/{org}/issues/{issue}/": "event:read",
    "/organizations/{org}/issues/{issue}/tags/{key}/values/": "event:read",
}


class SentryError(Exception):
    """Base of every error the Sentry client raises."""


class SentryAuthError(SentryError):
    def __init__(self, endpoint: str) -> None:
        super().__init__(
            f"Sentry rejected the token in SENTRY_TOKEN (401 on GET {endpoint}). "
            "Create a new auth token with the scopes org:read, member:read, team:read, project:read and "
            "event:read, and set it in SENTRY_TOKEN."
        )


class SentryPermissionError(SentryError):
    def __init__(self, endpoint: str) -> None:
        scope = SCOPES.get(endpoint, "the matching read scope")
        self.endpoint = endpoint
        self.scope = scope
        super().__init__(
            f"Sentry refused GET {endpoint} (403): the token in SENTRY_TOKEN lacks the scope {scope}. "
            f"Add {scope} to the token."
        )


class SentryNotFoundError(SentryError):
    def __init__(self, endpoint: str, path: str) -> None:
        self.endpoint = endpoint
        super().__init__(f"Sentry answered 404 for GET {path}.")


class SentryOrganizationNotFound(SentryError):
    def __init__(self, organization: str) -> None:
        super().__init__(
            f"The Sentry organization {organization!r} does not exist (or the token cannot see it): "
            "check the slug in SENTRY_ORGANIZATION (it is the `acme` of https://acme.sentry.io) and SENTRY_HOST."
        )


class SentryConfigError(SentryError):
    """The settings are incomplete or contradictory."""


class SentryRequestError(SentryError):
    """A request still failed after every retry, or failed in a way retrying cannot fix."""
