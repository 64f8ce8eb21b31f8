"""`newsletter report SLUG`: per send of an issue, the ledger and its SES events counted; who is in which state.

Event counts are distinct recipients of the send with at least one such event
(design §4). Rates are against messages sent. SES reviews an account whose
bounce rate passes 5 % or complaint rate passes 0.1 %, and counts only hard
bounces in the bounce rate, and not those to addresses on the account's
suppression list (SES refuses them itself), so that is what is flagged.
"""
from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import Connection, and_, column, distinct, func, or_, select, table

from subscribers import Database, as_utc

from .errors import MailerError
from .ledger import counts as ledger_counts
from .schema import deliveries, events, sends

BOUNCE_LIMIT = 0.05
COMPLAINT_LIMIT = 0.001
# SES's subtype for a bounce it made itself because the address is on the account's
# suppression list: not counted in the account's bounce rate (SES developer guide,
# "Using the account-level suppression list").
ON_SUPPRESSION_LIST = "OnAccountSuppressionList"

# The states `report` names -> the ledger's. `unknown` is a row left `sending`: handed
# to SES or not, nobody knows yet (an SES event settles it; --retry-unknown resends it).
STATES = {"sent": "sent", "failed": "failed", "pending": "pending", "unknown": "sending", "skipped": "skipped"}

_HARD = and_(events.c.kind == "bounce", events.c.hard.is_(True))
# report key -> which events count for it
EVENT_COUNTS = {
    "delivered": events.c.kind == "delivery",
    "bounced_hard": _HARD,
    "bounced_soft": and_(events.c.kind == "bounce", events.c.hard.is_(False)),
    "complained": events.c.kind == "complaint",
    "unsubscribed": events.c.kind == "unsubscribe",
}
_RATED_BOUNCES = and_(_HARD, or_(events.c.bounce_subtype.is_(None), events.c.bounce_subtype != ON_SUPPRESSION_LIST))

# The address lives with the subscribers. They export no look-up by id, and one
# streamed join is what lets a million rows out without holding them: this names
# only the two columns read (the ledger's foreign key names the same table).
_people = table("subscribers", column("id"), column("email"))

CSV_HEADER = ("email", "state", "reason", "message_id", "updated_at")


class SendReport(dict[str, Any]):
    """One send's report: exactly design §4's JSON object (other tools read it).

    `rated_bounces` rides beside it, not in it: the hard bounces SES counts in its
    bounce rate (not those it made for addresses on the account's suppression list).
    """

    rated_bounces: int = 0


def report(db: Database, issue: str) -> list[SendReport]:
    """Every send of the issue, oldest first; `rates()` and `warnings()` derive the rest."""
    with db.begin(read_only=True) as conn:  # a report must not take the write lock from a running send
        return [report_row(conn, send) for send in conn.execute(
            select(sends).where(sends.c.issue == issue).order_by(sends.c.id))]


def report_row(conn: Connection, send: Any) -> SendReport:
    counts = ledger_counts(conn, send.id)
    found = _event_counts(conn, send.id)
    row = SendReport(
        id=send.id, issue=send.issue, list=send.list_name,
        segment=send._mapping.get("segment") or None,  # '' in the table: the whole list
        state=send.state, recipients=sum(counts.values()),
        **{name: counts.get(state, 0) for name, state in STATES.items()},
        **{key: found[key] for key in EVENT_COUNTS})
    row.rated_bounces = found["rated_bounces"]
    return row


def _event_counts(conn: Connection, send_id: int) -> dict[str, int]:
    conditions = {**EVENT_COUNTS, "rated_bounces": _RATED_BOUNCES}
    columns = [func.count(distinct(events.c.delivery_id)).filter(condition).label(key)
               for key, condition in conditions.items()]
    found = conn.execute(select(*columns).where(events.c.send_id == send_id)).one()
    return {key: int(getattr(found, key) or 0) for key in conditions}


