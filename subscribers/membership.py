"""Who is on which list, and the one rule above all: nobody who left is put back.

An `add`, an import, the API or a sign-up form never re-subscribes an address
that unsubscribed from that list or is suppressed. That is a legal obligation
(PECR / GDPR consent withdrawal), so the rule is written once, here
(`refusals`), and every path asks it: `add_subscriber` (and the API, through
it) refuses, an import skips the row, and the sign-up form asks for the
person's own confirmation from their mailbox, which is fresh consent.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from .addresses import Address, normalise
from .db import Database, in_values, utcnow
from .errors import NotAllowed, SubscriberNotFound
from .lists import MailingList, get_list
from .people import find, upsert
from .schema import lists, memberships, subscribers
from .suppression import any_suppressed, suppress, suppression_reasons

SUPPRESSED_HERE = "suppressed here"
LEFT_HERE = "had unsubscribed from this list"


@dataclass(frozen=True)
class Refusal:
    """Why an address may not be put on a list (again) by anyone but its owner."""
    kind: str  # "suppressed" or "unsubscribed"
    reason: str  # what an import's summary groups by: SUPPRESSED_HERE or LEFT_HERE
    message: str  # what `add` says


def refusals(conn: Connection, mailing_list: MailingList, addresses: Iterable[Address]) -> dict[str, Refusal]:
    """THE guard: of these addresses, the ones nobody but their owner may put on the list, by key.

    Suppressed (anywhere: a bounce, a complaint, a forget, another tool's bounce) or
    unsubscribed from this list (a list removed and made again keeps who left it).
    Two reads however many addresses: an import asks it for a batch at a time.
    """
    wanted = {a.key: a for a in addresses}
    out: dict[str, Refusal] = {}
    if wanted and any_suppressed(conn):  # an empty suppression list needs no look-up, nor hashes
        reasons = suppression_reasons(conn, [a.hash for a in wanted.values()])
        for key, address in wanted.items():
            if address.hash in reasons:
                out[key] = Refusal("suppressed", SUPPRESSED_HERE, f"{address.email} is suppressed "
                                   f"({reasons[address.hash]}) and will not be subscribed")
    rest = [key for key in wanted if key not in out]
    if rest:
        left = conn.execute(
            select(subscribers.c.email_key, memberships.c.unsubscribed_at)
            .select_from(subscribers.join(memberships, memberships.c.subscriber_id == subscribers.c.id))
            .where(memberships.c.list_id == mailing_list.id, memberships.c.status == "unsubscribed",
                   in_values(conn, subscribers.c.email_key, rest)))
        for key, when in left:
            day = when.date().isoformat() if when else "earlier"
            out[key] = Refusal("unsubscribed", LEFT_HERE, f"{wanted[key].email} unsubscribed from "
                               f"{mailing_list.name!r} ({day}); only they can sign up again")
    return out


def ensure_may_join(conn: Connection, mailing_list: MailingList, address: Address) -> None:
    """Raise NotAllowed when the guard refuses the address (what `add` and the API do)."""
    refusal = refusals(conn, mailing_list, [address]).get(address.key)
    if refusal is not None:
        raise NotAllowed(refusal.message)


def _status(conn: Connection, list_id: int, subscriber_id: int) -> Any:
    return conn.execute(select(memberships).where(
        memberships.c.list_id == list_id, memberships.c.subscriber_id == subscriber_id)).first()


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
        ensure_may_join(conn, mailing_list, address)
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
