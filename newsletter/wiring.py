"""The one place that makes domain objects from Settings: the edge reads configuration, the
libraries take what is made here (design §11.4). The CLI, the worker and the web app all come here,
so a setting means the same thing to each of them.

The libraries are imported inside each function: `newsletter --help` must not pay for them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import Settings

if TYPE_CHECKING:
    from components import Footer
    from mailer import Delivery, Envelope, Policy, SnsVerifier
    from mailer.transports import Transport
    from subscribers import Database, Tokens


def database(settings: Settings, *, migrate: bool = True) -> Database:
    """The database with the mailer's tables beside the audience's, migrated unless told not to (design §8)."""
    import mailer
    from subscribers import open_database
    return open_database(settings.database_url, migrate=migrate, extra_migrations=(mailer.MIGRATIONS,))


def transport(settings: Settings) -> Transport:
    from mailer import make_transport
    return make_transport(settings.transport, outbox=settings.outbox, smtp_url=settings.smtp_url,
                          configuration_set=settings.ses_configuration_set)


def envelope(settings: Settings, list_name: str) -> Envelope:
    """Who a list's messages come from; the List-Id names the list under the sender's domain."""
    from mailer import Envelope
    domain = (settings.from_address or "").rpartition("@")[2].strip("> ") or urlsplit(settings.base_url).hostname
    return Envelope(settings.from_address or "", f"<{list_name}.{domain}>", settings.unsubscribe_mailto)


def tokens(settings: Settings) -> Tokens:
    """Signs and checks the unsubscribe and opt-in links; the commands that make links require the secret."""
    from subscribers import Tokens
    return Tokens(settings.secret or "")


def policy(settings: Settings) -> Policy:
    """When soft bounces suppress an address (hard bounces and complaints always do)."""
    from mailer import Policy
    return Policy(soft_limit=settings.soft_bounce_limit, soft_days=settings.soft_bounce_days,
                  soft_sends=settings.soft_bounce_sends)


def footer(settings: Settings, theme_name: str) -> Footer:
    """The theme's footer, with whatever the configuration overrides."""
    from components import Footer, load_theme
    theme = load_theme(theme_name)
    return Footer(
        organisation=settings.organisation or theme.organisation,
        postal_address=settings.postal_address or theme.postal_address,
        reason=settings.reason or theme.reason,
    )


def verifier(settings: Settings, fetch: Callable[[str], bytes] | None) -> SnsVerifier:
    """Checks SNS messages for the configured topics; `fetch` gets signing certificates (tests inject one)."""
    from mailer import SnsVerifier
    return SnsVerifier(settings.sns_topic_arns, fetch)


def pace(settings: Settings, chosen: float | None, sender: Any) -> tuple[float, float | None]:
    """Messages per second and what is left of the 24-hour quota (None: no limit known)."""
    if sender.name != "ses":
        return (chosen or settings.ses_max_rate or 50.0, None)
    quota = sender.quota()
    return (chosen or settings.ses_max_rate or quota.max_rate, quota.remaining)


def delivery(settings: Settings, list_name: str, *, rate: float | None = None, workers: int = 4,
             retry_unknown: bool = False, force: bool = False) -> Delivery:
    """How a send to `list_name` goes out, as configured: `send` and the worker alike."""
    from mailer import Delivery
    sender = transport(settings)
    per_second, quota_left = pace(settings, rate, sender)
    return Delivery(sender, envelope(settings, list_name), tokens(settings), settings.base_url,
                    per_second, workers, quota_left, retry_unknown, force)
