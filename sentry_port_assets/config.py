"""Environment variables the project reads, with the Ocean-style aliases Port users already set, and the rules
they must satisfy.

`read_settings()` reads every setting once and checks them together, before any work: a mistake is one
`ConfigError` whose message is one line naming each variable to fix. Secrets are never read into plain strings
here: `Settings` records which variable holds a secret (the resources then take a Dagster `EnvVar` reference, so
the UI shows the variable's name, never its value). This module imports nothing of Dagster, so the
`sentry-port` command starts fast.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Our name -> the Ocean names accepted for it, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "SENTRY_HOST": ("OCEAN__INTEGRATION__CONFIG__SENTRY_HOST",),
    "SENTRY_ORGANIZATION": ("OCEAN__INTEGRATION__CONFIG__SENTRY_ORGANIZATION",),
    "SENTRY_TOKEN": ("OCEAN__INTEGRATION__CONFIG__SENTRY_TOKEN",),
    "PORT_CLIENT_ID": ("OCEAN__PORT__CLIENT_ID",),
    "PORT_CLIENT_SECRET": ("OCEAN__PORT__CLIENT_SECRET",),
    "PORT_BASE_URL": ("OCEAN__PORT__BASE_URL",),
    "PORT_INITIALIZE_RESOURCES": ("OCEAN__INITIALIZE_PORT_RESOURCES",),
    "SENTRY_PORT_RESYNC_MINUTES": ("OCEAN__SCHEDULED_RESYNC_INTERVAL",),
    "PORT_INTEGRATION_IDENTIFIER": ("OCEAN__INTEGRATION__IDENTIFIER",),
}

DEFAULT_SENTRY_HOST = "https://sentry.io"
DEFAULT_PORT_BASE_URL = "https://api.getport.io"


def env_name(name: str) -> str | None:
    """The variable actually set for `name` (ours first, then its Ocean aliases), or None."""
    for candidate in (name, *ALIASES.get(name, ())):
        if os.environ.get(candidate):
            return candidate
    return None


def env_value(name: str, default: str | None = None) -> str | None:
    """The value of a non-secret setting (host, slug, paths), honouring the aliases."""
    found = env_name(name)
    return os.environ[found] if found else default


def state_dir() -> Path:
    """Where local state lives: under $DAGSTER_HOME when set, else ./.sentry_port/."""
    home = dagster_home()
    return home / "sentry_port" if home else Path(".sentry_port")


def log_level() -> str:
    """SENTRY_PORT_LOG_LEVEL: the console log level of the jobs' runs (default INFO)."""
    return (env_value("SENTRY_PORT_LOG_LEVEL") or "INFO").upper()


def local_catalog_path() -> Path:
    """PORT_LOCAL_CATALOG, else `state_dir()/catalog.sqlite`."""
    explicit = env_value("PORT_LOCAL_CATALOG")
    return Path(explicit) if explicit else state_dir() / "catalog.sqlite"


# The Dagster concurrency pool of every step that writes to Port (the resync's publish, the webhook job): with a
# limit of 1 (dagster_home/dagster.yaml, `concurrency: pools: default_limit: 1`, or `dagster instance concurrency
# set sentry_port_writes 1`) two runs never write to Port at the same time.
PORT_WRITES_POOL = "sentry_port_writes"

INBOX_ENV = "SENTRY_WEBHOOK_INBOX"
SECRET_ENV = "SENTRY_WEBHOOK_SECRET"


def inbox_location() -> str:
    """SENTRY_WEBHOOK_INBOX (a file path, or a postgresql:// URL), else `state_dir()/webhook_inbox.sqlite`."""
    configured = env_value(INBOX_ENV)
    return configured if configured else str(state_dir() / "webhook_inbox.sqlite")


INSTALLATIONS_ENV = "SENTRY_WEBHOOK_INSTALLATIONS"


def webhooks_configured(inbox: str | None = None) -> bool:
    """Whether this process is set up for webhooks: an inbox named (the instance's, or SENTRY_WEBHOOK_INBOX) or a
    receiver's secret set. Without any, the webhook sensor starts stopped: it would only find no inbox, every 10 s."""
    return bool(inbox) or any(os.environ.get(name, "").strip() for name in (INBOX_ENV, SECRET_ENV, INSTALLATIONS_ENV))
