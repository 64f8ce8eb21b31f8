"""SNS over HTTPS (`POST /webhooks/ses`): verify, then feed the same `take()` as the SQS poller.

The web service maps SnsRefused to 403 and everything else to 200: a
notification that verifies but does not hold an SES event we can apply (not
JSON, a field of the wrong type, a value the database refuses) is recorded in
inbound_errors and acknowledged, because SNS would otherwise retry it for an
hour. Nothing about the payload raises past here; only a busy or unreachable
database does (subscribers.DatabaseError: 503, so SNS retries).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from subscribers import Database

from .events import parse_message
from .policy import Applied, Policy, take
from .sns import NOTIFICATION, SUBSCRIPTION, SnsVerifier


@dataclass(frozen=True)
class WebhookOutcome:
    kind: str  # "notification", "subscription-confirmed", "ignored"
    applied: Applied | None = None


def handle_sns(db: Database, verifier: SnsVerifier, body: bytes | str, message_type: str | None,
               policy: Policy) -> WebhookOutcome:
    """Verify one SNS POST and act on it; raises SnsRefused (nothing changed) when it does not verify."""
    message = verifier.verify(body, message_type)
    if message.type == SUBSCRIPTION:
        verifier.confirm_subscription(message)
        return WebhookOutcome("subscription-confirmed")
    if message.type != NOTIFICATION:  # UnsubscribeConfirmation: following it would re-subscribe
        return WebhookOutcome("ignored")
    # The envelope is verified and parsed already: only its Message is left to read. Its
    # Timestamp dates an SES payload that carries no time of its own.
    parse = functools.partial(parse_message, sns_message_id=message.message_id, sns_timestamp=message.timestamp)
    return WebhookOutcome("notification", take(db, [message.message], policy, "webhook", parse=parse))
