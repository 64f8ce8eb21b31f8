"""One person's SES events: shown on request (GDPR access), erased on request (GDPR erasure)."""
from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Connection, func, or_, select

from subscribers import Address, Database, as_utc, display_address, normalise

from .schema import deliveries, events, inbound_errors, sends

FORGOTTEN = "[forgotten]"


def events_of(db: Database, email: str) -> list[dict[str, Any]]:
    """Every event held about the address, oldest first, with the send it belongs to."""
    address = normalise(email, held=True)
    query = (select(events.c.kind, events.c.occurred_at, events.c.hard, events.c.bounce_type,
                    events.c.bounce_subtype, events.c.detail, sends.c.issue, sends.c.list_name)
             .select_from(events.outerjoin(sends, sends.c.id == events.c.send_id))
             .where(events.c.email_hash == address.hash).order_by(events.c.occurred_at, events.c.id))
    with db.begin() as conn:
        return [_entry(row) for row in conn.execute(query)]


def _entry(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": row.kind, "at": as_utc(row.occurred_at).isoformat(),
                           "send": f"{row.issue} -> {row.list_name}" if row.issue else None}
    if row.kind == "bounce":
        out.update(hard=bool(row.hard), bounce_type=row.bounce_type, bounce_subtype=row.bounce_subtype)
    out.update({k: v for k, v in (row.detail or {}).items() if k in ("status", "diagnostic", "complaintFeedbackType")})
    return out


def forget_person(db: Database, email: str) -> int:
    """`subscribers forget` and the console's Forget: everything about a person, then the mailer's traces.

    The person's ledger rows stay (a send's counts must not change) and lose their link to the
    person by their foreign key (ON DELETE SET NULL): SQLite gives a deleted row's id to the next
    person added, who must not inherit the forgotten person's sends. Returns the events erased.
    """
    from subscribers import forget
    forget(db, email)
    return forget_events(db, email)


def forget_events(db: Database, email: str) -> int:
    """Erase the address wherever the mailer's tables hold it; the number of events erased.

    Events: the address, the raw payloads and the details (a DSN quotes the address); what
    happened, when, and to which send stays, so a send's report keeps its counts. Payloads
    kept unread in inbound_errors that name the address are deleted (a raw body cannot be
    trusted to be redacted), and a delivery's error text loses the address.
    """
    address = normalise(email, held=True)
    spelled = _spellings(address)
    with db.begin() as conn:
        result = conn.execute(events.update().where(events.c.email_hash == address.hash)
                              .values(email=None, raw=None, detail={}))
        for row in _naming(conn, inbound_errors, (inbound_errors.c.body, inbound_errors.c.error), address, spelled):
            conn.execute(inbound_errors.delete().where(inbound_errors.c.id == row.id))
        for row in _naming(conn, deliveries, (deliveries.c.error,), address, spelled):
            conn.execute(deliveries.update().where(deliveries.c.id == row.id)
                         .values(error=spelled.sub(FORGOTTEN, row.error)))
        return int(result.rowcount)


def _spellings(address: Address) -> re.Pattern[str]:
    """The address as a payload may write it, in any case: punycode or Unicode domain, and the
    Unicode one JSON-escaped (\\u00fc)."""
    shown = display_address(address.email)
    forms = {address.email, shown, json.dumps(shown)[1:-1]}
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)), re.IGNORECASE)


def _naming(conn: Connection, table: Any, columns: tuple[Any, ...], address: Address,
            spelled: re.Pattern[str]) -> list[Any]:
    """Rows whose text columns hold the address: narrowed in SQL by its local part (ASCII, so
    lower() agrees on every database), then matched exactly here."""
    local = address.key.rpartition("@")[0]
    rows = conn.execute(select(table.c.id, *columns).where(
        or_(*(func.lower(c).contains(local, autoescape=True) for c in columns))))
    return [row for row in rows if any(spelled.search(getattr(row, c.name) or "") for c in columns)]