WORKER_ENV = "SENTRY_WEBHOOK_WORKER"


def webhook_worker_enabled() -> bool:
    """SENTRY_WEBHOOK_WORKER: `true` keeps one long-lived run applying webhook events within seconds
    (webhooks/worker.py) instead of a run per batch; default false."""
    return (os.environ.get(WORKER_ENV) or "false").strip().lower() in ("1", "true", "yes", "on")


_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def webhook_secrets() -> str | dict[str, str]:
    """The receiver's secrets: SENTRY_WEBHOOK_SECRET (one secret, any installation), or, for one receiver serving
    several Sentry installations, SENTRY_WEBHOOK_INSTALLATIONS: `uuid=VARIABLE` pairs separated by commas or
    whitespace, each naming the variable that holds that installation's client secret (so the secrets stay in
    their own variables, one Kubernetes Secret key each). Returns the secret, or {installation uuid: secret}.

    Raises `ConfigError` naming what to fix: both or neither set, a malformed pair, a uuid given twice, a variable
    that is not set. The secrets' values are never part of a message."""
    pairs = os.environ.get(INSTALLATIONS_ENV, "").replace(",", " ").split()
    shared = os.environ.get(SECRET_ENV, "")
    if pairs and shared.strip():
        raise ConfigError(f"{SECRET_ENV} and {INSTALLATIONS_ENV} are both set: set {SECRET_ENV} for one Sentry "
                          f"installation, or {INSTALLATIONS_ENV} (uuid=VARIABLE pairs) for several, not both")
    if not pairs:
        if not shared.strip():
            raise ConfigError(
                f"{SECRET_ENV} is not set. Set it to the Client Secret of your Sentry internal integration "
                "(Settings → Developer Settings → the integration), or set "
                f"{INSTALLATIONS_ENV} to uuid=VARIABLE pairs for several installations; the receiver refuses to "
                "accept unsigned webhooks.")
        return shared
    secrets: dict[str, str] = {}
    problems: list[str] = []
    for number, pair in enumerate(pairs, start=1):
        uuid, equals, variable = pair.partition("=")
        if not uuid or not _VARIABLE_NAME.fullmatch(variable):
            # Never echo what follows "=": a secret pasted in place of its variable's name would be shown.
            which = f"entry {number} (installation {uuid[:64]})" if equals and uuid else f"entry {number}"
            problems.append(f"{which} is not uuid=VARIABLE_NAME (the name of the variable holding the secret, "
                            "not the secret)")
        elif uuid in secrets:
            problems.append(f"installation {uuid} is listed twice")
        elif not os.environ.get(variable, "").strip():
            problems.append(f"{variable} (the secret of installation {uuid}) is not set")
        else:
            secrets[uuid] = os.environ[variable]
    if problems:
        raise ConfigError(f"{INSTALLATIONS_ENV}: " + "; ".join(problems))
    return secrets


def dagster_home() -> Path | None:
    """DAGSTER_HOME, when set."""
    home = os.environ.get("DAGSTER_HOME")
    return Path(home) if home else None


@dataclass(frozen=True)
class MappingSourceSettings:
    """Where the mapping comes from, read for `sentry-port map`, which must not need the other settings. Holds the
    Port credentials' values: never log or store it."""

    mapping_file: str | None
    integration: str | None
    port_base_url: str | None
    port_client_id: str | None
    port_client_secret: str | None

    def __repr__(self) -> str:
        return f"MappingSourceSettings(mapping_file={self.mapping_file!r}, integration={self.integration!r})"


def mapping_source_settings() -> MappingSourceSettings:
    client_id, client_secret = env_name("PORT_CLIENT_ID"), env_name("PORT_CLIENT_SECRET")
    return MappingSourceSettings(
        mapping_file=env_value("PORT_MAPPING_FILE"), integration=env_value("PORT_INTEGRATION_IDENTIFIER"),
        port_base_url=env_value("PORT_BASE_URL"),
        port_client_id=os.environ[client_id] if client_id else None,
        port_client_secret=os.environ[client_secret] if client_secret else None)


class ConfigError(ValueError):
    """Settings that cannot work; the message is one line naming every variable to fix."""


