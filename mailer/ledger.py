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

import contextlib
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select, update

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


_SQLITE_WRITERS: dict[int, Any] = {}  # engine -> the lock its worker threads write under


class Writer:
    """One worker thread's own connection for the writes it makes per message.

    Per message a worker writes its last outcome and its next mark. Through
    SQLAlchemy that costs four times what the driver does (pool check-out, the BEGIN
    hook, statement look-up): at hundreds of messages a second it was most of the
    sender's own CPU. So the two statements are compiled once and run on a
    connection the thread keeps. Anything unexpected (a busy or lost
    database) falls back to the ordinary path, which waits and reconnects; both
    statements are guarded by the row's state, so running them again is harmless.
    """

    def __init__(self, db: Database):
        self.db = db
        dialect = db.engine.dialect
        self.sqlite = dialect.name == "sqlite"
        self._record, self._mark = _Compiled(_RECORD, dialect), _Compiled(_MARK, dialect)
        self._step = _Compiled(_STEP, dialect)
        self._conn: Any = None
        # SQLite takes one writer at a time: queueing the process's own writers here is far
        # cheaper than letting them meet in SQLite's busy handler, which sleeps and polls.
        self._serial = _SQLITE_WRITERS.setdefault(id(db.engine), threading.Lock()) if self.sqlite \
            else contextlib.nullcontext()

    def record(self, outcomes: list[Outcome]) -> None:
        if outcomes:
            self._write([_params(o, utcnow()) for o in outcomes], None)

    def record_and_mark(self, outcome: Outcome | None, delivery_id: int, run_id: int) -> bool:
        """Make `outcome` durable (if any) and mark the next row `sending`, in one transaction."""
        now = utcnow()
        return bool(self._write([_params(outcome, now)] if outcome else [],
                                {"d_id": delivery_id, "d_run": run_id, "d_now": now}))

    def close(self) -> None:
        if self._conn is not None:
            if not self.sqlite:
                self._conn.driver_connection.autocommit = False  # as the pool hands connections out
            self._conn.close()  # back to the pool
            self._conn = None

    def _write(self, records: list[dict[str, Any]], mark: dict[str, Any] | None) -> bool | None:
        try:
            return self._fast(records, mark)
        except Exception:  # noqa: BLE001  (busy, locked, lost: the ordinary path waits, retries, reconnects)
            self._discard()

        def write(conn: Connection) -> bool | None:
            if records:
                conn.execute(_RECORD, records)
            return conn.execute(_MARK, mark).rowcount == 1 if mark else None
        return patiently(self.db, write)

    def _fast(self, records: list[dict[str, Any]], mark: dict[str, Any] | None) -> bool | None:
        # Each statement commits by itself (autocommit): the outcome first, then the mark. The
        # protocol needs their order, not their atomicity (a crash between them leaves the next
        # row pending, as if never claimed), and every BEGIN and COMMIT saved is a round trip
        # and a hand-over of the GIL per message.
        if self._conn is None:
            self._conn = self.db.engine.raw_connection()
            if not self.sqlite:  # SQLite connections are autocommit already (subscribers.db)
                self._conn.driver_connection.autocommit = True
        with self._serial:
            return self._statements(records, mark)

    def _statements(self, records: list[dict[str, Any]], mark: dict[str, Any] | None) -> bool | None:
        cursor = self._conn.cursor()
        try:
            if len(records) == 1 and mark is not None:  # the common case: one statement
                cursor.execute(self._step.sql, self._step.args({**records[0], "n_id": mark["d_id"],
                                                                "d_run": mark["d_run"]}))
                return mark["d_id"] in {row[0] for row in cursor.fetchall()}
            for values in records:
                cursor.execute(self._record.sql, self._record.args(values))
            if mark is None:
                return None
            cursor.execute(self._mark.sql, self._mark.args(mark))
            return bool(cursor.rowcount == 1)
        finally:
            cursor.close()

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
            except Exception:  # noqa: BLE001,S110
                pass
            self._conn = None


class _Compiled:
    """A statement compiled once for a dialect: its SQL, and how to turn values into the driver's arguments."""

    def __init__(self, statement: Any, dialect: Any):
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.order: list[str] | None = list(compiled.positiontup) if compiled.positiontup else None
        self.fixed = {k: v for k, v in compiled.params.items() if v is not None}
        self.convert = {k: p for k in compiled.params
                        if (p := compiled.binds[k].type._cached_bind_processor(dialect)) is not None}

    def args(self, values: dict[str, Any]) -> Any:
        merged = {**self.fixed, **values}
        for key, convert in self.convert.items():
            if merged.get(key) is not None:
                merged[key] = convert(merged[key])
        return tuple(merged[k] for k in self.order) if self.order is not None else merged


def _params(outcome: Outcome, now: dt.datetime) -> dict[str, Any]:
    return {"d_id": outcome.delivery_id, "d_state": outcome.state, "d_mid": outcome.message_id,
            "d_error": outcome.error, "d_sent": outcome.sent_at, "d_now": now, "d_was": outcome.was}


def give_back(db: Database, delivery_id: int) -> None:
    """A pending row this run will not try again (refused for now every time): anyone may claim it."""
    patiently(db, lambda conn: conn.execute(update(deliveries).where(
        deliveries.c.id == delivery_id, deliveries.c.state == "pending").values(run_id=None)))


_RECORD = (update(deliveries).where(deliveries.c.id == bindparam("d_id"), deliveries.c.state == bindparam("d_was"))
           .values(state=bindparam("d_state"), message_id=bindparam("d_mid"), error=bindparam("d_error"),
                   sent_at=bindparam("d_sent"), updated_at=bindparam("d_now")))


# _RECORD of the last row and _MARK of the next in one statement: every statement saved is a
# hand-over of the GIL and a commit per message. RETURNING says whether the next row was marked.
_NEXT = deliveries.c.id == bindparam("n_id")
_STEP = (update(deliveries)
         .where(or_(and_(_NEXT, deliveries.c.state == "pending", deliveries.c.run_id == bindparam("d_run")),
                    and_(deliveries.c.id == bindparam("d_id"), deliveries.c.state == bindparam("d_was"))))
         .values(state=case((_NEXT, "sending"), else_=bindparam("d_state")),
                 attempts=case((_NEXT, deliveries.c.attempts + 1), else_=deliveries.c.attempts),
                 message_id=case((_NEXT, deliveries.c.message_id), else_=bindparam("d_mid")),
                 error=case((_NEXT, deliveries.c.error), else_=bindparam("d_error")),
                 sent_at=case((_NEXT, deliveries.c.sent_at), else_=bindparam("d_sent")),
                 updated_at=bindparam("d_now"))
         .returning(deliveries.c.id))


def record(db: Database, outcomes: list[Outcome]) -> None:
    """Make outcomes durable, waiting out a busy database: a sent message must not stay unknown."""
    if not outcomes:
        return
    now = utcnow()
    params = [_params(o, now) for o in outcomes]
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
