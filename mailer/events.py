"""SES notifications -> one normalised Event per recipient.

SES speaks two dialects through SNS: identity notifications (`notificationType`:
Bounce, Complaint, Delivery) and event publishing through a configuration set
(`eventType`: Send, Reject, Bounce, Complaint, Delivery, DeliveryDelay, Open,
Click, Rendering Failure, Subscription). Both carry the same `mail` object; the
per-kind object is named after the kind in lower camel case. One notification
can name several recipients, so parsing yields one event per recipient.

An SQS message body is either the SNS envelope (`Type: Notification`, the SES
JSON as the `Message` string) or, with raw message delivery, the SES JSON itself.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from .errors import MailerError

# The SES type name -> our kind, and the key of the object holding its details.
KINDS = {
    "Bounce": ("bounce", "bounce"), "Complaint": ("complaint", "complaint"),
    "Delivery": ("delivery", "delivery"), "Send": ("send", "send"), "Reject": ("reject", "reject"),
    "DeliveryDelay": ("delivery_delay", "deliveryDelay"), "Open": ("open", "open"),
    "Click": ("click", "click"), "Rendering Failure": ("rendering_failure", "failure"),
    "RenderingFailure": ("rendering_failure", "failure"), "Subscription": ("subscription", "subscription"),
}
# SES's own notices that a topic is wired up: nothing to apply, nothing wrong.
NOTICES = {"AmazonSnsSubscriptionSucceeded"}
# Bounce subtypes that mean "this address will never accept mail from you": SES
# itself refused to send because the address is on a suppression list.
PERMANENT_SUBTYPES = {"Suppressed", "OnAccountSuppressionList"}


class MalformedEvent(MailerError):
    """A message that is not an SES notification we can read."""


@dataclass(frozen=True)
class Event:
    kind: str  # bounce, complaint, delivery, send, reject, delivery_delay, open, click, … (unsubscribe: ours)
    email: str | None  # the recipient as SES reported it
    message_id: str | None  # None only for our own events (an unsubscribe through a link)
    occurred_at: dt.datetime
    key: str  # the same notification applied twice has the same key
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, list[str]] = field(default_factory=dict)
    sns_message_id: str | None = None
    raw: str | None = None  # the SES payload as received

    @property
    def hard(self) -> bool | None:
        """For bounces: True when the address must be suppressed at once."""
        if self.kind != "bounce":
            return None
        return self.bounce_type == "Permanent" or self.bounce_subtype in PERMANENT_SUBTYPES


def parse_body(body: str | bytes) -> list[Event]:
    """An SQS message body or a verified SNS Message: the events it carries (maybe none)."""
    outer = _json(body, "the message")
    if "Type" in outer and "notificationType" not in outer and "eventType" not in outer:
        if outer.get("Type") != "Notification":
            raise MalformedEvent(f"an SNS {outer.get('Type')!r} message, not a Notification")
        sns_id = _text(outer, "MessageId", "the SNS message")
        return parse_message(_text(outer, "Message", "the SNS message"), sns_message_id=sns_id)
    return parse_ses(outer, raw=body.decode("utf-8") if isinstance(body, bytes) else body)


def parse_message(message: str, *, sns_message_id: str) -> list[Event]:
    """The `Message` of an SNS notification (already unwrapped, e.g. verified by the webhook)."""
    return parse_ses(_json(message, "the SNS Message"), sns_message_id=sns_message_id, raw=message)


def parse_ses(payload: Mapping[str, Any], *, sns_message_id: str | None = None, raw: str | None = None) -> list[Event]:
    """One SES payload (either dialect): one event per recipient. `raw`: the text it was parsed from."""
    type_name = payload.get("eventType", payload.get("notificationType"))
    if type_name in NOTICES:
        return []
    if type_name not in KINDS:
        raise MalformedEvent(f"not an SES notification: unknown type {type_name!r}")
    kind, detail_key = KINDS[type_name]
    mail = payload.get("mail")
    if not isinstance(mail, Mapping) or not isinstance(mail.get("messageId"), str):
        raise MalformedEvent(f"SES {type_name}: no mail.messageId")
    detail = payload.get(detail_key) or {}
    if not isinstance(detail, Mapping):
        raise MalformedEvent(f"SES {type_name}: {detail_key} is not an object")
    raw = raw if raw is not None else json.dumps(payload, separators=(",", ":"), sort_keys=True)
    when = _timestamp(detail.get("timestamp") or mail.get("timestamp"), type_name)
    tags = _tags(mail.get("tags"))
    events = []
    for recipient, extra in _recipients(kind, detail, mail):
        details = {**_details(kind, detail), **extra}
        events.append(Event(
            kind=kind, email=recipient, message_id=mail["messageId"], occurred_at=when,
            key=_key(kind, mail["messageId"], detail, when, recipient, details),
            bounce_type=detail.get("bounceType") if kind == "bounce" else None,
            bounce_subtype=detail.get("bounceSubType") if kind == "bounce" else None,
            detail=details, tags=tags, sns_message_id=sns_message_id, raw=raw))
    return events


def _json(body: str | bytes | Any, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedEvent(f"{what} is not JSON: {exc}") from None
    if "\\u0000" in (body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)).lower():
        # No SES payload holds a NUL, and PostgreSQL text cannot store one.
        raise MalformedEvent(f"{what} contains a NUL character")
    if not isinstance(value, dict):
        raise MalformedEvent(f"{what} is JSON but not an object")
    return value


def _text(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"{what} has no {key}")
    return value


def _timestamp(value: Any, type_name: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise MalformedEvent(f"SES {type_name}: timestamp {value!r} is not ISO 8601") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _tags(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): [str(x) for x in v] for k, v in value.items() if isinstance(v, list)}


def _address(value: Any) -> str | None:
    # Bounce recipients may come as "Name <address>"; most are bare (parseaddr is the slow part).
    if not isinstance(value, str):
        return None
    if "<" not in value and '"' not in value and " " not in value.strip():
        return value.strip() or None
    return parseaddr(value)[1] or None


def _recipients(kind: str, detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[tuple[str | None, dict]]:
    """Who the event is about, each with its own details (a bounce's DSN status is per recipient)."""
    if kind == "bounce":
        people = detail.get("bouncedRecipients")
        return [(_address(p.get("emailAddress")), _bounced(p)) for p in _objects(people, "bouncedRecipients")]
    if kind == "complaint":
        people = detail.get("complainedRecipients")
        return [(_address(p.get("emailAddress")), {}) for p in _objects(people, "complainedRecipients")]
    if kind == "delivery_delay":
        people = detail.get("delayedRecipients")
        return [(_address(p.get("emailAddress")), _bounced(p)) for p in _objects(people, "delayedRecipients")]
    listed = detail.get("recipients") if kind == "delivery" else None
    addresses = listed if isinstance(listed, list) else mail.get("destination")
    if not isinstance(addresses, list) or not addresses:
        raise MalformedEvent(f"SES {kind}: names no recipient")
    return [(_address(a), {}) for a in addresses]


def _objects(value: Any, name: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not value or not all(isinstance(p, Mapping) for p in value):
        raise MalformedEvent(f"SES event: {name} is missing or not a list of objects")
    return value


def _bounced(person: Mapping[str, Any]) -> dict[str, Any]:
    keep = {"status": person.get("status"), "action": person.get("action"),
            "diagnostic": person.get("diagnosticCode")}
    return {k: v for k, v in keep.items() if v is not None}


def _details(kind: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    """The facts worth keeping per kind (the raw payload is kept too)."""
    wanted = {
        "bounce": ("feedbackId", "reportingMTA", "remoteMtaIp"),
        "complaint": ("feedbackId", "complaintFeedbackType", "complaintSubType", "userAgent", "arrivalDate"),
        "delivery": ("smtpResponse", "reportingMTA", "processingTimeMillis", "remoteMtaIp"),
        "reject": ("reason",),
        "delivery_delay": ("delayType", "expirationTime", "reportingMTA"),
        "open": ("ipAddress", "userAgent"),
        "click": ("ipAddress", "userAgent", "link", "linkTags"),
        "rendering_failure": ("errorMessage", "templateName"),
        "subscription": ("contactList", "source", "newTopicPreferences", "oldTopicPreferences"),
    }.get(kind, ())
    return {k: detail[k] for k in wanted if k in detail}


def _key(kind: str, message_id: str, detail: Mapping[str, Any], when: dt.datetime, recipient: str | None,
         details: Mapping[str, Any]) -> str:
    # SES gives bounces and complaints a feedbackId; the rest are identified by
    # message, time and (for clicks) link. The same event published twice,
    # through an identity notification and a configuration set, shares these.
    ident = detail.get("feedbackId") or f"{message_id}@{when.isoformat()}"
    if kind == "click":
        ident += f"#{details.get('link', '')}"
    # The recipient goes in hashed: `forget` must leave the address in no column.
    who = hashlib.sha256((recipient or "").lower().encode("utf-8")).hexdigest()[:32]
    return f"{kind}:{ident[:400]}:{who}"
