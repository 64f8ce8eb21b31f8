"""SES notifications -> one normalised Event per recipient.

SES speaks two dialects through SNS: identity notifications (`notificationType`:
Bounce, Complaint, Delivery) and event publishing through a configuration set
(`eventType`: Send, Reject, Bounce, Complaint, Delivery, DeliveryDelay, Open,
Click, Rendering Failure, Subscription). Both carry the same `mail` object; the
per-kind object is named after the kind in lower camel case. One notification
can name several recipients, so parsing yields one event per recipient.

An SQS message body is either the SNS envelope (`Type: Notification`, the SES
JSON as the `Message` string) or, with raw message delivery, the SES JSON itself.

Parsing reads only what it can vouch for: every field it uses must have the type
SES gives it (a number where SES writes text, a list where it writes an object, a
time outside any year SES could write, a string that is not Unicode) or the whole
message is a MalformedEvent naming the field, so nothing downstream meets it.
What an event *does* (hard or soft, suppress or not) is decided in policy.py.
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
# The plain-text (not JSON) Message SES publishes once to a topic added as an event
# destination: "Successfully validated SNS topic for Amazon SES event publishing."
VALIDATED_NOTICE = "Successfully validated SNS topic for Amazon SES"

# The details kept per kind (the raw payload is kept too), with the JSON type SES gives
# each; `timestamp` is read on its own. None: SES writes null for some (complaintSubType).
TEXT, NUMBER, OBJECT = (str,), (int,), (dict,)
DETAILS: dict[str, dict[str, tuple[type, ...]]] = {
    "bounce": {"bounceType": TEXT, "bounceSubType": TEXT, "feedbackId": TEXT, "reportingMTA": TEXT,
               "remoteMtaIp": TEXT},
    "complaint": {"feedbackId": TEXT, "complaintFeedbackType": TEXT, "complaintSubType": TEXT, "userAgent": TEXT,
                  "arrivalDate": TEXT},
    "delivery": {"smtpResponse": TEXT, "reportingMTA": TEXT, "processingTimeMillis": NUMBER, "remoteMtaIp": TEXT},
    "reject": {"reason": TEXT},
    "delivery_delay": {"delayType": TEXT, "expirationTime": TEXT, "reportingMTA": TEXT},
    "open": {"ipAddress": TEXT, "userAgent": TEXT},
    "click": {"ipAddress": TEXT, "userAgent": TEXT, "link": TEXT, "linkTags": OBJECT},
    "rendering_failure": {"errorMessage": TEXT, "templateName": TEXT},
    "subscription": {"contactList": TEXT, "source": TEXT, "newTopicPreferences": OBJECT,
                     "oldTopicPreferences": OBJECT},
}
# Per recipient (a DSN is per recipient): our name -> SES's.
RECIPIENT_DETAILS = {"status": "status", "action": "action", "diagnostic": "diagnosticCode"}
# Years an SES event can carry: SES started in 2011. Anything else is corrupt, and a
# year near 9999 would overflow the arithmetic of the soft-bounce window.
YEARS = range(2000, 2100)


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


def parse_body(body: str | bytes) -> list[Event]:
    """An SQS message body or a verified SNS Message: the events it carries (maybe none)."""
    outer = _json(body, "the message")
    if "Type" in outer and "notificationType" not in outer and "eventType" not in outer:
        if outer.get("Type") != "Notification":
            raise MalformedEvent(f"an SNS {_show(outer.get('Type'))} message, not a Notification")
        sns_id = _text(outer, "MessageId", "the SNS message")
        return parse_message(_text(outer, "Message", "the SNS message"), sns_message_id=sns_id,
                             sns_timestamp=_envelope_time(outer.get("Timestamp")))
    return parse_ses(outer, raw=body.decode("utf-8") if isinstance(body, bytes) else body)


def parse_message(message: str, *, sns_message_id: str, sns_timestamp: dt.datetime | None = None) -> list[Event]:
    """The `Message` of an SNS notification (already unwrapped, e.g. verified by the webhook).

    `sns_timestamp`: when SNS published it, the date of an SES payload that carries none.
    """
    if message.lstrip().startswith(VALIDATED_NOTICE):
        return []
    return parse_ses(_json(message, "the SNS Message"), sns_message_id=sns_message_id, raw=message,
                     sns_timestamp=sns_timestamp)


def parse_ses(payload: Mapping[str, Any], *, sns_message_id: str | None = None, raw: str | None = None,
              sns_timestamp: dt.datetime | None = None) -> list[Event]:
    """One SES payload (either dialect): one event per recipient. `raw`: the text it was parsed from."""
    type_name = payload.get("eventType", payload.get("notificationType"))
    if isinstance(type_name, str) and type_name in NOTICES:
        return []
    if not isinstance(type_name, str) or type_name not in KINDS:
        raise MalformedEvent(f"not an SES notification: unknown type {_show(type_name)}")
    kind, detail_key = KINDS[type_name]
    mail = payload.get("mail")
    if not isinstance(mail, Mapping) or not isinstance(mail.get("messageId"), str):
        raise MalformedEvent(f"SES {type_name}: no mail.messageId (text)")
    detail = payload.get(detail_key) or {}
    if not isinstance(detail, Mapping):
        raise MalformedEvent(f"SES {type_name}: {detail_key} is not an object")
    where = f"SES {type_name}"
    details = _details(kind, detail, f"{where}: {detail_key}")
    when = _when(detail, mail, sns_timestamp, where, detail_key)
    tags = _tags(mail.get("tags"), where)
    raw = raw if raw is not None else json.dumps(payload, separators=(",", ":"), sort_keys=True)
    message_id = mail["messageId"]
    # Checked with the rest, but they have columns of their own rather than a place in `detail`.
    bounce_type, bounce_subtype = details.pop("bounceType", None), details.pop("bounceSubType", None)
    events = []
    for recipient, extra in _recipients(kind, detail, mail, where):
        both = {**details, **extra}
        events.append(Event(
            kind=kind, email=recipient, message_id=message_id, occurred_at=when,
            key=_key(kind, message_id, details, when, recipient),
            bounce_type=bounce_type, bounce_subtype=bounce_subtype,
            detail=both, tags=tags, sns_message_id=sns_message_id, raw=raw))
    return events


def _json(body: str | bytes | Any, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedEvent(f"{what} is not JSON: {exc}") from None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    lowered = text.lower()
    if "\\u0000" in lowered:
        # No SES payload holds a NUL, and PostgreSQL text cannot store one.
        raise MalformedEvent(f"{what} contains a NUL character")
    if ("\\ud" in lowered or not text.isascii()) and not _unicode(value):
        # "\ud800" alone is valid JSON but not Unicode text: no database column can store it.
        raise MalformedEvent(f"{what} holds a lone surrogate (\\ud800-\\udfff): not Unicode text")
    if not isinstance(value, dict):
        raise MalformedEvent(f"{what} is JSON but not an object")
    return value


def _unicode(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(value: Any) -> str:
    """A value for an error message: its repr, cut short (a payload may hold anything)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _text(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"{what} has no {key}")
    return value


