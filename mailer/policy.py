"""The one place SES events change anything: store them, attribute them, settle the ledger, suppress.

Both inputs, the SQS poller and the SNS webhook, feed `take()`, so a bounce has
the same effect however it arrives. A batch is one transaction with one look-up
of the ledger; each message of it is applied in its own SAVEPOINT, so a message
that cannot be applied (a value the database refuses, a bug) is rolled back alone
and kept in `inbound_errors` with its error while the rest of the batch applies.
Only the database itself failing (busy, unreachable: OperationalError, raised as
subscribers.DatabaseError) fails the batch, which the caller then retries whole.

The policy (design §8), each rule in one function here:
- `is_hard()`: a Permanent bounce, SES's own `Suppressed`/`OnAccountSuppressionList`
  subtypes, and a bounce of any type whose per-recipient DSN status is 5.x.x
  (RFC 3463 class 5 is a permanent failure, whatever SES's classifier said:
  listmonk #1463) are hard: the address is suppressed at once. The stored event
  keeps `hard`, and `bounce_subtype` so reports can leave OnAccountSuppressionList
  out of the bounce rate (SES does: it never tried to deliver those).
- A complaint suppresses and unsubscribes from every list (consent is withdrawn).
- Transient bounces suppress after `soft_limit` within `soft_days` with no
  delivery between (`_soft_bounces`), or after soft bounces on `soft_sends` sends
  of one list in a row with no delivery between, however far apart the sends are
  (`_soft_sends_in_a_row`: a monthly newsletter never sees 3 in 30 days).
- `_settle()`: a ledger row left `sending` (the transport call's outcome is unknown)
  or `pending`, named by a send, delivery, bounce, complaint or reject event (by
  its MessageId, or by the message tags when the row has none), was accepted by
  SES: it becomes `sent` with that MessageId and the event's time.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from subscribers import Address, Database, DatabaseError, as_utc, insert_new_only, suppress_address, try_normalise

from .events import Event, MalformedEvent, parse_body
from .schema import deliveries, events, inbound_errors, sends

MAX_KEPT_BODY = 65536  # an unreadable input is kept for a human, up to this many characters
MAX_KEPT_ERROR = 2000
# Bounce subtypes that mean "this address will never accept mail from you": SES
# itself refused to send because the address is on a suppression list.
PERMANENT_SUBTYPES = frozenset({"Suppressed", "OnAccountSuppressionList"})
PERMANENT_STATUS = re.compile(r"5\.\d{1,3}\.\d{1,3}")  # RFC 3463: class.subject.detail
# Events that prove SES accepted the message (design §8: they settle an unknown row).
SETTLING = frozenset({"send", "delivery", "bounce", "complaint", "reject"})
UNSETTLED = ("sending", "pending")
MAX_WINDOW_DAYS = 3650  # a soft_days beyond this is "ever"; more would overflow datetime


@dataclass(frozen=True)
class Policy:
    soft_limit: int = 3  # transient bounces within soft_days, no delivery between, suppress
    soft_days: int = 30
    soft_sends: int = 4  # or transient bounces on this many sends of a list in a row, no delivery between


@dataclass
class Applied:
    """What one batch did."""

    stored: int = 0  # new events
    duplicates: int = 0  # seen before: changed nothing
    unattributed: int = 0  # stored, but no ledger row sent that message
    malformed: int = 0  # recorded in inbound_errors (unreadable, or could not be applied)
    settled: int = 0  # ledger rows left unknown (or pending) that an event showed SES had accepted
    waits: int = 0  # times the poller waited for a busy or unreachable database
    suppressed: list[str] = field(default_factory=list)  # addresses newly suppressed
    errors: list[str] = field(default_factory=list)

    def add(self, other: Applied) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.unattributed += other.unattributed
        self.malformed += other.malformed
        self.settled += other.settled
        self.waits += other.waits
        self.suppressed += other.suppressed
        self.errors += other.errors


@dataclass(frozen=True)
class LedgerRow:
    id: int
    send_id: int
    subscriber_id: int | None
    state: str
    message_id: str | None


@dataclass
class Ledger:
    """The ledger rows a batch names, from one query: by MessageId, and by the delivery id of the message tags."""

    by_message: dict[str, LedgerRow]
    by_id: dict[int, LedgerRow]

    def owner(self, event: Event) -> LedgerRow | None:
        row = self.by_message.get(event.message_id) if event.message_id else None
        if row is not None:
            return row
        # A crash between SES accepting a message and the ledger recording its
        # MessageId leaves the row without one; the message tags still name it.
        tagged = _tag_ids(event)
        row = self.by_id.get(tagged[1]) if tagged else None
        if row is None or tagged is None or row.message_id is not None or row.send_id != tagged[0]:
            return None  # a row that knows its message is not this one; tags of another send are not trusted
        return row if tagged[2] is None or row.subscriber_id in (None, tagged[2]) else None


@dataclass
class _Message:
    """One message of a batch as it is applied: its effects count only once its savepoint is released."""

    applied: Applied = field(default_factory=Applied)
    settle: dict[int, tuple[str, dt.datetime]] = field(default_factory=dict)  # row id -> (MessageId, time)


def take(db: Database, bodies: Sequence[str | bytes], policy: Policy, source: str,
         parse: Callable[[str | bytes], list[Event]] = parse_body) -> Applied:
    """Parse and apply a batch of message bodies in one transaction; what cannot be applied is recorded.

    Raises subscribers.DatabaseError, having changed nothing, when the database is busy or unreachable.
    """
    parsed: list[tuple[str | bytes, list[Event]]] = []
    unreadable: list[tuple[str | bytes, str]] = []
    for body in bodies:
        try:
            parsed.append((body, parse(body)))
        except MalformedEvent as exc:
            unreadable.append((body, str(exc)))
        except Exception as exc:  # noqa: BLE001 -- a parser bug must not sink the batch either
            unreadable.append((body, f"could not be read: {_error_text(exc)}"))
    try:
        # The common path: the whole batch at once. A savepoint per message would cost a
        # third of the throughput on SQLite (each write then goes through a statement journal).
        with db.begin() as conn:
            applied = _apply_messages(conn, parsed, policy, source, careful=False)[0]
            _record(conn, source, unreadable, careful=False)
    except Exception as exc:  # noqa: BLE001 -- the transaction rolled back; sorted out message by message below
        _reraise_if_database(exc)
        with _database_errors(), db.begin() as conn:
            applied, failed = _apply_messages(conn, parsed, policy, source, careful=True)
            unreadable += failed
            _record(conn, source, unreadable, careful=True)
    applied.malformed = len(unreadable)
    applied.errors = [error for _, error in unreadable]
    return applied


def _apply_messages(conn: Connection, messages: list[tuple[str | bytes, list[Event]]], policy: Policy, source: str,
                    *, careful: bool) -> tuple[Applied, list[tuple[str | bytes, str]]]:
    """Apply each message's events, then settle the ledger rows they show SES accepted.

    `careful`: each message in a SAVEPOINT of its own, so a message that fails (a value the
    database refuses, a bug) is rolled back alone and returned with its error; otherwise any
    failure propagates and the caller's transaction rolls back.
    """
    ledger = _ledger(conn, [e for _, found in messages for e in found])  # one look-up of the ledger per batch
    now = dt.datetime.now(dt.UTC)
    applied, failed = Applied(), []
    settle: dict[int, tuple[str, dt.datetime]] = {}  # row id -> the earliest (MessageId, time) naming it
    for body, found in messages:
        one = _Message()
        try:
            with conn.begin_nested() if careful else contextlib.nullcontext():
                for event in found:
                    _apply(conn, event, ledger, policy, source, now, one)
        except Exception as exc:  # noqa: BLE001 -- anything this message does wrong is this message's alone
            if not careful or _database_down(exc):
                raise  # the database, not this message: the whole batch waits for it
            failed.append((body, f"not applied: {_error_text(exc)}"))
            continue
        applied.add(one.applied)
        for row_id, (message_id, when) in one.settle.items():
            if row_id not in settle or when < settle[row_id][1]:
                settle[row_id] = (message_id, when)
    applied.settled = _settle(conn, settle, now)
    return applied, failed


def _record(conn: Connection, source: str, unreadable: list[tuple[str | bytes, str]], *, careful: bool) -> None:
    for body, error in unreadable:
        try:
            with conn.begin_nested() if careful else contextlib.nullcontext():
                record_malformed(conn, source, body, error)
        except Exception as exc:  # noqa: BLE001 -- keep at least the error, never lose the batch over it
            if not careful or _database_down(exc):
                raise
            record_malformed(conn, source, "", f"{error} (the body could not be kept: {_error_text(exc)})")


def _reraise_if_database(exc: Exception) -> None:
    if isinstance(exc, DatabaseError):
        raise exc
    if _database_down(exc):
        raise DatabaseError(f"database error: {_error_text(exc)}") from None


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    # Database.begin turns OperationalError into DatabaseError; a lost connection can also be these.
    try:
        yield
    except (InterfaceError, DBAPIError) as exc:
        _reraise_if_database(exc)
        raise


def record_malformed(conn: Connection, source: str, body: str | bytes, error: str) -> None:
    conn.execute(inbound_errors.insert().values(
        source=source, error=_storable(error)[:MAX_KEPT_ERROR], body=_storable(body)[:MAX_KEPT_BODY],
        received_at=dt.datetime.now(dt.UTC)))


def is_hard(event: Event) -> bool | None:
    """For bounces: True when the address must be suppressed at once (None for other kinds)."""
    if event.kind != "bounce":
        return None
    if event.bounce_type == "Permanent" or event.bounce_subtype in PERMANENT_SUBTYPES:
        return True
    # SES calls some refusals Transient ("550 5.4.4 Invalid domain", listmonk #1463):
    # the receiving server's DSN status says they will never succeed.
    return bool(PERMANENT_STATUS.fullmatch(str(event.detail.get("status", ""))))


def _apply(conn: Connection, event: Event, ledger: Ledger, policy: Policy, source: str, now: dt.datetime,
           one: _Message) -> None:
    """Store one event attributed to its ledger row, note what it settles, then act on it if it is new."""
    address = try_normalise(event.email) if event.email else None
    address = address if isinstance(address, Address) else None
    row = ledger.owner(event)
    if row is not None and row.state in UNSETTLED and event.kind in SETTLING and event.message_id:
        one.settle[row.id] = (event.message_id, event.occurred_at)
    if not _store(conn, event, address, (row.id, row.send_id) if row else None, source, now):
        one.applied.duplicates += 1
        return
    one.applied.stored += 1
    one.applied.unattributed += row is None
    if address is not None and _act(conn, event, address, row, policy):
        one.applied.suppressed.append(address.email)


def _ledger(conn: Connection, batch: list[Event]) -> Ledger:
    mids = sorted({e.message_id for e in batch if e.message_id})
    tagged = sorted({ids[1] for e in batch if (ids := _tag_ids(e))})
    if not mids and not tagged:
        return Ledger({}, {})
    named = [deliveries.c.message_id.in_(mids)] if mids else []
    named += [deliveries.c.id.in_(tagged)] if tagged else []
    rows = [LedgerRow(*r) for r in conn.execute(
        select(deliveries.c.id, deliveries.c.send_id, deliveries.c.subscriber_id, deliveries.c.state,
               deliveries.c.message_id).where(or_(*named)))]
    return Ledger({r.message_id: r for r in rows if r.message_id}, {r.id: r for r in rows})


MAX_ID = 2**31 - 1  # the ledger's ids are INTEGER; a bigger tag names nothing of ours


def _tag_ids(event: Event) -> tuple[int, int, int | None] | None:
    """(send id, delivery id, subscriber id or None) from the message tags the sender set, if they are ours."""
    def number(name: str) -> int | None:
        values = event.tags.get(name) or [""]
        text = values[0]
        return int(text) if text.isdecimal() and text.isascii() and len(text) <= 10 and int(text) <= MAX_ID else None
    send_id, delivery_id = number("send_id"), number("delivery_id")
    if send_id is None or delivery_id is None:
        return None
    return send_id, delivery_id, number("subscriber_id")


def _settle(conn: Connection, settle: dict[int, tuple[str, dt.datetime]], now: dt.datetime) -> int:
    """Rows SES is known to have accepted become `sent` (one statement per batch; none on the common path).

    The state is checked again here: a sender may have recorded the row meanwhile. (No IN: SQLAlchemy
    cannot expand one in an executemany.)"""
    if not settle:
        return 0
    result = conn.execute(
        update(deliveries)
        .where(deliveries.c.id == bindparam("row_id"), or_(*(deliveries.c.state == s for s in UNSETTLED)),
               or_(deliveries.c.message_id.is_(None), deliveries.c.message_id == bindparam("mid")))
        .values(state="sent", message_id=bindparam("mid"), sent_at=bindparam("at"), error=None, updated_at=now),
        [{"row_id": row_id, "mid": mid, "at": when.astimezone(dt.UTC)}
         for row_id, (mid, when) in sorted(settle.items())])
    return max(result.rowcount, 0)


def _store(conn: Connection, event: Event, address: Address | None, owner: tuple[int, int] | None,
           source: str, now: dt.datetime) -> bool:
    """Insert the event unless its key is known (two pollers may race: the database decides)."""
    result = conn.execute(insert_new_only(conn.dialect.name, events, "key"), dict(
        key=event.key, kind=event.kind, email=event.email, email_hash=address.hash if address else None,
        hard=is_hard(event), bounce_type=event.bounce_type, bounce_subtype=event.bounce_subtype,
        detail=dict(event.detail), message_id=event.message_id,
        delivery_id=owner[0] if owner else None, send_id=owner[1] if owner else None,
        occurred_at=event.occurred_at.astimezone(dt.UTC), received_at=now, source=source,
        sns_message_id=event.sns_message_id, raw=event.raw))
    return result.first() is not None


def _act(conn: Connection, event: Event, address: Address, row: LedgerRow | None, policy: Policy) -> bool:
    """Apply the policy to one new event; True when it newly suppressed the address."""
    if event.kind == "complaint":
        reason = "complaint" + (f" ({event.detail['complaintFeedbackType']})"
                                if event.detail.get("complaintFeedbackType") else "")
        return _suppress(conn, address, reason, leave_lists=True)
    if event.kind != "bounce":
        return False
    if is_hard(event):
        status = event.detail.get("status")
        return _suppress(conn, address, f"bounce: {event.bounce_type}/{event.bounce_subtype}"
                                        + (f" (status {status})" if status else ""))
    why = _soft_reason(conn, event, address, row, policy)
    return _suppress(conn, address, why) if why else False


def _soft_reason(conn: Connection, event: Event, address: Address, row: LedgerRow | None,
                 policy: Policy) -> str | None:
    """Why this transient bounce suppresses the address, by either rule; None when it does not (yet)."""
    soft = _soft_bounces(conn, address, event.occurred_at, policy)
    if soft >= policy.soft_limit:
        return f"bounce: {soft} transient bounces within {policy.soft_days} days"
    in_a_row = _soft_sends_in_a_row(conn, address, row) if row is not None else 0
    if in_a_row >= policy.soft_sends:
        return f"bounce: transient bounces on {in_a_row} sends of the list in a row"
    return None


def _suppress(conn: Connection, address: Address, reason: str, *, leave_lists: bool = False) -> bool:
    return bool(suppress_address(conn, address, reason, "ses", leave_lists=leave_lists))


def _soft_bounces(conn: Connection, address: Address, at: dt.datetime, policy: Policy) -> int:
    """The most transient bounces in any window of `soft_days` around this one with no delivery between.

    SQS does not keep order, so every window that this bounce could complete is
    checked, not only the one ending at it: bounces of day 20, 10 and 0 arriving
    in that order suppress just as they would in order.
    """
    window = dt.timedelta(days=min(policy.soft_days, MAX_WINDOW_DAYS))
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


def _soft_sends_in_a_row(conn: Connection, address: Address, row: LedgerRow) -> int:
    """The longest run of this person's sends of this list (in send order) that soft-bounced, no delivery between.

    Only sends with a ledger row for them count. A message that went out (`sent`)
    and did not soft-bounce ends a run, as a delivery does; a row that never reached
    SES (pending, failed, skipped, unknown) neither ends nor extends one. Like the
    time rule it looks at the whole history, so bounces arriving out of order count.
    """
    if row.subscriber_id is None:
        return 0  # forgotten: nothing to line up
    this_list = select(sends.c.list_id).where(sends.c.id == row.send_id).scalar_subquery()
    theirs = conn.execute(
        select(deliveries.c.id, deliveries.c.state)
        .select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id))
        .where(sends.c.list_id == this_list, deliveries.c.subscriber_id == row.subscriber_id)
        .order_by(deliveries.c.send_id)).all()
    outcomes = conn.execute(select(events.c.delivery_id, events.c.kind).where(
        events.c.email_hash == address.hash,  # the person's events (indexed), then their rows of this list
        or_(and_(events.c.kind == "bounce", events.c.hard.is_(False)), events.c.kind == "delivery"),
        events.c.delivery_id.in_([r.id for r in theirs]))).all()
    soft = {d for d, kind in outcomes if kind == "bounce"}
    delivered = {d for d, kind in outcomes if kind == "delivery"}
    run = best = 0
    for delivery_id, state in theirs:
        if delivery_id in soft and delivery_id not in delivered:
            run += 1
            best = max(best, run)
        elif delivery_id in delivered or state == "sent":
            run = 0
    return best


def _database_down(exc: BaseException) -> bool:
    """The database, not the message: busy, locked, unreachable or the connection lost."""
    return isinstance(exc, OperationalError | InterfaceError | DatabaseError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _error_text(exc: BaseException) -> str:
    # A DBAPIError's text repeats the SQL and every parameter (the whole payload): its driver's message is enough.
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(inner).__name__}: {inner}".strip()


def _storable(value: str | bytes | Any) -> str:
    """Any body or message as text a database column takes: UTF-8, no NUL, no lone surrogate."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL; SES never sends one
    return text.encode("utf-8", "replace").decode("utf-8")


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

