"""`newsletter report SLUG`: per send of an issue, the ledger and its SES events counted.

Event counts are distinct recipients of the send with at least one such event
(design §4). Rates are against messages sent. SES reviews an account whose
bounce rate passes 5 % or complaint rate passes 0.1 %, and counts only hard
bounces in the bounce rate, so that is what is flagged.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, distinct, func, select

from subscribers import Database

from .schema import events, sends
from .sending import ledger_counts

BOUNCE_LIMIT = 0.05
COMPLAINT_LIMIT = 0.001

# report key -> which events count for it
EVENT_COUNTS = {
    "delivered": events.c.kind == "delivery",
    "bounced_hard": and_(events.c.kind == "bounce", events.c.hard.is_(True)),
    "bounced_soft": and_(events.c.kind == "bounce", events.c.hard.is_(False)),
    "complained": events.c.kind == "complaint",
    "unsubscribed": events.c.kind == "unsubscribe",
}


def report(db: Database, issue: str) -> list[dict[str, Any]]:
    """Exactly design §4's shape (other tools read it); `rates()` and `warnings()` derive the rest."""
    with db.begin() as conn:
        return [_row(conn, send) for send in conn.execute(
            select(sends).where(sends.c.issue == issue).order_by(sends.c.id))]


def _row(conn: Connection, send: Any) -> dict[str, Any]:
    counts = ledger_counts(conn, send.id)
    row: dict[str, Any] = {
        "issue": send.issue, "list": send.list_name,
        "recipients": sum(counts.values()),
        "sent": counts.get("sent", 0), "failed": counts.get("failed", 0),
        "pending": counts.get("pending", 0) + counts.get("sending", 0),
        **_event_counts(conn, send.id),
    }
    return row


def _event_counts(conn: Connection, send_id: int) -> dict[str, int]:
    columns = [func.count(distinct(events.c.delivery_id)).filter(condition).label(key)
               for key, condition in EVENT_COUNTS.items()]
    found = conn.execute(select(*columns).where(events.c.send_id == send_id)).one()
    return {key: int(getattr(found, key) or 0) for key in EVENT_COUNTS}


def rates(row: dict[str, Any]) -> tuple[float, float]:
    """(bounce rate, complaint rate) of a report row, against messages sent; hard bounces only, as SES counts."""
    sent = row["sent"]
    return (row["bounced_hard"] / sent, row["complained"] / sent) if sent else (0.0, 0.0)


def warnings(row: dict[str, Any]) -> list[str]:
    """What would put the SES account under review."""
    bounce_rate, complaint_rate = rates(row)
    out = []
    if bounce_rate > BOUNCE_LIMIT:
        out.append(f"bounce rate {bounce_rate:.1%} is over {BOUNCE_LIMIT:.0%}: "
                   "SES reviews accounts past this; clean the list before the next send")
    if complaint_rate > COMPLAINT_LIMIT:
        out.append(f"complaint rate {complaint_rate:.2%} is over {COMPLAINT_LIMIT:.1%}: "
                   "SES reviews accounts past this; check how these people were signed up")
    return out


def timeline(db: Database, issue: str) -> dict[str, dict[str, list[Any]]]:
    """Per send ("issue -> list"): the times of messages sent and of each kind of event, in order."""
    from .schema import deliveries
    out: dict[str, dict[str, list[Any]]] = {}
    with db.begin() as conn:
        for send in conn.execute(select(sends).where(sends.c.issue == issue).order_by(sends.c.id)):
            series: dict[str, list[Any]] = {"sent": list(conn.execute(
                select(deliveries.c.sent_at).where(deliveries.c.send_id == send.id, deliveries.c.state == "sent")
                .order_by(deliveries.c.sent_at)).scalars())}
            for key in ("delivered", "bounced_hard", "bounced_soft", "complained"):
                series[key] = list(conn.execute(
                    select(func.min(events.c.occurred_at)).where(events.c.send_id == send.id, EVENT_COUNTS[key])
                    .group_by(events.c.delivery_id).order_by(func.min(events.c.occurred_at))).scalars())
            out[f"{send.issue} -> {send.list_name}"] = series
    return out
