"""Database URLs as they may be shown anywhere (messages, logs): without their password."""
from __future__ import annotations

import re

# scheme://user:password@host...: the password is everything up to the LAST @ before the path,
# since a password may itself hold an @ or a colon (SQLAlchemy reads it the same way).
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)(.*)@([^@/?#]*)(?=[/?#]|$)", re.S)
# libpq also takes it in the query: ?password=... (and sslpassword for a client key).
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.I)


def masked_url(url: str) -> str:
    """A database URL as it may be shown anywhere (messages, logs): the password replaced by ***.

    SQLAlchemy's own rendering when it parses; otherwise (a URL SQLAlchemy refuses) by pattern,
    so that a typo in a URL never prints the password beside it.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        parsed = make_url(url)
        # SQLAlchemy ends the password at its first @: "u:ab@cd@host" would show "cd" as the host.
        shown = parsed.render_as_string(hide_password=True) if "@" not in (parsed.host or "") else ""
    except (ArgumentError, ValueError, TypeError):
        shown = ""
    shown = shown or _PASSWORD.sub(r"\1***@\3", url)
    return _QUERY_PASSWORD.sub(r"\1***", shown)