FALSE = ("0", "false", "no", "off")
DEFAULT_RESYNC_MINUTES = 60


def url_problem(name: str, value: str) -> str | None:
    """Why `value` (the setting `name`) is not an http(s) base URL, or None when it is one.

    A URL with a user name or password (`https://user:password@host`) is refused: httpx would send it as Basic auth
    in place of the token, and the URL is shown where a password must never be (the resources' config in the UI and
    run snapshots, asset metadata, logs). The message never repeats what follows `//` when it may hold one."""
    parts = urlsplit(value)
    if "@" in parts.netloc:
        return (f"{name} holds a user name or password before its host (scheme://user:password@host), which httpx "
                "would send as Basic auth in place of the token, and which would be shown in the UI, run metadata "
                "and logs: give the URL without it. To go "
                "through a proxy that needs a password, set HTTPS_PROXY (or HTTP_PROXY) to the proxy's URL: httpx "
                f"reads it (password included) and sends it to the proxy alone, while {name} stays the service's URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = repr(value) if "@" not in value else "… (not repeated: it holds an '@', maybe a password)"
        return (f"{name}={shown} is not a URL: give the scheme and host, e.g. "
                f"{'https://sentry.example.com' if name.startswith('SENTRY') else DEFAULT_PORT_BASE_URL}")
    return None


def checked_url(name: str, value: str, error: type[Exception]) -> str:
    """`value` when `url_problem` finds nothing, else `error` naming `name`. For pydantic validators, `error` must not
    be a ValueError: pydantic would wrap it in a ValidationError that repeats the value, password and all."""
    problem = url_problem(name, value)
    if problem:
        raise error(problem + ".")
    return value


def port_credentials_problem(has_client_id: bool, has_client_secret: bool, demo_source: bool) -> str | None:
    """Port's credentials come in pairs, and the demo organization never goes to a real Port."""
    if has_client_id != has_client_secret:
        missing = "PORT_CLIENT_SECRET" if has_client_id else "PORT_CLIENT_ID"
        return (f"{missing} is not set while its partner is: set both PORT_CLIENT_ID and PORT_CLIENT_SECRET to "
                "publish to Port, or neither to use the local catalog")
    if has_client_id and demo_source:
        return ("the bundled demo organization is the Sentry source (SENTRY_TOKEN is not set) while Port credentials "
                "are: demo data must never reach a real Port. Set SENTRY_TOKEN and SENTRY_ORGANIZATION, or unset "
                "PORT_CLIENT_ID and PORT_CLIENT_SECRET to use the local catalog")
    return None


def mapping_source_problem(mapping_file: str | None, integration: str | None, has_client_id: bool,
                           has_client_secret: bool, integration_label: str = "PORT_INTEGRATION_IDENTIFIER") -> str | None:
    """The mapping comes from one place, and Port's integration config needs the Port credentials to be read."""
    if mapping_file and integration:
        return (f"both PORT_MAPPING_FILE ({mapping_file}) and {integration_label} ({integration!r}) are set: the "
                "mapping comes from one place; unset the one you do not mean")
    if integration and not (has_client_id and has_client_secret):
        missing = [n for n, has in (("PORT_CLIENT_ID", has_client_id), ("PORT_CLIENT_SECRET", has_client_secret))
                   if not has]
        return (f"{integration_label} is set ({integration!r}), so the mapping is read from Port's integration "
                f"config, which needs the Port credentials: set {' and '.join(missing)} (PORT_CLIENT_ID and "
                "PORT_CLIENT_SECRET, Port: Settings > Credentials), or unset it to use the mapping file "
                "(PORT_MAPPING_FILE)")
    return None


def resync_cron(minutes: int) -> str:
    """A cron expression firing every `minutes`; cron can only say that for divisors of an hour or a day."""
    if 0 < minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
    if minutes % 60 == 0 and 0 < minutes <= 1440 and 1440 % minutes == 0:
        hours = minutes // 60
        return "0 0 * * *" if hours == 24 else ("0 * * * *" if hours == 1 else f"0 */{hours} * * *")
    raise ConfigError(
        f"SENTRY_PORT_RESYNC_MINUTES={minutes} cannot be expressed as a cron schedule: use a divisor of 60 "
        "(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) or a whole number of hours dividing 24 (60, 120, 180, 240, 360, 480, "
        "720, 1440)"
    )


def _saas(host: str) -> bool:
    """sentry.io and its regional and per-organization hosts (us.sentry.io, acme.sentry.io): one service, whose
    organization slugs are unique across its regions."""
    return host == "sentry.io" or host.endswith(".sentry.io")


def default_port_identity(integration: str | None, organization: str | None,
                          sentry_host: str = DEFAULT_SENTRY_HOST) -> str:
    """Who an instance is in Port ($datasource) unless told: its integration, else one per Sentry host and
    organization. On sentry.io `sentry-<organization>` (the name installs have always written under, so they keep
    owning their entities); on any other host `sentry-<organization>.<host>[_<port>]`, so that a self-hosted Sentry
    beside sentry.io, or a staging beside a production Sentry, with the same slug never delete each other's
    entities. A slug never holds a dot, so the two forms cannot meet."""
    if integration:
        return integration
    if not organization:
        return "sentry-demo"  # the bundled demo organization, wherever SENTRY_HOST points
    base = f"sentry-{organization}"
    parts = urlsplit(sentry_host)
    host = (parts.hostname or "").lower()
    if not host or _saas(host):
        return base
    try:
        port = parts.port
    except ValueError:  # refused by url_problem when the settings are read
        port = None
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    where = re.sub(r"[^a-z0-9.-]+", "-", host)
    return f"{base}.{where}" + (f"_{port}" if port and port != default_port else "")


IDENTITY_ENV = "PORT_IDENTITY"
ADOPT_ENV = "PORT_ADOPT_INTEGRATION"
_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,199}")


