"""Who is on which list, and the one rule above all: nobody who left is put back.

An `add`, an import or a sign-up form never re-subscribes an address that
unsubscribed from that list or is suppressed. That is a legal obligation
(PECR / GDPR consent withdrawal), so every path goes through `_may_join`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from .addresses import Address, normalise
from .db import Database, utcnow
from .errors import NotAllowed, SubscriberNotFound
from .lists import MailingList, get_list
from .people import find, upsert
from .schema import lists, memberships
from .suppression import suppress, suppression_of


def _status(conn: Connection, list_id: int, subscriber_id: int) -> Any:
    return conn.execute(select(memberships).where(
        memberships.c.list_id == list_id, memberships.c.subscriber_id == subscriber_id)).first()


def _may_join(conn: Connection, email: str, mailing_list: MailingList) -> None:
    address = normalise(email)
    reason = suppression_of(conn, address)
    if reason is not None:
        raise NotAllowed(f"{address.email} is suppressed ({reason}) and will not be subscribed")
    person = find(conn, address)
    member = _status(conn, mailing_list.id, person.id) if person else None
    if member is not None and member.status == "unsubscribed":
        when = member.unsubscribed_at.date().isoformat() if member.unsubscribed_at else "earlier"
        raise NotAllowed(f"{address.email} unsubscribed from {mailing_list.name!r} ({when}); "
                         "only they can sign up again")


def add_subscriber(db: Database, email: str, list_name: str, name: str = "",
                   fields: Mapping[str, Any] | None = None, source: str = "admin") -> str:
    """An admin adds someone: subscribed at once. Returns "added", "updated" or "unchanged"."""
    return _join(db, email, list_name, name, fields or {}, source, "subscribed")


def request_subscription(db: Database, email: str, list_name: str, name: str = "",
                         fields: Mapping[str, Any] | None = None) -> str:
    """The sign-up form: unconfirmed on a double opt-in list, else subscribed. Returns the status."""
    with db.begin() as conn:
        double = get_list(conn, list_name).double_opt_in
    status = "unconfirmed" if double else "subscribed"
    _join(db, email, list_name, name, fields or {}, "form", status)
    return status


def _join(db: Database, email: str, list_name: str, name: str, fields: Mapping[str, Any],
          source: str, status: str) -> str:
    address = normalise(email)
    with db.begin() as conn:
        mailing_list = get_list(conn, list_name)
        _may_join(conn, address.email, mailing_list)
        subscriber_id, outcome = upsert(conn, address, name, fields)
        member = _status(conn, mailing_list.id, subscriber_id)
        now = utcnow()
        if member is None:
            conn.execute(memberships.insert().values(
                list_id=mailing_list.id, subscriber_id=subscriber_id, status=status, source=source,
                subscribed_at=now, confirmed_at=now if status == "subscribed" else None, updated_at=now))
            return "added"
        if member.status == "unconfirmed" and status == "subscribed":
            conn.execute(memberships.update().where(
                memberships.c.list_id == mailing_list.id, memberships.c.subscriber_id == subscriber_id,
            ).values(status="subscribed", confirmed_at=now, updated_at=now, source=source))
            return "updated"
        return outcome


def unsubscribe(db: Database, email: str, list_name: str | None = None, source: str = "admin") -> list[str]:
    """Unsubscribe from one list, or from every list; idempotent. Returns the lists changed."""
    address = normalise(email, held=True)
    with db.begin() as conn:
        person = find(conn, address)
        target = get_list(conn, list_name).id if list_name is not None else None
        if person is None:
            raise SubscriberNotFound(f"no subscriber {address.email}")
        return _leave(conn, person.id, target, source)


def _leave(conn: Connection, subscriber_id: int, list_id: int | None, source: str) -> list[str]:
    query = select(memberships.c.list_id, lists.c.name).select_from(memberships.join(lists)).where(
        memberships.c.subscriber_id == subscriber_id, memberships.c.status != "unsubscribed")
    if list_id is not None:
        query = query.where(memberships.c.list_id == list_id)
    changed = list(conn.execute(query))
    now = utcnow()
    for changed_id, _ in changed:
        conn.execute(memberships.update().where(
            memberships.c.list_id == changed_id, memberships.c.subscriber_id == subscriber_id,
        ).values(status="unsubscribed", unsubscribed_at=now, updated_at=now, source=source))
    return [name for _, name in changed]


def suppress_address(conn: Connection, address: Address, reason: str, source: str, *,
                     leave_lists: bool = False) -> bool:
    """Never mail this address again (bounces, complaints), inside the caller's transaction.

    `leave_lists` also unsubscribes it from every list (a complaint is a
    withdrawal of consent). Idempotent; True when the address was not suppressed before.
    """
    new = suppress(conn, address, reason, source)
    person = find(conn, address) if leave_lists else None
    if person is not None:
        _leave(conn, person.id, None, source)
    return new