def rates(row: dict[str, Any]) -> tuple[float, float]:
    """(bounce rate, complaint rate) of a report row against messages sent, as SES counts them."""
    sent = row["sent"]
    bounces = getattr(row, "rated_bounces", row["bounced_hard"])  # a plain dict (say, read back from JSON)
    return (bounces / sent, row["complained"] / sent) if sent else (0.0, 0.0)


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


# --- who is in which state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientRow:
    """One person of a send in one state. `email` is empty for a forgotten person."""

    email: str
    state: str  # as `report` names it: unknown, not sending
    reason: str  # the ledger's error: why it failed or was skipped
    message_id: str
    updated_at: str  # ISO 8601, UTC
    list: str


def recipients(db: Database, issue: str, state: str, *, chunk: int = 1000,
               send_id: int | None = None) -> Iterator[RecipientRow]:
    """The people of the issue's sends (or of its send `send_id` alone) in `state` (a key of STATES), by send
    then ledger order, streamed."""
    if state not in STATES:
        raise MailerError(f"unknown state {state!r}: one of {', '.join(STATES)}")
    query = (select(_people.c.email, deliveries.c.error, deliveries.c.message_id, deliveries.c.updated_at,
                    sends.c.list_name)
             .select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id)
                          .outerjoin(_people, _people.c.id == deliveries.c.subscriber_id))
             .where(sends.c.issue == issue, deliveries.c.state == STATES[state])
             .order_by(sends.c.id, deliveries.c.id))
    if send_id is not None:
        query = query.where(sends.c.id == send_id)
    # A long read: writers go on (read_only), and rows come in chunks (a server-side
    # cursor on PostgreSQL), never all at once.
    with db.begin(read_only=True) as conn:
        for row in conn.execution_options(yield_per=chunk).execute(query):
            yield RecipientRow(row.email or "", state, row.error or "", row.message_id or "",
                               _iso(row.updated_at), row.list_name)


def _iso(value: dt.datetime | None) -> str:
    return as_utc(value).isoformat() if value is not None else ""


def write_recipients_csv(db: Database, issue: str, state: str, out: IO[str], *, send_id: int | None = None) -> int:
    """`report SLUG --recipients STATE --csv`: design §4's header, then one row per person; returns the rows."""
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    count = 0
    for person in recipients(db, issue, state, send_id=send_id):
        writer.writerow([safe_cell(cell) for cell in
                         (person.email, person.state, person.reason, person.message_id, person.updated_at)])
        count += 1
    return count


def safe_cell(value: str) -> str:
    """The cell as text a spreadsheet shows, never runs: `=HYPERLINK(…)` comes out as `'=HYPERLINK(…)`
    (the subscribers' export's rule: one rule for every CSV we write)."""
    from subscribers import neutralise
    return neutralise(value)


def timeline(db: Database, issue: str, *, send_id: int | None = None) -> dict[str, dict[str, list[Any]]]:
    """Per send ("issue -> list"; or its send `send_id` alone): the times of messages sent and of each kind
    of event, in order."""
    out: dict[str, dict[str, list[Any]]] = {}
    query = select(sends).where(sends.c.issue == issue).order_by(sends.c.id)
    if send_id is not None:
        query = query.where(sends.c.id == send_id)
    with db.begin(read_only=True) as conn:
        for send in conn.execute(query):
            series: dict[str, list[Any]] = {"sent": list(conn.execute(
                select(deliveries.c.sent_at).where(deliveries.c.send_id == send.id, deliveries.c.state == "sent")
                .order_by(deliveries.c.sent_at)).scalars())}
            for key in ("delivered", "bounced_hard", "bounced_soft", "complained"):
                series[key] = list(conn.execute(
                    select(func.min(events.c.occurred_at)).where(events.c.send_id == send.id, EVENT_COUNTS[key])
                    .group_by(events.c.delivery_id).order_by(func.min(events.c.occurred_at))).scalars())
            out[f"{send.issue} -> {send.list_name}"] = series
    return out
