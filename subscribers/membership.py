"""Who is on which list, and the one rule above all: nobody who left is put back.

An `add`, an import, the API or a sign-up form never re-subscribes an address
that unsubscribed from that list or is suppressed. That is a legal obligation
(PECR / GDPR consent withdrawal), so the rule is written once, here
(`refusals`), and every path asks it: `add_subscriber` (and the API, through
it) refuses, an import skips the row, and the sign-up form asks for the
person's own confirmation from their mailbox, which is fresh consent.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, String, bindparam, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from .addresses import Address, normalise
from .db import Database, as_utc, utcnow
from .errors import NotAllowed, SubscriberNotFound
from .lists import MailingList, get_list
from .people import find, upsert
from .schema import lists, memberships, subscribers, suppressions
from .suppression import suppress

SUPPRESSED_HERE = "suppressed here"
LEFT_HERE = "had unsubscribed from this list"


@dataclass(frozen=True)
class Refusal:
    """Why an address may not be put on a list (again) by anyone but its owner."""
    kind: str  # "suppressed" or "unsubscribed"
    reason: str  # what an import's summary groups by: SUPPRESSED_HERE or LEFT_HERE
    message: str  # what `add` says


@dataclass(frozen=True)
class Guard:
    """The guard as SQL, for any rows that carry an address's key and hash (a VALUES list, a staging table)."""
    suppressed: Any  # the suppression's reason, or NULL
    left: Any  # EXISTS: unsubscribed from the list
    left_at: Any  # when they left, or NULL


def guard(list_id: int, key: Any, hash_: Any) -> Guard:
    """THE rule, written once: suppressed anywhere, or unsubscribed from this list.

    `key` and `hash_` are SQL expressions (columns of the rows asked about); the
    subqueries correlate to them, so one statement answers for a whole batch.
    """
    # Their membership of the list, found by key then by (list, person): two index look-ups,
    # whatever the planner thinks of the list's size.
    person = subscribers.alias("left_person")
    # correlate_except: `key` belongs to the statement two levels up, which auto-correlation does not reach.
    person_id = select(person.c.id).where(person.c.email_key == key).correlate_except(person).scalar_subquery()
    left = select(memberships.c.unsubscribed_at).where(
        memberships.c.list_id == list_id, memberships.c.subscriber_id == person_id,
        memberships.c.status == "unsubscribed")
    return Guard(select(suppressions.c.reason).where(suppressions.c.email_hash == hash_).scalar_subquery(),
                 left.exists(), left.scalar_subquery())


def refusals(conn: Connection, mailing_list: MailingList, addresses: Iterable[Address]) -> dict[str, Refusal]:
    """Of these addresses, the ones nobody but their owner may put on the list, by key, and why.

    Suppressed (anywhere: a bounce, a complaint, a forget, another tool's bounce) or
    unsubscribed from this list (a list removed and made again keeps who left it).
    One read however many addresses.
    """
    wanted = {a.key: a for a in addresses}
    if not wanted:
        return {}
    asked = _pairs(conn, [(key, a.hash) for key, a in wanted.items()])
    rule = guard(mailing_list.id, asked.c.key, asked.c.hash)
    out = {}
    for key, suppressed, left, left_at in conn.execute(select(asked.c.key, rule.suppressed, rule.left, rule.left_at)):
        email = wanted[key].email
        if suppressed is not None:
            out[key] = Refusal("suppressed", SUPPRESSED_HERE,
                               f"{email} is suppressed ({suppressed}) and will not be subscribed")
        elif left:
            day = as_utc(left_at).date().isoformat() if isinstance(left_at, dt.datetime) else "earlier"
            out[key] = Refusal("unsubscribed", LEFT_HERE,
                               f"{email} unsubscribed from {mailing_list.name!r} ({day}); only they can sign up again")
    return out


def _pairs(conn: Connection, pairs: list[tuple[str, str]]) -> Any:
    """(key, hash) rows from one bound parameter, however many: a JSON array on SQLite, arrays on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        keys, hashes = (bindparam(None, list(c), type_=ARRAY(String)) for c in zip(*pairs, strict=True))
        rows = func.unnest(keys, hashes).table_valued(column("key", String), column("hash", String)).render_derived()
        return select(rows.c.key, rows.c.hash).subquery("asked")
    each = func.json_each(bindparam(None, json.dumps(pairs))).table_valued("value")
    return select(func.json_extract(each.c.value, "$[0]").label("key"),
                  func.json_extract(each.c.value, "$[1]").label("hash")).subquery("asked")


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
