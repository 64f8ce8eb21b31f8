"""Email addresses, normalised in exactly one place.

An address is stored as written, except that it is trimmed and its domain is
IDNA-normalised by email-validator and kept in its ASCII (punycode) form; it
is compared through its key, the whole address lower-cased. No DNS look-ups.

SES does not support SMTPUTF8 (design §9): a local part with non-ASCII
characters cannot be sent to at all, so it is refused here, where every
address enters; a domain must go out as punycode, so that is what is stored
(`bücher.de` and `xn--bcher-kva.de` are one address). `display_address`
turns it back into Unicode where people read it.

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
ACE = "xn--"  # the prefix of a punycode (A-label) domain label, RFC 5890


@dataclass(frozen=True)
class Address:
    email: str  # as stored and sent: local part as written, domain normalised, in ASCII
    key: str  # for comparison: the whole address lower-cased

    @property
    def hash(self) -> str:
        return address_hash(self.key)


class _Unsendable(InvalidAddress):
    """A valid address SES cannot send to (its reason says why)."""


def address_hash(key: str) -> str:
    """What stays in the suppression list after `forget`: SHA-256 of the key, read with a Unicode domain.

    Hashed in the form people read (domain in Unicode), which is what the key was
    before IDN domains were stored as punycode: hashes stored then (a forgotten
    person's suppression, whose address is gone; SES events; sign-up attempts)
    still match, and no table needs them recomputed.
    """
    if ACE in key:
        key = display_address(key).lower()
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_address(email: str) -> str:
    """The address as people read it: a punycode domain in Unicode (`x@xn--bcher-kva.de` -> `x@bücher.de`).

    Only for showing: store, compare and send the ASCII form.
    """
    local, at, domain = email.rpartition("@")
    if not at or ACE not in domain.lower():
        return email
    return f"{local}@{_unicode_domain(domain)}"


@lru_cache(maxsize=4096)
def _unicode_domain(domain: str) -> str:
    labels = []
    for label in domain.split("."):
        if label.lower().startswith(ACE):
            try:
                label = label[len(ACE):].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                pass  # not valid punycode: show it as it is
        labels.append(label)
    return ".".join(labels)


def normalise(raw: str, *, held: bool = False) -> Address:
    """Validate and normalise one address; raise InvalidAddress naming it and the reason.

    `held=True` is for finding someone already stored (show, unsubscribe, forget):
    an address with a non-ASCII local part, stored before such addresses were
    refused, is then found under the key it was stored with, not refused.
    """
    text = raw.strip()
    try:
        return _normalise(text)
    except _Unsendable as exc:
        if held:
            return _as_stored_before(text)
        raise InvalidAddress(f"{text!r} cannot be used: {exc}") from None
    except InvalidAddress as exc:
        raise InvalidAddress(f"{text!r} is not a valid email address: {exc}") from None


def try_normalise(raw: str) -> Address | str:
    """The Address, or the reason it is invalid (for bulk imports: no exception per bad row)."""
    try:
        return _normalise(raw.strip())
    except InvalidAddress as exc:
        return str(exc)


def _normalise(text: str) -> Address:
    if not text:
        raise InvalidAddress("the address is empty.")
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
        return validate_email(f"a@{domain}", check_deliverability=False).ascii_domain  # type: ignore[no-any-return]
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None


def _slow(text: str) -> Address:
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    if result.ascii_email is None:  # the local part needs SMTPUTF8
        raise _Unsendable(_non_ascii_reason(result.local_part))
    email = result.ascii_email
    return Address(email, email.lower())


def _as_stored_before(text: str) -> Address:
    # What 0003's code stored: email-validator's normalised form, domain in Unicode.
    email = validate_email(text, check_deliverability=False).normalized
    return Address(email, email.lower())


def _non_ascii_reason(local: str) -> str:
    shown = "".join(dict.fromkeys(c for c in local if not c.isascii()))
    return (f"it has non-ASCII characters before the @ ({shown}); email to it cannot be sent "
            "(Amazon SES does not support SMTPUTF8).")
