"""Sending an issue to a list: exactly once, paced, resumable.

1. `plan_send` reads what a send would do (nothing is written: --dry-run).
2. `start_send` creates the send and freezes its recipients into the ledger,
   or finds the send already there (running it again resumes it).
3. `run_send` claims small batches of pending rows (marking them `sending`,
   committed before anything is sent), mails them from worker threads at the
   limiter's pace, and records each outcome. Rows claimed but not attempted
   (Ctrl-C, a paused account) go back to `pending`; rows left `sending` by a
   crash are "unknown" and are resent only with `retry_unknown`.
On PostgreSQL several processes can run the same send: claims use
FOR UPDATE SKIP LOCKED, so no row is claimed twice.
"""
from __future__ import annotations

import datetime as dt
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from subscribers import (
    Database,
    Member,
    Tokens,
    eligible,
    get_list,
    status_counts,
    subscribed_ids,
    suppressed_among_subscribed,
)

from .errors import SendStopped, TransportError
from .message import MessageTemplate, Recipient
from .ratelimit import RateLimiter
from .schema import deliveries, sends
from .transports import Transport

MAX_ATTEMPTS = 5  # per message, for throttling and server errors
MAX_CONSECUTIVE_ERRORS = 20  # then something is wrong with the account, not the recipients


@dataclass
class Plan:
    issue: str
    list_name: str
    list_id: int
    send_id: int | None
    statuses: dict[str, int]  # the list's members by status, now
    suppressed: int  # subscribed but suppressed: will be skipped
    ledger: dict[str, int]  # an existing send's rows by state

    @property
    def to_send(self) -> int:
        if self.send_id is None:
            return self.statuses.get("subscribed", 0) - self.suppressed
        return self.ledger.get("pending", 0)


@dataclass
class SendResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0  # claimed, not attempted, back to pending
    stopped: str | None = None
    errors: dict[str, int] = field(default_factory=dict)


def _now() -> Any:
    return func.current_timestamp()


def ledger_counts(conn: Connection, send_id: int) -> dict[str, int]:
    query = select(deliveries.c.state, func.count()).where(deliveries.c.send_id == send_id).group_by(
        deliveries.c.state)
    return {state: int(n) for state, n in conn.execute(query)}


def plan_send(db: Database, issue: str, list_name: str) -> Plan:
    with db.begin() as conn:
        mailing_list = get_list(conn, list_name)
        send_id = conn.execute(select(sends.c.id).where(
            sends.c.issue == issue, sends.c.list_name == list_name)).scalar()
        return Plan(issue, list_name, mailing_list.id, send_id, status_counts(conn, mailing_list.id),
                    suppressed_among_subscribed(conn, mailing_list.id),
                    ledger_counts(conn, send_id) if send_id else {})


def start_send(db: Database, plan: Plan, subject: str) -> int:
    """Create the send and freeze its recipients, or return the existing one (resume)."""
    if plan.send_id is not None:
        return plan.send_id
    try:
        return _create_send(db, plan, subject)
    except IntegrityError:  # another process created it between our look and our insert: join it
        with db.begin() as conn:
            return int(conn.execute(select(sends.c.id).where(
                sends.c.issue == plan.issue, sends.c.list_name == plan.list_name)).scalar_one())


def _create_send(db: Database, plan: Plan, subject: str) -> int:
    with db.begin() as conn:
        existing = conn.execute(select(sends.c.id).where(
            sends.c.issue == plan.issue, sends.c.list_name == plan.list_name)).scalar()
        if existing is not None:  # another process started it meanwhile
            return int(existing)
        send_id = int(conn.execute(sends.insert().values(
            issue=plan.issue, list_id=plan.list_id, list_name=plan.list_name, subject=subject,
            state="running", created_at=_now())).inserted_primary_key[0])  # type: ignore[index]
        frozen = subscribed_ids(plan.list_id).add_columns(
            bindparam("s", send_id), bindparam("st", "pending"), bindparam("a", 0), _now())
        conn.execute(deliveries.insert().from_select(
            ["subscriber_id", "send_id", "state", "attempts", "updated_at"], frozen))
        return send_id


def _claim(db: Database, send_id: int, size: int) -> list[tuple[int, int | None]]:
    with db.begin() as conn:
        pending = (select(deliveries.c.id)
                   .where(deliveries.c.send_id == send_id, deliveries.c.state == "pending")
                   .order_by(deliveries.c.id).limit(size)
                   .with_for_update(skip_locked=True))  # PostgreSQL: workers never share a row
        claimed = conn.execute(
            update(deliveries).where(deliveries.c.id.in_(pending.scalar_subquery()))
            .values(state="sending", updated_at=_now())
            .returning(deliveries.c.id, deliveries.c.subscriber_id)).all()
        return sorted((int(i), s) for i, s in claimed)


