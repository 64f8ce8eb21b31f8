"""Sends as jobs (design §12): scheduled, queued, running, paused, finished, cancelled, expired, stopped.

The library side of `send --at`, `sends ls|pause|resume|cancel` and the worker: a
send row carries its state, when it is due (`at`), the end of its window
(`expires_at`) and why it stopped (`reason`). Pausing or cancelling only changes
the row; every run of the send watches it (mailer.sending) and stops within a
second or two, its in-flight messages finishing and the rest staying `pending`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from subscribers import Database, as_utc

from . import ledger
from .errors import MailerError
from .reports import report_row
from .schema import sends

# What each state means to a worker.
WAITING = ("scheduled", "queued", "paused")  # paused only with reason "quota": a worker resumes it
ENDED = ("finished", "cancelled", "expired")
QUOTA = "quota"  # the reason of a send paused because the SES 24-hour quota ran out
QUOTA_RETRY = dt.timedelta(hours=1)  # SES's window rolls: look again this often


class SendNotFound(MailerError):
    """No send matches a SEND reference (id or SLUG/LIST[/SEGMENT])."""


class SendStateError(MailerError):
    """The send cannot go where it was asked to (resume a finished send, pause a cancelled one)."""


@dataclass(frozen=True)
class Due:
    """A send a worker should run now."""

    id: int
    issue: str
    list_name: str
    segment: str | None
    issue_path: str | None
    state: str
    content_hash: str | None = None  # the built issue it was scheduled or started with, if any


def send_id_of(conn: Connection, issue: str, list_name: str, segment: str = "") -> int | None:
    """The send of (issue, list, segment) if there is one: the three are unique together."""
    found = conn.execute(select(sends.c.id).where(
        sends.c.issue == issue, sends.c.list_name == list_name, sends.c.segment == segment)).scalar()
    return int(found) if found is not None else None


def find_send(db: Database, ref: str) -> int:
    """A send's id from its id, or SLUG/LIST or SLUG/LIST/SEGMENT (the latest such send)."""
    ref = ref.strip()
    with db.begin(read_only=True) as conn:
        if ref.isdigit():
            found = conn.execute(select(sends.c.id).where(sends.c.id == int(ref))).scalar()
        else:
            parts = ref.split("/")
            if len(parts) not in (2, 3) or not all(parts):
                raise SendNotFound(f"{ref!r} is not a send: give its id (see `newsletter sends ls`), "
                                   "or SLUG/LIST, or SLUG/LIST/SEGMENT")
            found = send_id_of(conn, parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    if found is None:
        raise SendNotFound(f"no send {ref!r} (see `newsletter sends ls`)")
    return int(found)


def list_sends(db: Database, send_id: int | None = None) -> list[dict[str, Any]]:
    """Every send (or the one), newest first: the report's object (design §4) plus `at`, and the
    `reason` people read beside its state (not part of the JSON: see `shown_as_json`)."""
    query = select(sends).order_by(sends.c.id.desc())
    if send_id is not None:
        query = query.where(sends.c.id == send_id)
    with db.begin(read_only=True) as conn:
        return [{**report_row(conn, send), "at": iso(send.at), "reason": send.reason}
                for send in conn.execute(query).all()]


def shown_as_json(row: dict[str, Any]) -> dict[str, Any]:
    """A send as `sends ls --json` and the API print it (design §12)."""
    return {k: v for k, v in row.items() if k != "reason"}


def schedule(conn: Connection, send_id: int, at: dt.datetime, expires_at: dt.datetime | None,
             issue_path: str | None, *, queued: bool = False) -> None:
    """Make a send (created unfrozen) wait for a worker at `at`; `queued`: for the next worker, now
    (design §12: what the console starts), with no window to miss."""
    conn.execute(update(sends).where(sends.c.id == send_id).values(
        state="queued" if queued else "scheduled", at=at, expires_at=None if queued else expires_at,
        issue_path=issue_path, reason=None))


# The states each hand action takes a send from: `sends pause|resume|cancel` and the console's buttons.
MOVES_FROM = {
    "pause": ("scheduled", "queued", "running", "stopped"),
    "resume": ("paused", "stopped"),
    "cancel": ("scheduled", "queued", "running", "paused", "stopped"),
}


def pause(db: Database, send_id: int, reason: str = "paused by hand") -> str:
    return _move(db, send_id, "paused", MOVES_FROM["pause"], reason)


def resume(db: Database, send_id: int) -> str:
    """A paused or stopped send goes back to the workers (now)."""
    return _move(db, send_id, "queued", MOVES_FROM["resume"], None, at=_now())


def cancel(db: Database, send_id: int) -> str:
    """For good: what was sent stays recorded; rows never sent stay `pending`."""
    return _move(db, send_id, "cancelled", MOVES_FROM["cancel"], "cancelled by hand")


def _move(db: Database, send_id: int, to: str, allowed: tuple[str, ...], reason: str | None,
          **extra: Any) -> str:
    with db.begin() as conn:
        state = conn.execute(select(sends.c.state).where(sends.c.id == send_id)).scalar()
        if state is None:
            raise SendNotFound(f"no send {send_id}")
        if state == to:
            return to
        if state not in allowed:
            raise SendStateError(f"send {send_id} is {state}: it cannot be {to}")
        conn.execute(update(sends).where(sends.c.id == send_id).values(state=to, reason=reason, **extra))
        return to


def state_of(db: Database, send_id: int) -> str:
    with db.begin(read_only=True) as conn:
        return str(conn.execute(select(sends.c.state).where(sends.c.id == send_id)).scalar_one())


def iso(value: dt.datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def due(db: Database, now: dt.datetime) -> list[Due]:
    """What a worker should run now, oldest first; sends found past their window become `expired` here.

    Due: scheduled ones whose time has come, queued ones, quota-paused ones whose retry time has
    come, and running ones nobody runs any more (a worker killed with -9: its run stopped beating).
    """
    with db.begin() as conn:
        _expire(conn, now)
        rows = conn.execute(select(sends).where(or_(
            and_(sends.c.state.in_(("scheduled", "paused")), sends.c.at <= now,
                 or_(sends.c.state == "scheduled", sends.c.reason == QUOTA)),
            sends.c.state == "queued",
            sends.c.state == "running")).order_by(sends.c.at, sends.c.id)).all()
        out = []
        for row in rows:
            if row.state == "running" and ledger.live_runs(conn, row.id):
                continue  # someone is on it (several workers on PostgreSQL join instead: see run_due)
            out.append(Due(row.id, row.issue, row.list_name, row.segment or None, row.issue_path, row.state,
                           row.content_hash))
        return out


def _expire(conn: Connection, now: dt.datetime) -> None:
    late = conn.execute(select(sends.c.id, sends.c.expires_at).where(
        sends.c.state == "scheduled", sends.c.expires_at.is_not(None), sends.c.expires_at < now)).all()
    for send_id, expires_at in late:
        conn.execute(update(sends).where(sends.c.id == send_id, sends.c.state == "scheduled").values(
            state="expired", reason=f"its window ended at {iso(as_utc(expires_at))}; a worker found it at "
                                    f"{iso(now)}: nothing was sent"))


def take(db: Database, send_id: int, states: tuple[str, ...]) -> bool:
    """Mark a due send running (one transaction); False when another worker or a hand moved it first."""
    with db.begin() as conn:
        return bool(conn.execute(update(sends).where(sends.c.id == send_id, sends.c.state.in_(states))
                                 .values(state="running", reason=None)).rowcount)


def wait_for_quota(db: Database, send_id: int, now: dt.datetime) -> None:
    with db.begin() as conn:
        conn.execute(update(sends).where(sends.c.id == send_id, sends.c.state.in_(("running", "stopped")))
                     .values(state="paused", reason=QUOTA, at=now + QUOTA_RETRY))


def stopped(db: Database, send_id: int, reason: str) -> None:
    with db.begin() as conn:
        conn.execute(update(sends).where(sends.c.id == send_id, sends.c.state.in_(("running", "stopped")))
                     .values(state="stopped", reason=reason[:2000]))


def actions_of(state: str) -> set[str]:
    """The hand actions (pause, resume, cancel) a send in `state` may take: what the console offers."""
    return {action for action, allowed in MOVES_FROM.items() if state in allowed}