def _typed(value: Any, kinds: tuple[type, ...], name: str) -> Any:
    # bool is an int to Python, never a number to SES.
    if not isinstance(value, kinds) or isinstance(value, bool):
        expected = " or ".join({str: "text", int: "a whole number", dict: "an object"}[k] for k in kinds)
        raise MalformedEvent(f"{name} is {_show(value)}, not {expected}")
    return value


def _details(kind: str, detail: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The facts worth keeping per kind, each of the type SES gives it."""
    return {key: _typed(detail[key], kinds, f"{where}.{key}")
            for key, kinds in DETAILS.get(kind, {}).items() if detail.get(key) is not None}


def _envelope_time(value: Any) -> dt.datetime | None:
    # Used only when the SES payload has no time of its own, so a bad one is not an error yet.
    try:
        return _timestamp(value, "the SNS Timestamp")
    except MalformedEvent:
        return None


def _when(detail: Mapping[str, Any], mail: Mapping[str, Any], sns_timestamp: dt.datetime | None, where: str,
          detail_key: str) -> dt.datetime:
    """The event's own time, else the mail's; without either, when SNS published it (anymail does the same)."""
    for obj, name in ((detail, f"{detail_key}.timestamp"), (mail, "mail.timestamp")):
        if obj.get("timestamp") is not None:
            return _timestamp(obj["timestamp"], f"{where}: {name}")
    if sns_timestamp is None:
        raise MalformedEvent(f"{where}: no timestamp (neither {detail_key}.timestamp, mail.timestamp "
                             f"nor an SNS envelope's Timestamp)")
    return sns_timestamp.astimezone(dt.UTC)


def _timestamp(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} {_show(value)} is not text")
    try:
        when = dt.datetime.fromisoformat(value)
        when = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise MalformedEvent(f"{name} {_show(value)} is not ISO 8601") from None
    if when.year not in YEARS:
        raise MalformedEvent(f"{name} {_show(value)} is not a time SES could have written")
    return when


def _tags(value: Any, where: str) -> dict[str, list[str]]:
    """SES message tags: each name -> a list of text values (our send, delivery and subscriber ids among them)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"{where}: mail.tags is {_show(value)}, not an object")
    for name, values in value.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise MalformedEvent(f"{where}: mail.tags.{name} is {_show(values)}, not a list of text")
    return {str(k): list(v) for k, v in value.items()}