def _record(db: Database, outcomes: list[dict[str, Any]]) -> None:
    if not outcomes:
        return
    with db.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == bindparam("d_id")).values(
            state=bindparam("d_state"), message_id=bindparam("d_mid"), error=bindparam("d_error"),
            attempts=deliveries.c.attempts + bindparam("d_attempts"), updated_at=_now(),
            sent_at=bindparam("d_sent")), outcomes)


def _tag(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:256]  # SES tag values allow only these


@dataclass
class _Sender:
    """What a worker thread needs to mail one recipient."""

    template: MessageTemplate
    transport: Transport
    limiter: RateLimiter
    stop: threading.Event
    tags: dict[str, str]
    sleep: Callable[[float], None] = time.sleep

    def deliver(self, delivery_id: int, recipient: Recipient) -> dict[str, Any]:
        outcome: dict[str, Any] = {"d_id": delivery_id, "d_mid": None, "d_error": None, "d_sent": None,
                                   "d_attempts": 0, "d_state": "pending"}
        raw = self.template.personalise(recipient)
        tags = {**self.tags, "delivery_id": str(delivery_id), "subscriber_id": str(recipient.subscriber_id)}
        for attempt in range(MAX_ATTEMPTS):
            if self.stop.is_set():
                return outcome  # never attempted: back to pending
            self.limiter.acquire()
            outcome["d_attempts"] += 1
            try:
                outcome["d_mid"] = self.transport.send(raw, recipient.email, tags)
            except TransportError as exc:
                outcome["d_error"] = str(exc)
                outcome["error"] = exc
                if exc.fatal:
                    self.stop.set()
                    return outcome  # the account cannot send: nothing went out
                if not exc.retryable:
                    outcome["d_state"] = "failed"
                    return outcome
                self.sleep(min(30.0, 0.5 * 2 ** attempt) * (0.5 + random.random()))  # backoff with jitter
                continue
            except Exception as exc:  # noqa: BLE001  (a bug, not a refusal: whether it went out is unknown)
                self.stop.set()
                outcome.update(d_state="sending", unknown=exc)
                return outcome
            outcome.update(d_state="sent", d_error=None, d_sent=_utcnow())
            outcome.pop("error", None)
            return outcome
        return outcome  # still throttled after every attempt: back to pending, counted as an error


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_send(db: Database, send_id: int, template: MessageTemplate, transport: Transport, tokens: Tokens,
             base_url: str, *, rate: float, workers: int = 4, retry_unknown: bool = False,
             quota_left: float | None = None, on_progress: Callable[[SendResult], None] | None = None,
             limiter: RateLimiter | None = None, sleep: Callable[[float], None] = time.sleep) -> SendResult:
    """Send every pending row of the send. Raises SendStopped (resumable) when it cannot finish."""
    with db.begin() as conn:
        send = conn.execute(select(sends).where(sends.c.id == send_id)).one()
        if retry_unknown:
            conn.execute(update(deliveries).where(deliveries.c.send_id == send_id, deliveries.c.state == "sending")
                         .values(state="pending", updated_at=_now()))
    stop = threading.Event()
    sender = _Sender(template, transport, limiter or RateLimiter(rate), stop,
                     {"send": _tag(f"{send.issue}_{send.list_name}"), "send_id": str(send_id)}, sleep)
    run = _Run(db, send, sender, tokens, base_url.rstrip("/"), quota_left, on_progress,
               # About half a second of work per claim: bigger claims cost fewer round
               # trips, smaller ones leave fewer rows "unknown" after a crash.
               claim_size=max(workers * 2, min(200, int(rate / 2))))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send") as pool:
        run.loop(pool)
    _finish(db, send_id, run.result)
    if run.result.stopped:
        raise SendStopped(run.result.stopped)
    return run.result


