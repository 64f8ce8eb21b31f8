"""Signed tokens for unsubscribe and opt-in links (itsdangerous).

An unsubscribe token names one subscriber on one list; it never expires (a
link in a years-old email must still work). A proof token (test-send) has the
same form but names nobody, so the link works and changes nothing.
Confirmation tokens expire: an unconfirmed sign-up is not consent forever.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass

from itsdangerous import BadData, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from .errors import SubscribersError

CONFIRM_MAX_AGE = 7 * 24 * 3600


class InvalidToken(SubscribersError):
    """A token that was not made by us, was altered, or has expired."""


@dataclass(frozen=True)
class UnsubscribeTarget:
    subscriber_id: int
    list_id: int

    @property
    def is_proof(self) -> bool:
        return self.subscriber_id == 0


PROOF = UnsubscribeTarget(0, 0)


class Tokens:
    def __init__(self, secret: str):
        if not secret:
            raise SubscribersError("a secret is needed to sign links (set NEWSLETTER_SECRET)")
        # One key per purpose, derived once: itsdangerous would derive it again
        # for every token, which is half the cost of a million-recipient send.
        self._unsubscribe = URLSafeSerializer(_key(secret, "unsubscribe"), signer_kwargs=_DERIVED)
        self._confirm = URLSafeTimedSerializer(_key(secret, "confirm"), signer_kwargs=_DERIVED)
        # dumps() builds a new Signer (and HMAC) per token; a send makes one per
        # recipient, so keep one. The tokens are the same as dumps() would make.
        self._unsubscribe_signer = self._unsubscribe.make_signer()

    def unsubscribe(self, subscriber_id: int, list_id: int) -> str:
        # What URLSafeSerializer.dumps makes, minus its zlib attempt: compressing
        # a 9-byte payload never pays and costs ~70 us, most of a message.
        payload = base64_encode(json.dumps([subscriber_id, list_id], separators=(",", ":")).encode("ascii"))
        return self._unsubscribe_signer.sign(payload).decode("ascii")

    def proof(self) -> str:
        return self.unsubscribe(PROOF.subscriber_id, PROOF.list_id)

    def read_unsubscribe(self, token: str) -> UnsubscribeTarget:
        try:
            value = self._unsubscribe.loads(token)
        except BadData:
            raise InvalidToken("this unsubscribe link is not valid") from None
        return _target(value)

    def confirm(self, subscriber_id: int, list_id: int) -> str:
        return self._confirm.dumps([subscriber_id, list_id])

    def read_confirm(self, token: str, max_age: int = CONFIRM_MAX_AGE) -> UnsubscribeTarget:
        return self.read_confirm_issued(token, max_age)[0]

    def read_confirm_issued(self, token: str, max_age: int = CONFIRM_MAX_AGE) -> tuple[UnsubscribeTarget, dt.datetime]:
        """The target and when the link was made: a link older than a later unsubscribe is stale."""
        try:
            value, issued = self._confirm.loads(token, max_age=max_age, return_timestamp=True)
        except SignatureExpired:
            raise InvalidToken("this confirmation link has expired; please sign up again") from None
        except BadData:
            raise InvalidToken("this confirmation link is not valid") from None
        return _target(value), issued


_DERIVED = {"key_derivation": "none"}


def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), f"newsletter.{purpose}".encode(), hashlib.sha256).digest()


def _target(value: object) -> UnsubscribeTarget:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise InvalidToken("this link is not valid")
    return UnsubscribeTarget(value[0], value[1])
