"""Who may be mailed: what a send asks of the audience, at its start and at each turn."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Subquery, and_, func, not_, select

from .addresses import address_hash
from .db import in_values
from .schema import memberships, subscribers
from .suppression import any_suppressed, suppressed_hashes


@dataclass(frozen=True)
class Member:
    subscriber_id: int
    email: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)


def subscribed_ids(list_id: int) -> Any:
    """A SELECT of the subscriber ids now subscribed to the list (to freeze a send's recipients)."""
    return select(memberships.c.subscriber_id).where(
        memberships.c.list_id == list_id, memberships.c.status == "subscribed").order_by(memberships.c.subscriber_id)


def subscribed_members(conn: Connection, list_id: int) -> Subquery:
    """The list's subscribed, unsuppressed members, as a subquery a segment narrows (mailer/segments.py).

    Columns: subscriber_id, email, fields (JSON), subscribed_at. Suppression is kept
    by address hash, which SQL cannot compute, so the suppressed are found here and
    left out by id, in one bound parameter.
    """
    query = (select(subscribers.c.id.label("subscriber_id"), subscribers.c.email, subscribers.c.fields,
                    memberships.c.subscribed_at)
             .select_from(subscribers.join(memberships, memberships.c.subscriber_id == subscribers.c.id))
             .where(memberships.c.list_id == list_id, memberships.c.status == "subscribed"))
    if any_suppressed(conn):
        keys = conn.execute(select(subscribers.c.id, subscribers.c.email_key).select_from(
            subscribers.join(memberships)).where(memberships.c.list_id == list_id,
                                                 memberships.c.status == "subscribed")).all()
        hashes = {i: address_hash(k) for i, k in keys}
        blocked = suppressed_hashes(conn, hashes.values())
        left_out = [i for i, h in hashes.items() if h in blocked]
        if left_out:
            query = query.where(not_(in_values(conn, subscribers.c.id, left_out)))
    return query.subquery("members")


def status_counts(conn: Connection, list_id: int) -> dict[str, int]:
    query = select(memberships.c.status, func.count()).where(memberships.c.list_id == list_id).group_by(
        memberships.c.status)
    return {status: int(n) for status, n in conn.execute(query)}


def eligible(conn: Connection, list_id: int, ids: Iterable[int | None]) -> dict[int, Member | str]:
    """For each subscriber id: the Member to mail now, or why not (they left, were suppressed or forgotten)."""
    wanted = [i for i in ids if i is not None]
    rows = conn.execute(
        select(subscribers.c.id, subscribers.c.email, subscribers.c.email_key, subscribers.c.name,
               subscribers.c.fields, memberships.c.status)
        .select_from(subscribers.outerjoin(memberships, and_(
            memberships.c.subscriber_id == subscribers.c.id, memberships.c.list_id == list_id)))
        .where(in_values(conn, subscribers.c.id, wanted))).all()
    blocked = suppressed_hashes(conn, (address_hash(r.email_key) for r in rows)) if any_suppressed(conn) else set()
    out: dict[int, Member | str] = {i: "forgotten" for i in wanted}
    for row in rows:
        if address_hash(row.email_key) in blocked:
            out[row.id] = "suppressed"
        elif row.status != "subscribed":
            out[row.id] = "unsubscribed" if row.status == "unsubscribed" else f"not subscribed ({row.status})"
        else:
            out[row.id] = Member(row.id, row.email, row.name, dict(row.fields))
    return out


def suppressed_among_subscribed(conn: Connection, list_id: int) -> int:
    """How many subscribed members are suppressed (they will be skipped)."""
    if not any_suppressed(conn):
        return 0
    keys = conn.execute(select(subscribers.c.email_key).select_from(subscribers.join(memberships)).where(
        memberships.c.list_id == list_id, memberships.c.status == "subscribed")).scalars()
    return len(suppressed_hashes(conn, (address_hash(k) for k in keys)))