class _Run:
    """One run of a send: keeps the workers fed with claimed rows and records what happened."""

    def __init__(self, db: Database, send: Any, sender: _Sender, tokens: Tokens, base_url: str,
                 quota_left: float | None, on_progress: Callable[[SendResult], None] | None, claim_size: int):
        self.db, self.send, self.sender, self.tokens, self.base_url = db, send, sender, tokens, base_url
        self.quota_left, self.on_progress, self.claim_size = quota_left, on_progress, claim_size
        self.result = SendResult()
        self.consecutive = 0
        self.in_flight: set[Future[dict[str, Any]]] = set()
        # Finished futures arrive here: waiting on the whole in-flight set (futures.wait)
        # costs a lock per future per message, a third of the sender's own CPU at 100+ in flight.
        self.finished: queue.SimpleQueue[Future[dict[str, Any]]] = queue.SimpleQueue()
        self.outcomes: list[dict[str, Any]] = []
        self.exhausted = False
        self.flushed = time.monotonic()

    def loop(self, pool: ThreadPoolExecutor) -> None:
        # Claim the next rows while the last ones are still in flight: no worker
        # waits for the slowest message of a batch.
        try:
            while True:
                if not self.sender.stop.is_set() and not self.exhausted and len(self.in_flight) < self.claim_size:
                    self._feed(pool)
                if not self.in_flight:
                    break
                done = self._next_done()
                self.in_flight.difference_update(done)
                self._collect(done)
        except KeyboardInterrupt:
            self.sender.stop.set()  # Ctrl-C: in-flight messages finish, the rest go back to pending
            self.result.stopped = "interrupted; run the same command again to resume"
            finished = wait(self.in_flight).done
            self.in_flight = set()
            self._collect(finished)
        self._flush()

    def _next_done(self) -> list[Future[dict[str, Any]]]:
        """At least one finished future, and every other that finished meanwhile."""
        done: list[Future[dict[str, Any]]] = []
        while not done:
            try:  # a timeout, so that Ctrl-C is seen while waiting
                done.append(self.finished.get(timeout=0.5))
            except queue.Empty:
                continue
        while True:
            try:
                done.append(self.finished.get_nowait())
            except queue.Empty:
                return done

    def _feed(self, pool: ThreadPoolExecutor) -> None:
        size = self.claim_size
        if self.quota_left is not None:
            room = int(self.quota_left) - len(self.in_flight)
            if room < 1:
                if not self.in_flight:
                    self.result.stopped = "the SES 24-hour quota is used up; run the same command later to resume"
                    self.sender.stop.set()
                return
            size = min(size, room)
        claimed = _claim(self.db, self.send.id, size)
        if not claimed:
            self.exhausted = True
            return
        with self.db.begin() as conn:
            members = eligible(conn, self.send.list_id, [s for _, s in claimed]) if self.send.list_id else {}
        for delivery_id, subscriber_id in claimed:
            member = members.get(subscriber_id) if subscriber_id is not None else None
            if not isinstance(member, Member):
                self.result.skipped += 1
                self.outcomes.append({"d_id": delivery_id, "d_state": "skipped", "d_mid": None, "d_sent": None,
                                      "d_error": f"skipped: {member or 'forgotten'}", "d_attempts": 0})
                continue
            url = f"{self.base_url}/u/{self.tokens.unsubscribe(member.subscriber_id, self.send.list_id)}"
            recipient = Recipient(member.email, member.name, member.fields, url, member.subscriber_id)
            future = pool.submit(self.sender.deliver, delivery_id, recipient)
            future.add_done_callback(self.finished.put)
            self.in_flight.add(future)

    def _collect(self, done: Any) -> None:
        for future in done:
            outcome = future.result()
            unknown = outcome.pop("unknown", None)
            if unknown is not None:  # left `sending`: reported as unknown, never resent by itself
                self.result.stopped = f"unexpected error from the transport: {unknown!r}; the send stopped"
                continue
            self._tally(outcome, outcome.pop("error", None))
            if self.quota_left is not None:
                self.quota_left -= outcome["d_attempts"]
            self.outcomes.append(outcome)
        # Write outcomes often: a row sent but not yet recorded is "unknown" after a crash.
        if len(self.outcomes) >= 50 or not self.in_flight or time.monotonic() - self.flushed > 0.25:
            self._flush()
        if self.consecutive >= MAX_CONSECUTIVE_ERRORS and self.result.stopped is None:
            self.result.stopped = f"{self.consecutive} errors in a row; the send stopped and will resume"
        if self.result.stopped:
            self.sender.stop.set()

    def _tally(self, outcome: dict[str, Any], error: TransportError | None) -> None:
        result = self.result
        if outcome["d_state"] == "sent":
            result.sent += 1
            self.consecutive = 0
        elif outcome["d_state"] == "failed":
            result.failed += 1
        else:
            result.released += 1  # not attempted, or not accepted: back to pending
            self.exhausted = False  # ...and to be claimed again, unless the send is stopping
        if error is not None:
            self.consecutive += 1
            key = error.code or type(error).__name__
            result.errors[key] = result.errors.get(key, 0) + 1
            if error.fatal and result.stopped is None:
                result.stopped = f"{error}; the send stopped and will resume where it left off"

    def _flush(self) -> None:
        self.flushed = time.monotonic()
        _record(self.db, self.outcomes)
        self.outcomes = []
        if self.on_progress is not None:
            self.on_progress(self.result)


def _finish(db: Database, send_id: int, result: SendResult) -> None:
    with db.begin() as conn:
        counts = ledger_counts(conn, send_id)
        done = not counts.get("pending") and not counts.get("sending")
        conn.execute(update(sends).where(sends.c.id == send_id).values(
            state="finished" if done else ("stopped" if result.stopped else "running"),
            finished_at=_now() if done else None))


def send_proofs(template: MessageTemplate, transport: Transport, tokens: Tokens, base_url: str,
                addresses: list[str]) -> list[str]:
    """Test sends to any address, outside the ledger; their unsubscribe link changes nothing."""
    url = f"{base_url.rstrip('/')}/u/{tokens.proof()}"
    return [transport.send(template.personalise(Recipient(a, unsubscribe_url=url)), a, {"send": "proofs"})
            for a in addresses]
