"""One person's SES events: shown on request (GDPR access), erased on request (GDPR erasure)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from subscribers import Database, as_utc, normalise

from .schema import events, sends


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


def forget_events(db: Database, email: str) -> int:
    """Erase the address, the raw payloads and the details (a DSN quotes the address) of its events.

    What happened, when, and to which send stays, so a send's report keeps its counts.
    """
    address = normalise(email, held=True)
    with db.begin() as conn:
        result = conn.execute(events.update().where(events.c.email_hash == address.hash)
                              .values(email=None, raw=None, detail={}))
        return int(result.rowcount)
