"""Delivery: personalised MIME, transports, rate limiting, the ledger, SES events.

Uses only the public API of components/ and subscribers/. Only mailer/ses.py
(and mailer/sqs.py) import boto3.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The ledger's migrations, run with the subscribers' ones (see subscribers.db).
MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

_EXPORTS = {
    "MailerError": ".errors", "SendStopped": ".errors", "TransportError": ".errors", "ContentChanged": ".errors",
    "ArchiveConflict": ".errors",
    "Envelope": ".message", "MessageTemplate": ".message", "Recipient": ".message",
    "RateLimiter": ".ratelimit",
    "Plan": ".sending", "SendResult": ".sending", "plan_send": ".sending", "run_send": ".sending",
    "send_proofs": ".sending", "start_send": ".sending", "content_hash": ".sending",
    "Delivery": ".sending", "send_issue": ".sending", "schedule_issue": ".sending",
    "report": ".reports",
    "make_transport": ".transports",
    "Event": ".events", "MalformedEvent": ".events", "parse_body": ".events", "parse_ses": ".events",
    "SnsRefused": ".sns", "SnsVerifier": ".sns", "WebhookOutcome": ".webhook", "handle_sns": ".webhook",
    "Applied": ".policy", "Policy": ".policy", "record_unsubscribe": ".policy", "take": ".policy",
    "welcome_newcomer": ".welcome", "set_welcome": ".welcome", "clear_welcome": ".welcome", "welcome_of": ".welcome",
    "ArchivedIssue": ".archive", "archived_asset": ".archive", "archived_issues": ".archive",
    "archived_page": ".archive", "publish": ".archive", "send_one": ".transactional",
    "Segment": ".segments", "SegmentEntry": ".segments", "SegmentError": ".segments",
    "SegmentInvalid": ".segments", "SegmentNotFound": ".segments", "count_members": ".segments",
    "find_segment": ".segments", "list_segments": ".segments", "load_segment": ".segments",
    "segment_addresses": ".segments", "segment_count": ".segments", "segment_members": ".segments",
    "deliveries_of": ".person_events", "events_of": ".history",
}
__all__ = ["MIGRATIONS", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mailer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .archive import ArchivedIssue, archived_asset, archived_issues, archived_page, publish
    from .errors import ArchiveConflict, ContentChanged, MailerError, SendStopped, TransportError
    from .events import Event, MalformedEvent, parse_body, parse_ses
    from .history import events_of
    from .message import Envelope, MessageTemplate, Recipient
    from .person_events import deliveries_of
    from .policy import Applied, Policy, record_unsubscribe, take
    from .ratelimit import RateLimiter
    from .reports import report
    from .segments import (
        Segment,
        SegmentEntry,
        SegmentError,
        SegmentInvalid,
        SegmentNotFound,
        count_members,
        find_segment,
        list_segments,
        load_segment,
        segment_addresses,
        segment_count,
        segment_members,
    )
    from .sending import (
        Delivery,
        Plan,
        SendResult,
        content_hash,
        plan_send,
        run_send,
        schedule_issue,
        send_issue,
        send_proofs,
        start_send,
    )
    from .sns import SnsRefused, SnsVerifier
    from .transactional import send_one
    from .transports import make_transport
    from .webhook import WebhookOutcome, handle_sns
    from .welcome import clear_welcome, set_welcome, welcome_newcomer, welcome_of
