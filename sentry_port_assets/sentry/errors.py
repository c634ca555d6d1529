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
    # OrganizationReleasePermission: project:read, or project:releases alone (what release-only tokens carry)
    "/organizations/{org}/releases/": "project:read",
    "/organizations/{org}/releases/{version}/": "project:read",
    "/organizations/{org}/releases/{version}/deploys/": "project:read",
    "/organizations/{org}/stats_v2/": "org:read",
    "/organizations/{org}/sessions/": "org:read",
    "/projects/{org}/{project}/ownership/": "project:read",
    "/organizations/{org}/repos/": "org:read",
    "/organizations/{org}/code-mappings/": "org:read",
    # OrganizationAlertRulePermission and its kin take org:read or alerts:read; ProjectAlertRulePermission
    # project:read or alerts:read
    "/organizations/{org}/monitors/": "org:read",
    "/organizations/{org}/workflows/": "org:read",
    "/organizations/{org}/detectors/": "org:read",
    "/organizations/{org}/alert-rules/": "org:read",
    "/projects/{org}/{project}/rules/": "project:read",
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


# The internal integration permission that grants each read scope (Settings → Developer Settings).
PERMISSIONS = {"org:read": "Organization", "member:read": "Member", "team:read": "Team", "project:read": "Project",
               "event:read": "Issue & Event"}
WORKING_TOKENS = ("a personal token (User settings → Personal Tokens) with org:read, member:read, team:read, "
                  "project:read and event:read, or an internal integration's token with Organization, Member, Team, "
                  "Project and Issue & Event: Read")


def token_kind(token: str) -> str:
    """What kind of Sentry token this is, from its prefix (sntrys_: organization auth token, sntryu_: personal)."""
    if token.startswith("sntrys_"):
        return "organization"
    if token.startswith("sntryu_"):
        return "personal"
    return "unknown"


class SentryPermissionError(SentryError):
    def __init__(self, endpoint: str, kind: str = "unknown") -> None:
        scope = SCOPES.get(endpoint, "the matching read scope")
        self.endpoint = endpoint
        self.scope = scope
        refused = f"Sentry refused GET {endpoint} (403): it needs the scope {scope}"
        if kind == "organization":
            message = (f"{refused}, and SENTRY_TOKEN is an organization auth token (Settings → Auth Tokens), which "
                       f"only ever carries org:ci, so Sentry refuses every call this sync makes. Use {WORKING_TOKENS}.")
        elif kind == "personal":
            message = f"{refused}, which the personal token in SENTRY_TOKEN lacks. Add {scope} to it, or use {WORKING_TOKENS}."
        else:
            message = (f"{refused}, which the token in SENTRY_TOKEN lacks: for an internal integration, give it "
                       f"{PERMISSIONS.get(scope, 'the matching')}: Read; for a personal token, add {scope}. Tokens that "
                       f"work: {WORKING_TOKENS}.")
        super().__init__(message)


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


class SentryPagingError(SentryError):
    """A list whose pages never end: a cursor sent twice, or far more pages than the list can hold."""

    def __init__(self, endpoint: str, why: str) -> None:
        self.endpoint = endpoint
        super().__init__(
            f"GET {endpoint} did not end: {why}. The run fails rather than page for ever (nothing is deleted on a "
            "list that may be incomplete). A proxy in front of Sentry (SENTRY_HOST) that drops the `cursor` query "
            "parameter does this; otherwise it is Sentry's answer, retry later."
        )


class SentryMultiProjectError(SentryRequestError):
    """Sentry refused an organization issue list that would cover several projects: the organization lacks the
    `organizations:global-views` feature (OrganizationGroupIndexEndpoint.get, getsentry/sentry
    src/sentry/issues/endpoints/organization_group_index.py). A list of one project at a time works."""

    DETAIL = "You do not have the multi project stream feature enabled"

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"GET {endpoint} answered HTTP 400: {self.DETAIL} (the organization lacks Sentry's "
                         "global-views feature; ask for one project at a time)")
