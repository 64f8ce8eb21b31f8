"""One person's part in the sends: their ledger rows, newest first (the console's person page, design §13).

Their SES events are mailer.history.events_of (by address hash); this is the other half, by
subscriber id, through the index of migration m0006.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from subscribers import Database, as_utc

from .schema import deliveries, sends

RECENT = 100


def deliveries_of(db: Database, subscriber_id: int, limit: int = RECENT) -> list[dict[str, Any]]:
    """The person's latest `limit` ledger rows with their send: state, SES message id, error, times."""
    query = (select(deliveries.c.state, deliveries.c.message_id, deliveries.c.error, deliveries.c.updated_at,
                    deliveries.c.sent_at, sends.c.id.label("send_id"), sends.c.issue, sends.c.list_name,
                    sends.c.segment)
             .select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id))
             .where(deliveries.c.subscriber_id == subscriber_id)
             .order_by(deliveries.c.id.desc()).limit(limit))
    with db.begin(read_only=True) as conn:
        return [{"send_id": row.send_id, "issue": row.issue, "list": row.list_name, "segment": row.segment or None,
                 "state": row.state, "message_id": row.message_id, "error": row.error,
                 "sent_at": as_utc(row.sent_at) if row.sent_at else None, "updated_at": as_utc(row.updated_at)}
                for row in conn.execute(query)]
