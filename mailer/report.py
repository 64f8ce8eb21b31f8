"""`newsletter report SLUG`: one line (or JSON object) per send of an issue, from the ledger."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from subscribers import Database

from .schema import sends
from .sending import ledger_counts


def report(db: Database, issue: str) -> list[dict[str, Any]]:
    """Design §4's shape. Event counts come from SES events (bounce handling, a later release)."""
    out = []
    with db.begin() as conn:
        for send in conn.execute(select(sends).where(sends.c.issue == issue).order_by(sends.c.id)):
            counts = ledger_counts(conn, send.id)
            out.append({
                "issue": send.issue, "list": send.list_name,
                "recipients": sum(counts.values()),
                "sent": counts.get("sent", 0), "failed": counts.get("failed", 0),
                "pending": counts.get("pending", 0) + counts.get("sending", 0),
                "delivered": 0, "bounced_hard": 0, "bounced_soft": 0, "complained": 0, "unsubscribed": 0,
            })
    return out
