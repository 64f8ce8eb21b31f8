"""What we hold about one person (GDPR access) and erasing it (GDPR erasure)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .addresses import display_address, normalise
from .db import Database, iso
from .errors import SubscriberNotFound
from .people import find
from .schema import lists, memberships, subscribers
from .suppression import suppress, suppression_of


def show(db: Database, email: str) -> dict[str, Any]:
    """Everything held about one address, in the shape of design §4 (`email` as stored: ASCII)."""
    address = normalise(email, held=True)
    with db.begin() as conn:
        person = find(conn, address)
        reason = suppression_of(conn, address)
        if person is None:
            raise SubscriberNotFound(f"no subscriber {display_address(address.email)}"
                                     + (" (the address is suppressed and will not be mailed)" if reason else ""))
        rows = conn.execute(
            select(lists.c.name, memberships).select_from(memberships.join(lists))
            .where(memberships.c.subscriber_id == person.id).order_by(lists.c.name))
        return {
            "email": person.email,
            "name": person.name,
            "fields": dict(person.fields),
            "suppressed": reason is not None,
            "suppression_reason": reason,
            "lists": [_membership(r) for r in rows],
        }


def _membership(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"list": row.name, "status": row.status, "source": row.source}
    for key in ("subscribed_at", "confirmed_at", "unsubscribed_at"):
        out[key] = iso(getattr(row, key))
    return out


def forget(db: Database, email: str) -> None:
    """Erase name, fields and every membership; keep only a hash, so the address is never mailed again."""
    address = normalise(email, held=True)
    with db.begin() as conn:
        person = find(conn, address)
        suppress(conn, address, "forgotten at the subscriber's request", "admin", keep_address=False)
        if person is None:
            return
        conn.execute(memberships.delete().where(memberships.c.subscriber_id == person.id))
        conn.execute(subscribers.delete().where(subscribers.c.id == person.id))