def identity_problem(label: str, value: str, what: str = "name this instance in Port") -> str | None:
    """Why `value` cannot be an integration's name in Port: it sits between slashes in the `$datasource`
    (`sentry-port-assets/<version>/<identity>/exporter`, port/datasource.py), which decides what may be deleted."""
    if _IDENTITY.fullmatch(value):
        return None
    return (f"{label}={value[:60]!r} cannot {what}: use letters, digits, '.', '_', '@' and '-' "
            "(no '/' or spaces), starting with a letter or digit, at most 200 characters")


@dataclass(frozen=True)
class Settings:
    """Every setting, read once. Secrets appear only as the name of the variable that holds them."""

    sentry_host: str = DEFAULT_SENTRY_HOST
    sentry_organization: str | None = None
    sentry_token_var: str | None = None
    port_base_url: str = DEFAULT_PORT_BASE_URL
    port_client_id_var: str | None = None
    port_client_secret_var: str | None = None
    mapping_file: str | None = None
    integration_identifier: str | None = None
    local_catalog: str | None = None
    initialize_resources: bool = True
    owned_blueprints: tuple[str, ...] | None = None
    # PORT_BLUEPRINTS_FILE: blueprints (or additions to them) ensured with the bundled ones
    blueprints_file: str | None = None
    resync_cron: str = "0 * * * *"
    refused_entities: str = "fail"
    # Who this integration is in Port ($datasource): PORT_IDENTITY, else PORT_INTEGRATION_IDENTIFIER, else one per
    # Sentry host and organization (`default_port_identity`).
    port_identity: str = "sentry-demo"
    # PORT_ADOPT_INTEGRATION: the identifier of Port's Ocean Sentry integration this one replaces; what it wrote is
    # treated as ours (rewritten under our name, deleted when stale).
    adopt_integration: str | None = None
    # PORT_APP_URL: Port's web app, for the links in the assets' metadata (default: from PORT_BASE_URL's region).
    port_app_url: str | None = None
    # A component instance's defs.yaml (its messages name the file's attributes); None: environment variables.
    defs_yaml: str | None = None

    @property
    def demo(self) -> bool:
        """No token: the bundled demo organization is the Sentry source."""
        return self.sentry_token_var is None


@dataclass(frozen=True)
class NumberSetting:
    default: float
    minimum: float  # exclusive when 0, inclusive otherwise
    maximum: float
    whole: bool
    unit: str


