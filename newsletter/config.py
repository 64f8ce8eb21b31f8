"""Configuration: newsletter.toml, overridden by NEWSLETTER_* variables, overridden by flags.

Loaded once into a frozen Settings and passed down; nothing reads the
environment anywhere else. Secrets come only from the environment.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_FILE = Path("newsletter.toml")
SECRETS = frozenset({"secret"})


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///newsletter.db"
    transport: str = "file"
    outbox: str = "outbox/"
    from_address: str | None = None
    base_url: str = "http://127.0.0.1:8025"
    secret: str | None = dataclasses.field(default=None, repr=False)
    ses_configuration_set: str | None = None
    ses_max_rate: float | None = None
    sqs_queue_url: str | None = None
    sns_topic_arns: tuple[str, ...] = ()
    # Transient bounces: suppress after this many within this many days, no delivery between,
    # or after transient bounces on this many sends of a list in a row, however far apart.
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 30
    soft_bounce_sends: int = 4
    smtp_url: str = "smtp://localhost:25"
    unsubscribe_mailto: str | None = None  # adds a mailto: to List-Unsubscribe
    theme: str = "default"  # of the web pages and the sign-up confirmation email
    timezone: str = "UTC"  # of times written without an offset (`send --at`)
    session_hours: int = 12  # console sessions end after this long idle (design §13)
    # The email clients `check` holds the email to (caniemail.com names: families or family.platform).
    check_clients: tuple[str, ...] = ("gmail", "apple-mail", "outlook", "yahoo")
    # The footer every issue carries; the theme supplies these when unset.
    organisation: str | None = None
    postal_address: str | None = None
    reason: str | None = None
    # Proxies whose X-Forwarded-For / Forwarded name the client (IPs or CIDRs). Empty: the socket
    # peer is the client, so nobody can pick the address the sign-up limits count against.
    trusted_proxies: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # A frozen Settings may end up in a log or a traceback: never the database password.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "secret"}
        shown["database_url"] = masked_url(self.database_url)
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def with_overrides(self, **values: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


# Environment variable -> field. NEWSLETTER_FROM is the one irregular name.
ENV = {
    "NEWSLETTER_DATABASE_URL": "database_url",
    "NEWSLETTER_TRANSPORT": "transport",
    "NEWSLETTER_OUTBOX": "outbox",
    "NEWSLETTER_FROM": "from_address",
    "NEWSLETTER_BASE_URL": "base_url",
    "NEWSLETTER_SECRET": "secret",
    "NEWSLETTER_SES_CONFIGURATION_SET": "ses_configuration_set",
    "NEWSLETTER_SES_MAX_RATE": "ses_max_rate",
    "NEWSLETTER_SQS_QUEUE_URL": "sqs_queue_url",
    "NEWSLETTER_SNS_TOPIC_ARNS": "sns_topic_arns",
    "NEWSLETTER_SOFT_BOUNCE_LIMIT": "soft_bounce_limit",
    "NEWSLETTER_SOFT_BOUNCE_DAYS": "soft_bounce_days",
    "NEWSLETTER_SOFT_BOUNCE_SENDS": "soft_bounce_sends",
    "NEWSLETTER_SMTP_URL": "smtp_url",
    "NEWSLETTER_UNSUBSCRIBE_MAILTO": "unsubscribe_mailto",
    "NEWSLETTER_THEME": "theme",
    "NEWSLETTER_CHECK_CLIENTS": "check_clients",
    "NEWSLETTER_ORGANISATION": "organisation",
    "NEWSLETTER_POSTAL_ADDRESS": "postal_address",
    "NEWSLETTER_REASON": "reason",
    "NEWSLETTER_TRUSTED_PROXIES": "trusted_proxies",
    "NEWSLETTER_TIMEZONE": "timezone",
    "NEWSLETTER_SESSION_HOURS": "session_hours",
}
TRANSPORTS = ("ses", "file", "smtp")
COUNTS = ("soft_bounce_limit", "soft_bounce_days", "soft_bounce_sends", "session_hours")  # whole numbers, >= 1
LISTS = ("sns_topic_arns", "check_clients", "trusted_proxies")  # a TOML list or a comma-separated string

# NEWSLETTER_SECRET signs every unsubscribe and confirmation link: whoever guesses it forges them
# (a dictionary secret fell to one link in 0.03 s). 32 characters of token_urlsafe are 192 bits.
MIN_SECRET = 32
MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Values copied from documentation, samples and demos, compared in lower case.
PLACEHOLDERS = frozenset({
    "changeme", "change-me", "change_me", "secret", "mysecret", "my-secret", "password", "passw0rd",
    "demo-only-not-a-secret", "not-a-secret", "notasecret", "replace-me", "replaceme", "example", "test",
    "your-secret-here", "your-secret-key", "secret-key", "secretkey", "s3cr3t", "xxx", "todo",
    "a-long-random-string", "put-a-long-random-string-here",  # README's and the sample's words for it
})


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (if any), then the environment; report every problem at once."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    errors: list[str] = []
    file = path if path is not None else (DEFAULT_FILE if DEFAULT_FILE.is_file() else None)
    if file is not None:
        raw.update(_read_file(file, errors))
    for name, key in ENV.items():
        if environ.get(name, "") != "":
            raw[key] = environ[name]
    values = _convert(raw, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return Settings(**values)


def _read_file(file: Path, errors: list[str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        errors.append(f"{file}: configuration file not found")
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{file}: cannot read: {exc}")
        return {}
    except tomllib.TOMLDecodeError as exc:
        errors.append(f"{file}: {exc}")
        return {}
    table = data.get("newsletter", data)
    known = {f.name for f in fields(Settings)}
    out = {}
    for key, value in table.items():
        if key in SECRETS:
            errors.append(f"{file}: {key}: secrets are read only from the environment (NEWSLETTER_SECRET)")
        elif key not in known:
            errors.append(f"{file}: unknown setting {key!r} (known: {', '.join(sorted(known - SECRETS))})")
        else:
            out[key] = value
    return out


def _convert(raw: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    out = dict(raw)
    for key, value in raw.items():
        if key not in ("ses_max_rate", *LISTS, *COUNTS) and not isinstance(value, str):
            errors.append(f"{key}: must be a string, not {value!r}")
            del out[key]
    if "transport" in out and out["transport"] not in TRANSPORTS:
        errors.append(f"transport: must be one of {', '.join(TRANSPORTS)}, not {out['transport']!r}")
    if "ses_max_rate" in out:
        try:
            if isinstance(out["ses_max_rate"], bool):  # TOML true would be 1.0
                raise ValueError
            out["ses_max_rate"] = float(out["ses_max_rate"])
            if not 0 < out["ses_max_rate"] < float("inf"):  # also refuses nan
                raise ValueError
        except (TypeError, ValueError):
            errors.append(f"ses_max_rate: must be a positive number, not {raw['ses_max_rate']!r}")
    for key in COUNTS:
        if key in out:
            out[key] = _count(key, out[key], errors)
    for key in LISTS:
        if key in out:
            out[key] = _names(key, out[key], errors)
    if "trusted_proxies" in out:
        out["trusted_proxies"] = _networks(out["trusted_proxies"], errors)
    if out.get("secret"):
        problem = secret_problem(out["secret"])
        if problem:
            errors.append(problem)
    if isinstance(out.get("database_url"), str):
        problem = _database_url_problem(out["database_url"])
        if problem:
            errors.append(problem)
    if isinstance(out.get("timezone"), str):
        try:
            zoneinfo.ZoneInfo(out["timezone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            errors.append(f"timezone: {out['timezone']!r} is not a time zone (e.g. UTC, Europe/London)")
            del out["timezone"]
    base = out.get("base_url")
    if base is not None and not str(base).startswith(("http://", "https://")):
        errors.append(f"base_url: must start with http:// or https://, not {base!r}")
    return out


def _count(key: str, value: Any, errors: list[str]) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value)
        if number < 1:
            raise ValueError
    except (TypeError, ValueError):
        errors.append(f"{key}: must be a whole number of at least 1, not {value!r}")
        return 1
    return number


def _names(key: str, value: Any, errors: list[str]) -> tuple[str, ...]:
    """A TOML list of strings or a comma-separated string (the environment's form)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(a, str) for a in items):
        errors.append(f"{key}: must be a list of strings or a comma-separated string, not {value!r}")
        return ()
    return tuple(a.strip() for a in items if a.strip())


def _database_url_problem(url: str) -> str | None:
    """A URL SQLAlchemy would read otherwise than meant: an @ in the password ends it early, and the
    rest of the password becomes the host name, which connection errors then print."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        host = make_url(url).host or ""
    except (ArgumentError, ValueError, TypeError):
        return None  # opening it says why, with the password masked (subscribers.db)
    if "@" in host:
        return (f"database_url: {masked_url(url)!r} has more than one @ before the host; write an @ inside "
                "the password as %40")
    return None


def _networks(names: tuple[str, ...], errors: list[str]) -> tuple[str, ...]:
    """Each an IP address or a CIDR network (192.0.2.0/24, 2001:db8::/32), written back canonical."""
    out = []
    for name in names:
        try:
            out.append(str(ipaddress.ip_network(name, strict=False)))
        except ValueError:
            errors.append(f"trusted_proxies: {name!r} is not an IP address or network (like 10.0.0.0/8)")
    return tuple(out)


def secret_problem(secret: str | None) -> str | None:
    """Why this NEWSLETTER_SECRET must not sign links (None when it may). Never quotes the secret."""
    if not secret:
        return None  # missing: the commands that need one say so (newsletter.sending.require)
    how = f"make one with: {MAKE_SECRET}"
    if len(secret) < MIN_SECRET:
        return (f"NEWSLETTER_SECRET is too short ({len(secret)} characters; at least {MIN_SECRET}): "
                f"anyone who guesses it can forge unsubscribe and confirmation links; {how}")
    if _placeholder(secret):
        return f"NEWSLETTER_SECRET is a well-known placeholder, not a secret; {how}"
    if len(set(secret)) < 8:
        return f"NEWSLETTER_SECRET repeats too few characters ({len(set(secret))} different) to be secret; {how}"
    return None


def _placeholder(secret: str) -> bool:
    """A known placeholder, alone or repeated to pass the length (changemechangeme...)."""
    folded = secret.strip().lower()
    for word in PLACEHOLDERS:
        if not folded.replace(word, "").strip(" -_.:0123456789"):
            return True
    return False


def masked_url(url: str) -> str:
    """A database URL as it may be shown: its password replaced by ***."""
    from subscribers.urls import masked_url as mask
    return mask(url)


# Any URL with a password in a message (scheme://user:password@...): a defence at the edge,
# for a message that quotes a URL some library put together.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)[^\s/'\"]*@")
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#\s'\"]*", re.I)


def hide_passwords(text: str) -> str:
    """The text with the password of every URL in it replaced by ***."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))
