"""What `send`, `test-send` and the worker check before sending: the settings they need, an issue without
check errors, a public base URL. What they send with (transport, envelope, pace) is made in wiring.py."""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
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


# --- the base URL rule (design §4) ------------------------------------------------------------------


def base_url_problem(base_url: str) -> str | None:
    """Why the base URL cannot carry a message's links, or None.

    RFC 8058's one-click unsubscribe (List-Unsubscribe-Post), which Gmail and
    Yahoo require of bulk senders, is an HTTPS POST their servers make: the URL
    must be https and on a host they can reach, not loopback or a private network.
    """
    parts = urlsplit(base_url)
    if parts.scheme != "https":
        return "is not https"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return "names no host"
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return "is on loopback (localhost)"
    address = _ip(host)
    if address is None:
        return None  # a name: whether it resolves publicly is for DNS to say, not us
    return _ip_problem(address)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # Browsers and HTTP clients also read the old short forms (127.1, 2130706433, 0x7f.1).
        if not host or any(c not in "0123456789abcdefxABCDEFX." for c in host):
            return None
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def _ip_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    for label, found in (("an unspecified", address.is_unspecified), ("a loopback", address.is_loopback),
                         ("a link-local", address.is_link_local), ("a private", address.is_private)):
        if found:
            return f"is {label} address"
    return None if address.is_global else "is not a public address"


def base_url_advice(base_url: str, problem: str) -> str:
    """The whole message: the URL, why not, and how to set it."""
    return (f"base URL {base_url!r} {problem}: the one-click unsubscribe link (RFC 8058) must be https and "
            "reachable by Gmail and Yahoo, and every footer link carries it. Set NEWSLETTER_BASE_URL "
            "(or base_url in newsletter.toml) to the public https address of `newsletter serve`")


def checked_base_url(settings: Settings, force: bool) -> str | None:
    """Through the ses transport, refuse a base URL the world cannot use unless forced (design §4).

    Returns the message to warn with when forced; None when there is nothing to say.
    """
    problem = base_url_problem(settings.base_url)
    if problem is None or settings.transport != "ses":
        return None
    advice = base_url_advice(settings.base_url, problem)
    if not force:
        raise NewsletterError(f"{advice}; or send anyway with --force.")
    return advice
