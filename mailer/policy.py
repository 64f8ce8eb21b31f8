"""The one place SES events change anything: store them, attribute them, suppress.

Both inputs, the SQS poller and the SNS webhook, feed `take()`, and every event
goes through the one `apply_events()`, so a bounce has the same effect however
it arrives.

The policy (design §8): a permanent bounce suppresses the address at once; a
complaint suppresses it and unsubscribes it from every list (consent is
withdrawn); transient bounces suppress after `soft_limit` within `soft_days`
with no delivery between. SES's own `Suppressed`/`OnAccountSuppressionList`
bounces count as permanent.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from subscribers import Address, Database, as_utc, insert_new_only, suppress_address, try_normalise

from .events import Event, MalformedEvent, parse_body
from .schema import deliveries, events, inbound_errors, sends

MAX_KEPT_BODY = 65536  # an unreadable input is kept for a human, up to this many characters


@dataclass(frozen=True)
class Policy:
    soft_limit: int = 3
    soft_days: int = 30


@dataclass
class Applied:
    """What one batch did."""

    stored: int = 0  # new events
    duplicates: int = 0  # seen before: changed nothing
    unattributed: int = 0  # stored, but no ledger row sent that message
    malformed: int = 0  # recorded in inbound_errors
    suppressed: list[str] = field(default_factory=list)  # addresses newly suppressed
    errors: list[str] = field(default_factory=list)

    def add(self, other: Applied) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.unattributed += other.unattributed
        self.malformed += other.malformed
        self.suppressed += other.suppressed
        self.errors += other.errors


def take(db: Database, bodies: Sequence[str | bytes], policy: Policy, source: str,
         parse: Callable[[str | bytes], list[Event]] = parse_body) -> Applied:
    """Parse and apply a batch of message bodies in one transaction; unreadable ones are recorded."""
    parsed: list[Event] = []
    unreadable: list[tuple[str | bytes, str]] = []
    for body in bodies:
        try:
            parsed += parse(body)
        except MalformedEvent as exc:
            unreadable.append((body, str(exc)))
    with db.begin() as conn:
        applied = apply_events(conn, parsed, policy, source)  # one look-up of the ledger per batch
        for body, error in unreadable:
            record_malformed(conn, source, body, error)
    applied.malformed = len(unreadable)
    applied.errors = [error for _, error in unreadable]
    return applied


def apply_events(conn: Connection, parsed: Iterable[Event], policy: Policy, source: str) -> Applied:
    """Store each new event, attributed to its ledger row, then act on it."""
    batch = list(parsed)
    owners = _owners(conn, batch)
    applied = Applied()
    now = dt.datetime.now(dt.UTC)
    for event in batch:
        address = try_normalise(event.email) if event.email else None
        address = address if isinstance(address, Address) else None
        owner = (owners.get(event.message_id) if event.message_id else None) or _tagged_owner(conn, event)
        if not _store(conn, event, address, owner, source, now):
            applied.duplicates += 1
            continue
        applied.stored += 1
        applied.unattributed += owner is None
        if address is not None and _act(conn, event, address, policy):
            applied.suppressed.append(address.email)
    return applied


def record_malformed(conn: Connection, source: str, body: str | bytes, error: str) -> None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL; SES never sends one
    conn.execute(inbound_errors.insert().values(
        source=source, error=error, body=text[:MAX_KEPT_BODY], received_at=dt.datetime.now(dt.UTC)))


def _owners(conn: Connection, batch: list[Event]) -> dict[str, tuple[int, int]]:
    """message id -> (delivery id, send id), for the messages the ledger sent."""
    ids = sorted({e.message_id for e in batch if e.message_id})
    if not ids:
        return {}
    rows = conn.execute(select(deliveries.c.message_id, deliveries.c.id, deliveries.c.send_id)
                        .where(deliveries.c.message_id.in_(ids)))
    return {mid: (did, sid) for mid, did, sid in rows}


def _tagged_owner(conn: Connection, event: Event) -> tuple[int, int] | None:
    # A crash between SES accepting a message and the ledger recording its
    # MessageId leaves the row without one; the message tags still name it.
    try:
        delivery_id = int(event.tags.get("delivery_id", [""])[0])
        send_id = int(event.tags.get("send_id", [""])[0])
    except (ValueError, IndexError):
        return None
    found = conn.execute(select(deliveries.c.id).where(
        deliveries.c.id == delivery_id, deliveries.c.send_id == send_id,
        deliveries.c.message_id.is_(None))).scalar()  # a row that knows its message is not this one
    return (delivery_id, send_id) if found is not None else None


def _store(conn: Connection, event: Event, address: Address | None, owner: tuple[int, int] | None,
           source: str, now: dt.datetime) -> bool:
    """Insert the event unless its key is known (two pollers may race: the database decides)."""
    result = conn.execute(insert_new_only(conn.dialect.name, events, "key"), dict(
        key=event.key, kind=event.kind, email=event.email, email_hash=address.hash if address else None,
        hard=event.hard, bounce_type=event.bounce_type, bounce_subtype=event.bounce_subtype,
        detail=dict(event.detail), message_id=event.message_id,
        delivery_id=owner[0] if owner else None, send_id=owner[1] if owner else None,
        occurred_at=event.occurred_at.astimezone(dt.UTC), received_at=now, source=source,
        sns_message_id=event.sns_message_id, raw=event.raw))
    return result.first() is not None


def _act(conn: Connection, event: Event, address: Address, policy: Policy) -> bool:
    """Apply the policy to one new event; True when it newly suppressed the address."""
    if event.kind == "complaint":
        reason = "complaint" + (f" ({event.detail['complaintFeedbackType']})"
                                if event.detail.get("complaintFeedbackType") else "")
        return _suppress(conn, address, reason, leave_lists=True)
    if event.kind != "bounce":
        return False
    if event.hard:
        return _suppress(conn, address, f"bounce: {event.bounce_type}/{event.bounce_subtype}")
    soft = _soft_bounces(conn, address, event.occurred_at, policy)
    if soft >= policy.soft_limit:
        return _suppress(conn, address, f"bounce: {soft} transient bounces within {policy.soft_days} days")
    return False


def _suppress(conn: Connection, address: Address, reason: str, *, leave_lists: bool = False) -> bool:
    return bool(suppress_address(conn, address, reason, "ses", leave_lists=leave_lists))


def _soft_bounces(conn: Connection, address: Address, at: dt.datetime, policy: Policy) -> int:
    """The most transient bounces in any window of `soft_days` around this one with no delivery between.

    SQS does not keep order, so every window that this bounce could complete is
    checked, not only the one ending at it: bounces of day 20, 10 and 0 arriving
    in that order suppress just as they would in order.
    """
    window = dt.timedelta(days=policy.soft_days)
    at = as_utc(at)
    rows = conn.execute(select(events.c.kind, events.c.occurred_at).where(
        events.c.email_hash == address.hash,
        ((events.c.kind == "bounce") & events.c.hard.is_(False)) | (events.c.kind == "delivery"),
        events.c.occurred_at > at - window, events.c.occurred_at < at + window))
    bounces: list[dt.datetime] = []
    deliveries_at: list[dt.datetime] = []
    for kind, when in rows:
        (bounces if kind == "bounce" else deliveries_at).append(as_utc(when))
    most = 0
    for end in bounces:
        since = max([end - window, *(d for d in deliveries_at if d <= end)])
        most = max(most, len([b for b in bounces if since < b <= end]))
    return most



def record_unsubscribe(db: Database, subscriber_id: int, list_id: int, email: str) -> bool:
    """Count a link or List-Unsubscribe unsubscribe against the last send that reached them on that list.

    The token names subscriber and list only (design §6), so the send is the
    latest one of that list that sent this person a message. False when none did.
    """
    address = try_normalise(email)
    with db.begin() as conn:
        owner = conn.execute(
            select(deliveries.c.id, deliveries.c.send_id)
            .select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id))
            .where(deliveries.c.subscriber_id == subscriber_id, sends.c.list_id == list_id,
                   deliveries.c.state == "sent")
            .order_by(deliveries.c.sent_at.desc(), deliveries.c.id.desc()).limit(1)).first()
        if owner is None:
            return False
        now = dt.datetime.now(dt.UTC)
        # No address in the row (only its hash), like every event after `forget`.
        event = Event(kind="unsubscribe", email=None, message_id=None, occurred_at=now, key=f"unsubscribe:{owner.id}")
        _store(conn, event, address if isinstance(address, Address) else None, (owner.id, owner.send_id), "link", now)
        return True
