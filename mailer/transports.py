"""Where messages go: SES (production), a folder of .eml files (default, demo), or SMTP."""
from __future__ import annotations

import os
import re
import smtplib
import threading
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from .errors import MailerError, TransportError


class Transport(Protocol):
    name: str

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str: ...


class FileTransport:
    """One .eml file per message: `outbox/<send>/<message id>.eml`, written atomically."""

    name = "file"

    def __init__(self, outbox: Path):
        self.outbox = outbox

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        message_id = f"file-{uuid.uuid4().hex}"
        folder = self.outbox / re.sub(r"[^A-Za-z0-9_.-]+", "-", tags.get("send", "proofs"))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{message_id}.tmp"
            tmp.write_bytes(raw)
            os.replace(tmp, folder / f"{message_id}.eml")
        except OSError as exc:
            raise TransportError(f"cannot write to the outbox {folder}: {exc.strerror}", fatal=True) from None
        return message_id


class SmtpTransport:
    """A local relay (smtp://host:port); one connection per sending thread."""

    name = "smtp"

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "localhost", parts.port or 25
        self._local = threading.local()

    def _connection(self) -> smtplib.SMTP:
        if getattr(self._local, "smtp", None) is None:
            self._local.smtp = smtplib.SMTP(self.host, self.port, timeout=30)
        return self._local.smtp  # type: ignore[no-any-return]

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        from email.parser import BytesHeaderParser
        sender = BytesHeaderParser().parsebytes(raw)["From"] or ""
        try:
            connection = self._connection()
        except OSError as exc:  # no relay there at all: stop (resumably) rather than retry for minutes
            raise TransportError(f"cannot reach the SMTP relay {self.host}:{self.port}: {exc}", fatal=True) from None
        try:
            connection.sendmail(sender, [to], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0] if exc.recipients else 550
            raise TransportError(f"SMTP refused {to}: {exc.recipients}", retryable=400 <= code < 500) from None
        except smtplib.SMTPResponseException as exc:  # an answer: 4xx is "not now", 5xx "never"
            raise TransportError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                                 retryable=400 <= exc.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            # The connection broke mid-conversation: the relay may have taken the message.
            self._local.smtp = None
            raise TransportError(f"SMTP {self.host}:{self.port}: {exc}; the message may have been accepted",
                                 ambiguous=True) from None
        return f"smtp-{uuid.uuid4().hex}"


def make_transport(kind: str, *, outbox: str = "outbox/", smtp_url: str = "smtp://localhost:25",
                   configuration_set: str | None = None) -> Transport:
    if kind == "file":
        return FileTransport(Path(outbox))
    if kind == "smtp":
        return SmtpTransport(smtp_url)
    if kind == "ses":
        from .ses import SesTransport  # boto3 only when sending through SES
        return SesTransport(configuration_set)
    raise MailerError(f"unknown transport {kind!r} (known: ses, file, smtp)")
