"""The per-recipient delivery ledger: the one module that moves `deliveries` rows during a send.

A row goes pending -> sending -> sent | failed, or pending -> skipped (the person
left before their turn). What keeps it true after any crash:

- Runs. Every process running a send registers a run (`send_runs`) and beats its
  heart. Rows it claims stay `pending`, carrying its `run_id`: claimed is not yet
  handed over. A row is claimable when it has no run or its run is no longer
  alive (ended, silent for LEASE seconds, or a dead process on this host), so
  rows claimed by a run killed with -9 go back to work by themselves.
- One transport call, one row `sending`. A worker marks its row `sending` and
  commits right before it calls the transport, and commits the outcome right
  after, before its next call. So after a crash, rows left `sending` are at most
  the calls that were really in flight: at most one per worker.
- Only a call whose outcome is truly unknown leaves a row `sending` on purpose
  (an ambiguous transport error); such rows are "unknown": never resent unless
  asked (`reset_unknown`), and an SES event naming the message settles them.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, bindparam, func, or_, select, update

from subscribers import Database, run_in_transaction

from .schema import deliveries, send_runs

LEASE = 30.0  # seconds without a heartbeat after which a run is taken for dead
HEARTBEAT = 5.0
WRITE_PATIENCE = 300.0  # seconds an outcome write waits out a busy or unreachable database

T = TypeVar("T")
HOST = socket.gethostname()


@dataclass(frozen=True)
class Outcome:
    """What happened to one row; `state` is what the row becomes."""

    delivery_id: int
    state: str  # sent | failed | skipped | sending (unknown) | pending (given back)
    message_id: str | None = None
    error: str | None = None
    sent_at: dt.datetime | None = None
    # The state it is recorded from: a row an SES event settled meanwhile (sending -> sent)
    # is not put back to unknown by a late outcome.
    was: str = "sending"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def counts(conn: Connection, send_id: int) -> dict[str, int]:
    """The send's rows by state (`sending` is what reports call unknown)."""
    query = select(deliveries.c.state, func.count()).where(deliveries.c.send_id == send_id).group_by(
        deliveries.c.state)
    return {state: int(n) for state, n in conn.execute(query)}


# --- runs ---------------------------------------------------------------------------------------------


def begin_run(db: Database, send_id: int) -> int:
    with db.begin() as conn:
        return int(conn.execute(send_runs.insert().values(
            send_id=send_id, host=HOST[:255], pid=os.getpid(), started_at=utcnow(),
            heartbeat=time.time())).inserted_primary_key[0])  # type: ignore[index]


def beat(db: Database, run_id: int) -> None:
    with db.begin() as conn:
        conn.execute(update(send_runs).where(send_runs.c.id == run_id).values(heartbeat=time.time()))


def end_run(db: Database, run_id: int) -> None:
    """Give back the rows claimed and never handed over; the run is over."""
    def write(conn: Connection) -> None:
        conn.execute(update(deliveries).where(deliveries.c.run_id == run_id, deliveries.c.state == "pending")
                     .values(run_id=None))
        conn.execute(update(send_runs).where(send_runs.c.id == run_id).values(ended_at=utcnow()))
    patiently(db, write)


def live_runs(conn: Connection, send_id: int) -> list[int]:
    """The runs of a send that may still be working: not ended, heard from lately, not a dead process here."""
    rows = conn.execute(select(send_runs.c.id, send_runs.c.host, send_runs.c.pid).where(
        send_runs.c.send_id == send_id, send_runs.c.ended_at.is_(None),
        send_runs.c.heartbeat > time.time() - LEASE))
    return [r.id for r in rows if not (r.host == HOST and not _process_alive(r.pid))]


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _unowned(conn: Connection, send_id: int) -> Any:
    live = live_runs(conn, send_id)
    return or_(deliveries.c.run_id.is_(None), deliveries.c.run_id.not_in(live)) if live else True


# --- claiming and moving rows --------------------------------------------------------------------------


def claim(db: Database, send_id: int, run_id: int, size: int) -> list[tuple[int, int | None]]:
    """Up to `size` pending rows nobody alive holds, now held by this run (still `pending`)."""
    def write(conn: Connection) -> list[tuple[int, int | None]]:
        free = (select(deliveries.c.id)
                .where(deliveries.c.send_id == send_id, deliveries.c.state == "pending", _unowned(conn, send_id))
                .order_by(deliveries.c.id).limit(size)
                .with_for_update(skip_locked=True))  # PostgreSQL: processes never share a row
        claimed = conn.execute(
            update(deliveries).where(deliveries.c.id.in_(free.scalar_subquery()))
            .values(run_id=run_id)
            .returning(deliveries.c.id, deliveries.c.subscriber_id)).all()
        return sorted((int(i), s) for i, s in claimed)
    return patiently(db, write)


def pending_left(db: Database, send_id: int) -> int:
    """Rows still to send, whoever holds them."""
    with db.begin(read_only=True) as conn:
        return int(conn.execute(select(func.count()).where(
            deliveries.c.send_id == send_id, deliveries.c.state == "pending")).scalar_one())


_MARK = (update(deliveries)
         .where(deliveries.c.id == bindparam("d_id"), deliveries.c.state == "pending",
                deliveries.c.run_id == bindparam("d_run"))
         .values(state="sending", attempts=deliveries.c.attempts + 1, updated_at=bindparam("d_now")))


def mark_sending(db: Database, delivery_id: int, run_id: int) -> bool:
    """Commit the row as `sending` before its transport call. False: the row is no longer ours to send."""
    params = {"d_id": delivery_id, "d_run": run_id, "d_now": utcnow()}
    return bool(patiently(db, lambda conn: conn.execute(_MARK, params).rowcount == 1))


def give_back(db: Database, delivery_id: int) -> None:
    """A pending row this run will not try again (refused for now every time): anyone may claim it."""
    patiently(db, lambda conn: conn.execute(update(deliveries).where(
        deliveries.c.id == delivery_id, deliveries.c.state == "pending").values(run_id=None)))


_RECORD = (update(deliveries).where(deliveries.c.id == bindparam("d_id"), deliveries.c.state == bindparam("d_was"))
           .values(state=bindparam("d_state"), message_id=bindparam("d_mid"), error=bindparam("d_error"),
                   sent_at=bindparam("d_sent"), updated_at=bindparam("d_now")))


def record(db: Database, outcomes: list[Outcome]) -> None:
    """Make outcomes durable, waiting out a busy database: a sent message must not stay unknown."""
    if not outcomes:
        return
    now = utcnow()
    params = [{"d_id": o.delivery_id, "d_state": o.state, "d_mid": o.message_id, "d_error": o.error,
               "d_sent": o.sent_at, "d_now": now, "d_was": o.was} for o in outcomes]
    patiently(db, lambda conn: conn.execute(_RECORD, params))


def reset_unknown(db: Database, send_id: int) -> int:
    """--retry-unknown: rows left `sending` by runs no longer alive go back to `pending` (they may duplicate)."""
    with db.begin() as conn:
        return int(conn.execute(update(deliveries).where(
            deliveries.c.send_id == send_id, deliveries.c.state == "sending", _unowned(conn, send_id))
            .values(state="pending", run_id=None, updated_at=utcnow())).rowcount)


def patiently(db: Database, write: Callable[[Connection], T]) -> T:
    """One write transaction that waits out a busy database (up to WRITE_PATIENCE s): a sent
    message must not stay unknown because an import held the lock (subscribers.run_in_transaction)."""
    return run_in_transaction(db, write, deadline=WRITE_PATIENCE)