# Every numeric tuning knob, read here and nowhere else (`number_setting`), checked once at load (`read_settings`).
NUMBER_SETTINGS: dict[str, NumberSetting] = {
    "SENTRY_PORT_JQ_TIMEOUT_SECONDS": NumberSetting(10, 0, 86400, False, "seconds"),
    "SENTRY_PORT_JQ_MEMORY_MB": NumberSetting(1024, 64, 1024 * 1024, True, "megabytes"),
    "SENTRY_PORT_MAPPING_WORKERS": NumberSetting(0, 1, 1024, True, "processes"),  # 0: the CPU count
    "SENTRY_PORT_FULL_REFRESH_HOURS": NumberSetting(24, 0, 24 * 365, False, "hours"),
    "SENTRY_PORT_STALE_RUN_MINUTES": NumberSetting(180, 0, 60 * 24 * 30, False, "minutes"),
    "SENTRY_WEBHOOK_MAX_SKEW_SECONDS": NumberSetting(300, 0, 86400 * 365, False, "seconds"),
    "SENTRY_WEBHOOK_HEADER_TIMEOUT_SECONDS": NumberSetting(10, 0, 3600, False, "seconds"),
    "SENTRY_WEBHOOK_BODY_TIMEOUT_SECONDS": NumberSetting(10, 0, 3600, False, "seconds"),
    "SENTRY_WEBHOOK_MAX_CONNECTIONS_PER_CLIENT": NumberSetting(20, 1, 100_000, True, "connections"),
    "SENTRY_WEBHOOK_MAX_CONNECTIONS": NumberSetting(500, 1, 100_000, True, "connections"),
    "SENTRY_WEBHOOK_WORKER_MINUTES": NumberSetting(60, 0, 60 * 11, False, "minutes"),
}


def number_problem(name: str, raw: str | None) -> str | None:
    """What is wrong with a numeric setting's value; None when it is unset or usable."""
    if raw is None or not raw.strip():
        return None
    spec = NUMBER_SETTINGS[name]
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    fits = (value > spec.minimum if spec.minimum == 0 else value >= spec.minimum) and value <= spec.maximum
    if not fits or (spec.whole and not value.is_integer()):
        kind = "a whole number of" if spec.whole else "a number of"
        low = f"above {spec.minimum:g}" if spec.minimum == 0 else f"at least {spec.minimum:g}"
        return f"{name} must be {kind} {spec.unit}, {low} and at most {spec.maximum:g}, not {raw!r}"
    return None


def number_setting(name: str) -> float:
    """A numeric setting's value, or its default (an invalid value was refused when the settings were read; here
    it raises ConfigError naming it)."""
    raw = os.environ.get(name)
    problem = number_problem(name, raw)
    if problem:
        raise ConfigError(problem)
    return float(raw) if raw and raw.strip() else NUMBER_SETTINGS[name].default


