"""What `send` and `test-send` need from the configuration: an envelope, a transport, a rate."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components import RenderedIssue, check_issue, load_issue

from .build import render_configured
from .config import Settings
from .errors import NewsletterError


def require(settings: Settings, *names: str, purpose: str = "send") -> None:
    missing = [n for n in names if not getattr(settings, n)]
    if missing:
        variables = {"from_address": "NEWSLETTER_FROM", "secret": "NEWSLETTER_SECRET"}
        raise NewsletterError(f"to {purpose}, set " + " and ".join(variables.get(n, n) for n in missing))


def checked_render(issue_path: Path, settings: Settings, force: bool) -> RenderedIssue:
    """Render the issue; refuse one with check errors unless forced (design §4)."""
    issue = load_issue(issue_path)
    rendered = render_configured(issue, settings)
    errors = [f for f in check_issue(issue, rendered, settings.check_clients) if f.level == "error"]
    if errors and not force:
        listed = "\n".join(f"  {f}" for f in errors)
        raise NewsletterError(f"{issue_path} has check errors; fix them or send with --force:\n{listed}")
    return rendered


def envelope(settings: Settings, list_name: str) -> Any:
    from mailer import Envelope
    domain = (settings.from_address or "").rpartition("@")[2].strip("> ") or urlsplit(settings.base_url).hostname
    return Envelope(settings.from_address or "", f"<{list_name}.{domain}>", settings.unsubscribe_mailto)


def transport(settings: Settings) -> Any:
    from mailer import make_transport
    return make_transport(settings.transport, outbox=settings.outbox, smtp_url=settings.smtp_url,
                          configuration_set=settings.ses_configuration_set)


def pace(settings: Settings, chosen: float | None, sender: Any) -> tuple[float, float | None]:
    """Messages per second and what is left of the 24-hour quota (None: no limit known)."""
    if sender.name != "ses":
        return (chosen or settings.ses_max_rate or 50.0, None)
    quota = sender.quota()
    return (chosen or settings.ses_max_rate or quota.max_rate, quota.remaining)
