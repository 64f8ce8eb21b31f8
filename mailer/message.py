"""One personal message per subscriber, from a template prepared once per send.

The rendered issue is split once into literal pieces and merge fields; the
literal pieces are quoted-printable encoded once. Per recipient only the
merge-field values are encoded and the pieces joined, with a QP soft line
break (`=` CRLF) at each join so no line passes 76 characters. No MJML, Jinja,
premailer or email-package work happens per recipient. How each value is
written (HTML-escaped, as it is, or percent-encoded inside a URL) was decided
when the template was compiled (components.compile_template).

Headers are written by hand, not by the email package: under policy.SMTP it
RFC 2047-encodes a long List-Unsubscribe value, which breaks one-click
unsubscribe (RFC 8058) in Gmail and Yahoo.
"""
from __future__ import annotations

import binascii
import datetime as dt
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

from components import RenderedIssue, compile_template, fill
from subscribers import SubscribersError, normalise

from .errors import MailerError

CRLF = "\r\n"
SOFT_BREAK = b"=\r\n"


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    unsubscribe_url: str = ""
    subscriber_id: int | None = None

    def values(self) -> dict[str, Any]:
        """What merge fields see: first and last name fall back to the full name."""
        first, _, rest = self.name.partition(" ")
        return {
            "email": self.email, "name": self.name,
            "first_name": self.fields.get("first_name") or first,
            "last_name": self.fields.get("last_name") or rest,
            "fields": self.fields, "unsubscribe_url": self.unsubscribe_url,
        }


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9 '!#$%&*+/=?^_`{|}~-]*")  # RFC 5322 atext and spaces: no quoting needed
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _to(recipient: Recipient) -> str:
    # A line break in a name must not become a header of its own.
    name = " ".join(recipient.name.split())
    if not name:
        return recipient.email
    if _PLAIN_NAME.fullmatch(name) and recipient.email.isascii():  # the common case, ten times cheaper
        return f"{name} <{recipient.email}>"
    # formataddr leaves control characters (NUL, BEL…) raw in an ASCII name: drop them.
    return formataddr((_CONTROL.sub("", name), recipient.email), charset="utf-8")


def _header_value(value: str) -> str:
    # Plain printable ASCII goes as it is (headers may run to 998 octets);
    # anything else is RFC 2047-encoded and folded, so a merge value with a
    # line break or other control character stays inside its one header.
    if value.isascii() and value.isprintable() and len(value) <= 900:
        return value
    return Header(value, "utf-8", maxlinelen=76).encode().replace("\n", CRLF)


def feedback_id(issue: str, list_name: str, sender_domain: str) -> str:
    """Gmail's Feedback-ID (up to four colon-separated fields, the sender's id last)."""
    clean = [re.sub(r"[^A-Za-z0-9._-]", "_", part)[:60] for part in (issue, list_name, "newsletter", sender_domain)]
    return ":".join(clean)


class _Part:
    """One MIME part's body: literal pieces QP-encoded once."""

    def __init__(self, template: str, *, html: bool):
        self.html = html
        self.segments = compile_template(template, escape=html)
        self.encoded: list[bytes | None] = [_qp(s) if isinstance(s, str) else None for s in self.segments]

    def pieces(self, values: Mapping[str, Any]) -> list[bytes]:
        """The encoded body as pieces to join: literals were encoded once, values now."""
        filled = fill(self.segments, values)
        out: list[bytes] = []
        for encoded, piece in zip(self.encoded, filled, strict=True):
            if out:
                out.append(SOFT_BREAK)
            out.append(encoded if isinstance(encoded, bytes) else _qp(piece))
        return out


@dataclass
class Envelope:
    sender: str
    list_id: str  # "<news.example.org>"
    list_unsubscribe_mailto: str | None = None
    # Gmail's feedback loop reports complaint rates per Feedback-ID value:
    # "issue:list:newsletter:sender", colon-separated, the sender's id last.
    feedback_id: str | None = None


class MessageTemplate:
    """A send's messages: prepared once, personalised per recipient in microseconds."""

    def __init__(self, rendered: RenderedIssue, envelope: Envelope, *, bulk: bool = True):
        # bulk=False: a message to one person that they asked for (a sign-up confirmation):
        # no List-* headers, which would offer to unsubscribe from a list they are not on yet.
        self.bulk = bulk
        name, address = parseaddr(envelope.sender)
        try:
            normalise(address)
        except SubscribersError:
            raise MailerError(f"the From address {envelope.sender!r} is not an address (set NEWSLETTER_FROM)") from None
        self.envelope = envelope
        self.subject = compile_template(rendered.subject, escape=False)
        self.text = _Part(rendered.text, html=False)
        self.html = _Part(rendered.html, html=True)
        self.domain = parseaddr(envelope.sender)[1].rpartition("@")[2] or "localhost"
        self.boundary = "=_nl_" + secrets.token_hex(12)  # QP output never contains "=_"
        listed = [f"List-Id: {envelope.list_id}", "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                  *([f"Feedback-ID: {_header_value(envelope.feedback_id)}"] if envelope.feedback_id else [])
                  ] if bulk else []
        self._static = CRLF.join([
            f"From: {formataddr((name, address), charset='utf-8')}",
            "MIME-Version: 1.0",
            *listed,
            f'Content-Type: multipart/alternative; boundary="{self.boundary}"',
        ])
        self._date = (0, "")
        b = self.boundary
        part = f'{CRLF}Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}'
        self._text_head = f'--{b}{CRLF}Content-Type: text/plain; charset="utf-8"{part}'.encode("ascii")
        self._html_head = f'{CRLF}--{b}{CRLF}Content-Type: text/html; charset="utf-8"{part}'.encode("ascii")
        self._end = f"{CRLF}--{b}--{CRLF}".encode("ascii")

    def _now(self) -> str:
        second = int(time.time())
        if self._date[0] != second:  # formatting a date costs more than the rest of a header block
            self._date = (second, format_datetime(dt.datetime.fromtimestamp(second, dt.UTC)))
        return self._date[1]

    def subject_for(self, recipient: Recipient) -> str:
        return "".join(fill(self.subject, recipient.values()))

    def personalise(self, recipient: Recipient) -> bytes:
        if not recipient.email.isascii():  # SES (and most relays) cannot take SMTPUTF8 addresses
            raise MailerError(f"{recipient.email!r} has non-ASCII characters: email to it cannot be sent "
                              "(SES does not support SMTPUTF8)")
        values = recipient.values()
        unsubscribe = f"<{recipient.unsubscribe_url}>"
        if self.envelope.list_unsubscribe_mailto:
            unsubscribe += f", <mailto:{self.envelope.list_unsubscribe_mailto}?subject=unsubscribe>"
        headers = CRLF.join([
            self._static,
            f"To: {_to(recipient)}",
            f"Subject: {_header_value(''.join(fill(self.subject, values)))}",
            f"Date: {self._now()}",
            f"Message-ID: <{uuid.uuid4().hex}@{self.domain}>",
            *([f"List-Unsubscribe: {unsubscribe}"] if self.bulk else []),
        ])
        # One join of bytes: the HTML part is ~100 KB, and every extra copy shows.
        return b"".join([
            (headers + CRLF + CRLF).encode("ascii"), self._text_head, *self.text.pieces(values),
            self._html_head, *self.html.pieces(values), self._end,
        ])