def read_settings() -> Settings:
    """Reads and checks every setting; raises ConfigError naming all that must be fixed, in one line."""
    problems: list[str] = []
    sentry_host = env_value("SENTRY_HOST") or DEFAULT_SENTRY_HOST
    port_base_url = env_value("PORT_BASE_URL") or DEFAULT_PORT_BASE_URL
    token, organization = env_name("SENTRY_TOKEN"), env_value("SENTRY_ORGANIZATION")
    client_id, client_secret = env_name("PORT_CLIENT_ID"), env_name("PORT_CLIENT_SECRET")
    mapping_file, integration = env_value("PORT_MAPPING_FILE"), env_value("PORT_INTEGRATION_IDENTIFIER")

    app_url = env_value("PORT_APP_URL")
    problems += filter(None, [url_problem(_label("SENTRY_HOST"), sentry_host),
                              url_problem(_label("PORT_BASE_URL"), port_base_url),
                              url_problem("PORT_APP_URL", app_url) if app_url else None])
    if token and not organization:
        problems.append(f"{token} is set but SENTRY_ORGANIZATION is not: name the organization to sync (its slug, "
                        "the `acme` of https://acme.sentry.io)")
    if organization and not token:
        problems.append(f"{_label('SENTRY_ORGANIZATION')}={organization!r} is set but SENTRY_TOKEN is not: without a "
                        "token the bundled demo organization would be read and the slug ignored. Set SENTRY_TOKEN, "
                        "or unset SENTRY_ORGANIZATION to run the demo")
    problem = port_credentials_problem(bool(client_id), bool(client_secret), demo_source=not token)
    if problem:
        problems.append(problem)
    problem = mapping_source_problem(mapping_file, integration, bool(client_id), bool(client_secret),
                                     _label("PORT_INTEGRATION_IDENTIFIER"))
    if problem:
        problems.append(problem)

    cron = resync_cron(DEFAULT_RESYNC_MINUTES)
    raw_minutes = env_value("SENTRY_PORT_RESYNC_MINUTES")
    if raw_minutes is not None:
        try:
            cron = resync_cron(int(raw_minutes.strip()))
        except ValueError as exc:  # ConfigError is a ValueError too
            problems.append(str(exc) if isinstance(exc, ConfigError) else
                            f"{_label('SENTRY_PORT_RESYNC_MINUTES')} must be a whole number of minutes, "
                            f"not {raw_minutes!r}")

    refused = (env_value("PORT_REFUSED_ENTITIES") or "fail").strip().lower()
    if refused not in ("fail", "warn"):
        problems.append(f"PORT_REFUSED_ENTITIES={refused!r} must be 'fail' (entities Port refuses fail the run) or "
                        "'warn' (they fail the publish's asset check instead)")
    problems += filter(None, (number_problem(name, os.environ.get(name)) for name in NUMBER_SETTINGS))
    identity = env_value(IDENTITY_ENV) or default_port_identity(integration, organization if token else None,
                                                                  sentry_host)
    source = IDENTITY_ENV if env_value(IDENTITY_ENV) else (
        _label("PORT_INTEGRATION_IDENTIFIER") if integration else f"{IDENTITY_ENV} (from SENTRY_ORGANIZATION)")
    problems += filter(None, [identity_problem(source, identity)])
    adopt = env_value(ADOPT_ENV)
    if adopt:
        problems += filter(None, [identity_problem(ADOPT_ENV, adopt, "name the Ocean integration to adopt")])
        if not (client_id and client_secret):
            problems.append(f"{ADOPT_ENV}={adopt!r} is set without Port credentials: an Ocean integration's entities "
                            "are in Port, not in the local catalog; set PORT_CLIENT_ID and PORT_CLIENT_SECRET")

    blueprints_file = env_value("PORT_BLUEPRINTS_FILE")
    if blueprints_file:
        try:
            load_extra_blueprints(blueprints_file)
        except ValueError as exc:
            problems.append(f"PORT_BLUEPRINTS_FILE: {exc}")
    if problems:
        raise ConfigError("; ".join(problems) + ".")
    owned = env_value("PORT_OWNED_BLUEPRINTS")
    return Settings(
        sentry_host=sentry_host,
        sentry_organization=organization,
        sentry_token_var=token,
        port_base_url=port_base_url,
        port_client_id_var=client_id,
        port_client_secret_var=client_secret,
        mapping_file=mapping_file,
        integration_identifier=integration,
        local_catalog=env_value("PORT_LOCAL_CATALOG"),
        initialize_resources=(env_value("PORT_INITIALIZE_RESOURCES") or "true").strip().lower() not in FALSE,
        owned_blueprints=tuple(b.strip() for b in owned.split(",") if b.strip()) if owned else None,
        blueprints_file=blueprints_file,
        resync_cron=cron,
        refused_entities=refused,
        port_identity=identity,
        adopt_integration=adopt or None,
        port_app_url=app_url,
    )


def _label(name: str) -> str:
    """The variable as the user set it: an Ocean alias is named as such."""
    found = env_name(name)
    return name if found in (None, name) else f"{found} (alias of {name})"


def load_extra_blueprints(path: str | None) -> list[dict[str, Any]]:
    """PORT_BLUEPRINTS_FILE: blueprints in this file's format to ensure with the bundled ones. An entry for a bundled
    blueprint adds the properties and relations it lacks (a relation to your `service` blueprint on `sentryProject`,
    say); an entry with `"ownedByPort": true` only ever extends a blueprint someone else owns. Raises ValueError
    naming what is wrong."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, list) or not all(isinstance(b, dict) and isinstance(b.get("identifier"), str)
                                             for b in data):
        raise ValueError(f"{path}: expected a JSON list of blueprints, each with an identifier (the format of "
                         "sentry_port_assets/defaults/blueprints.json)")
    return data
