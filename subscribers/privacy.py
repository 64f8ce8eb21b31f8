"""What we hold about one person (GDPR access) and erasing it (GDPR erasure); what a shown URL hides."""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from .addresses import display_address, normalise
from .db import Database, iso
from .errors import SubscriberNotFound
from .people import find
from .schema import lists, memberships, signup_attempts, subscribers
from .suppression import suppress, suppression_of
from .suppression_lifts import forget_lifts


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
    """Erase name, fields, every membership and sign-up attempt; keep only a hash, so the address is
    never mailed again (the mailer's tables are erased by mailer.history.forget_events)."""
    address = normalise(email, held=True)
    with db.begin() as conn:
        person = find(conn, address)
        suppress(conn, address, "forgotten at the subscriber's request", "admin", keep_address=False)
        conn.execute(signup_attempts.delete().where(signup_attempts.c.bucket == "address",
                                                    signup_attempts.c.key_hash == address.hash))
        _forget_in_audit_log(conn, address)
        forget_lifts(conn, address)
        if person is None:
            return
        conn.execute(memberships.delete().where(memberships.c.subscriber_id == person.id))
        conn.execute(subscribers.delete().where(subscribers.c.id == person.id))


def _forget_in_audit_log(conn: Any, address: Any) -> None:
    """What the console and the API did stays in the audit log; the address it names does not."""
    from sqlalchemy import func, update

    from .accounts import audit_log
    forms = {address.key, display_address(address.email).lower()}
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)), re.I)
    for form in forms:
        rows = conn.execute(select(audit_log.c.id, audit_log.c.detail).where(
            func.lower(audit_log.c.detail).contains(form, autoescape=True))).all()
        for row_id, detail in rows:
            conn.execute(update(audit_log).where(audit_log.c.id == row_id)
                         .values(detail=pattern.sub("[forgotten]", detail)))
