"""Email addresses, normalised in exactly one place.

An address is stored as written, except that it is trimmed and its domain is
lower-cased (and IDNA-normalised) by email-validator; it is compared through
its key, the whole address lower-cased. No DNS look-ups.

email-validator costs ~40 µs an address, too slow for a million-row import,
so plain ASCII addresses take a fast path: the local part is checked against
RFC 5322's dot-atom (which is all email-validator allows there for ASCII),
and the domain is validated by email-validator once per distinct domain.
tests/test_addresses.py checks both paths agree on random addresses.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from .errors import InvalidAddress

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_FAST = re.compile(rf"^({_ATEXT}+(?:\.{_ATEXT}+)*)@([A-Za-z0-9.-]+)$")
MAX_LOCAL = 64
MAX_ADDRESS = 254


@dataclass(frozen=True)
class Address:
    email: str  # as stored and shown: local part as written, domain normalised
    key: str  # for comparison: the whole address lower-cased

    @property
    def hash(self) -> str:
        return address_hash(self.key)


def address_hash(key: str) -> str:
    """What stays in the suppression list after `forget`: SHA-256 of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def normalise(raw: str) -> Address:
    """Validate and normalise one address; raise InvalidAddress naming it and the reason."""
    found = try_normalise(raw)
    if isinstance(found, str):
        raise InvalidAddress(f"{raw.strip()!r} is not a valid email address: {found}")
    return found


def _normalise(raw: str) -> Address:
    text = raw.strip()
    if not text:
        raise InvalidAddress("the address is empty")
    match = _FAST.match(text)
    if match and len(match.group(1)) <= MAX_LOCAL and len(text) <= MAX_ADDRESS:
        domain = _domain(match.group(2))
        local = match.group(1)
        if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:  # postmaster, info… (RFC 2142), as email-validator
            local = local.lower()
        email = f"{local}@{domain}"
        if len(email) <= MAX_ADDRESS:
            return Address(email, email.lower())
    return _slow(text)


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    # Validate the domain with a neutral local part; every address of the
    # same domain shares the verdict.
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain  # type: ignore[no-any-return]
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None


def _slow(text: str) -> Address:
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    email = result.normalized
    return Address(email, email.lower())


def try_normalise(raw: str) -> Address | str:
    """The Address, or the reason it is invalid (for bulk imports: no exception per bad row)."""
    try:
        return _normalise(raw)
    except InvalidAddress as exc:
        return str(exc)