def _address(value: Any, name: str) -> str | None:
    # Bounce recipients may come as "Name <address>"; most are bare (parseaddr is the slow part).
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} is {_show(value)}, not text")
    if "<" not in value and '"' not in value and " " not in value.strip():
        return value.strip() or None
    return parseaddr(value)[1] or None


PEOPLE = {"bounce": "bouncedRecipients", "complaint": "complainedRecipients", "delivery_delay": "delayedRecipients"}


def _recipients(kind: str, detail: Mapping[str, Any], mail: Mapping[str, Any],
                where: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Who the event is about, each with its own details (a bounce's DSN status is per recipient)."""
    if kind in PEOPLE:
        name = PEOPLE[kind]
        people = _objects(detail.get(name), f"{where}: {name}")
        return [(_address(p.get("emailAddress"), f"{where}: {name}[{i}].emailAddress"),
                 _per_recipient(p, f"{where}: {name}[{i}]") if kind != "complaint" else {})
                for i, p in enumerate(people)]
    listed = detail.get("recipients") if kind == "delivery" else None
    name = "delivery.recipients" if isinstance(listed, list) else "mail.destination"
    addresses = listed if isinstance(listed, list) else mail.get("destination")
    if not isinstance(addresses, list) or not addresses:
        raise MalformedEvent(f"SES {kind}: names no recipient")
    return [(_address(a, f"{where}: {name}[{i}]"), {}) for i, a in enumerate(addresses)]


def _objects(value: Any, name: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not value or not all(isinstance(p, Mapping) for p in value):
        raise MalformedEvent(f"{name} is missing or not a list of objects")
    return value


def _per_recipient(person: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {ours: _typed(person[theirs], TEXT, f"{where}.{theirs}")
            for ours, theirs in RECIPIENT_DETAILS.items() if person.get(theirs) is not None}


def _key(kind: str, message_id: str, details: Mapping[str, Any], when: dt.datetime, recipient: str | None) -> str:
    # SES gives bounces and complaints a feedbackId; the rest are identified by
    # message, time and (for clicks) link. The same event published twice,
    # through an identity notification and a configuration set, shares these.
    ident = details.get("feedbackId") or f"{message_id}@{when.isoformat()}"
    if kind == "click":
        ident += f"#{details.get('link', '')}"
    # The recipient goes in hashed: `forget` must leave the address in no column.
    who = hashlib.sha256((recipient or "").lower().encode("utf-8")).hexdigest()[:32]
    return f"{kind}:{ident[:400]}:{who}"
