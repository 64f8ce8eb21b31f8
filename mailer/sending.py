"""Sending an issue to a list: exactly once, paced, resumable.

1. `plan_send` reads what a send would do (nothing is written: --dry-run).
2. `start_send` creates the send and freezes its recipients into the ledger,
   or joins the send already there (running it again resumes it), refusing to
   resume it with content other than what it started with.
3. `run_send` registers a run, claims small batches of pending rows for it,
   and hands them to worker threads that mail them at the limiter's pace. The
   ledger protocol (mailer/ledger.py) keeps the ledger true after any crash:
   rows claimed but not handed over return to work by themselves, and rows left
   `sending` are at most the transport calls that were in flight.
On PostgreSQL several processes can run the same send: claims use
FOR UPDATE SKIP LOCKED and carry the run's id, so no row is claimed twice.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from typing import Any, Protocol

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from components import RenderedIssue
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

from . import jobs, ledger
from .archive import archive_conflict, publish
from .errors import ArchiveConflict, ContentChanged, SendStopped, TransportError
from .ledger import Outcome, utcnow
from .message import Envelope, MessageTemplate, Recipient, feedback_id
from .ratelimit import RateLimiter
from .schema import deliveries, sends
from .transports import Transport

MAX_ATTEMPTS = 5  # per message, for answers that prove it was not accepted (throttling, no connection)
MAX_CONSECUTIVE_ERRORS = 20  # then something is wrong with the account, not the recipients
WATCH = 1.0  # seconds between looks at the send's state (a pause takes effect within this and a call)



@dataclass
class Plan:
    issue: str
    list_name: str
    list_id: int
    send_id: int | None
    statuses: dict[str, int]  # the list's members by status, now
    suppressed: int  # subscribed but suppressed: will be skipped
    ledger: dict[str, int]  # an existing send's rows by state
    segment: Segmented | None = None  # a segment of the list, or the whole list
    segment_count: int | None = None  # the segment's members now

    @property
    def segment_name(self) -> str:
        return self.segment.name if self.segment else ""

    @property
    def to_send(self) -> int:
        if self.send_id is None or not self.ledger:
            if self.segment_count is not None:
                return self.segment_count
            return self.statuses.get("subscribed", 0) - self.suppressed
        return self.ledger.get("pending", 0)


class Segmented(Protocol):
    """A segment as sending needs it (mailer.segments): its name and its members on a list."""

    name: str

    def members(self, conn: Any, list_id: int) -> Any:
        """A SELECT of subscriber ids: the list's subscribed, unsuppressed members in the segment."""


@dataclass
class SendResult:
    total: int = 0  # rows this run set out to send (pending when it started)
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0  # handed over, outcome unknown: left `sending`
    released: int = 0  # claimed, not attempted or not accepted: back to pending
    stopped: str | None = None
    halted: str | None = None  # "paused" or "cancelled" from elsewhere, or "quota"
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.unknown


def content_hash(rendered: RenderedIssue) -> str:
    """What a send is bound to: the built issue (text, HTML, web version, images)."""
    digest = hashlib.sha256()
    for part in (rendered.subject, rendered.preheader, rendered.html, rendered.text, rendered.web_html):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    for name, path in sorted(rendered.assets.items()):
        digest.update(name.encode("utf-8", "surrogatepass") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def plan_send(db: Database, issue: str, list_name: str, segment: Segmented | None = None) -> Plan:
    """What a send of the issue to the list (or a segment of it) would do; nothing is written."""
    with db.begin(read_only=True) as conn:
        mailing_list = get_list(conn, list_name)
        send_id = jobs.send_id_of(conn, issue, list_name, segment.name if segment else "")
        statuses = status_counts(conn, mailing_list.id)
        suppressed = suppressed_among_subscribed(conn, mailing_list.id)
        members = (int(conn.execute(select(func.count()).select_from(
            segment.members(conn, mailing_list.id).subquery())).scalar_one()) if segment else None)
        return Plan(issue, list_name, mailing_list.id, send_id, statuses, suppressed,
                    ledger.counts(conn, send_id) if send_id else {}, segment, members)


def start_send(db: Database, plan: Plan, subject: str, content: str | None = None, *, force: bool = False,
               frozen: bool = True) -> int:
    """Create the send and freeze its recipients, or join the existing one (resume).

    `content`: the built issue's content_hash. Resuming a send that has already mailed
    someone with other content (a draft under the same slug, an edited file) raises
    ContentChanged unless forced. `frozen=False` creates it without recipients (a
    scheduled send: a worker freezes them when it starts).
    """
    send_id = plan.send_id
    if send_id is None:
        try:
            send_id = _create_send(db, plan, subject, content, frozen)
        except IntegrityError:  # another process created it between our look and our insert: join it
            with db.begin(read_only=True) as conn:
                send_id = jobs.send_id_of(conn, plan.issue, plan.list_name, plan.segment_name)
            assert send_id is not None  # the unique key that turned our insert away names it
    if content is not None:
        _bind(db, send_id, plan, content, force)
    return send_id


def _bind(db: Database, send_id: int, plan: Plan, content: str, force: bool) -> None:
    with db.begin() as conn:
        bound = conn.execute(select(sends.c.content_hash).where(sends.c.id == send_id)).scalar()
        if bound == content:
            return
        mailed = {k: n for k, n in ledger.counts(conn, send_id).items() if k in ("sent", "sending", "failed")}
        if bound is not None and mailed and not force:
            raise ContentChanged(
                f"the send of {plan.issue!r} to {plan.list_name!r} started with other content: this file "
                "builds a different email (a draft or an edited copy under the same slug?). Resuming would mail "
                "this version to the rest of the list. Give a different issue its own file name (the slug), "
                "or resume with --force to send this version to those not yet sent.")
        conn.execute(update(sends).where(sends.c.id == send_id).values(content_hash=content))


def _create_send(db: Database, plan: Plan, subject: str, content: str | None, frozen: bool) -> int:
    with db.begin() as conn:
        existing = jobs.send_id_of(conn, plan.issue, plan.list_name, plan.segment_name)
        if existing is not None:  # another process started it meanwhile
            return existing
        send_id = int(conn.execute(sends.insert().values(
            issue=plan.issue, list_id=plan.list_id, list_name=plan.list_name, subject=subject,
            segment=plan.segment_name, state="running" if frozen else "scheduled", frozen=False,
            created_at=utcnow(), content_hash=content)).inserted_primary_key[0])  # type: ignore[index]
        if frozen:
            freeze(conn, send_id, plan.list_id, plan.segment)
        return send_id


def freeze(conn: Any, send_id: int, list_id: int, segment: Segmented | None) -> None:
    """Put the send's recipients into the ledger, once: the list's subscribed members, or the segment's."""
    taken = conn.execute(update(sends).where(sends.c.id == send_id, sends.c.frozen.is_(False))
                         .values(frozen=True)).rowcount
    if not taken:
        return  # frozen already (by another worker, or at creation)
    members = segment.members(conn, list_id) if segment else subscribed_ids(list_id)
    rows = members.add_columns(bindparam("s", send_id), bindparam("st", "pending"), bindparam("a", 0),
                               func.current_timestamp())
    conn.execute(deliveries.insert().from_select(
        ["subscriber_id", "send_id", "state", "attempts", "updated_at"], rows))


def _tag(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:256]  # SES tag values allow only these


@dataclass
class _Job:
    delivery_id: int
    recipient: Recipient


@dataclass
class _Report:
    """A worker's word to the run about one job (the ledger already holds its outcome)."""

    state: str  # sent | failed | sending (unknown) | pending (given back) | lost (another run has it)
    attempts: int = 0
    error: TransportError | None = None
    unexpected: BaseException | None = None


@dataclass
class _Sender:
    """What a worker thread needs to mail one recipient, and how it keeps the ledger true."""

    db: Database
    run_id: int
    template: MessageTemplate
    transport: Transport
    limiter: RateLimiter
    stop: threading.Event
    tags: dict[str, str]
    sleep: Callable[[float], None] = time.sleep

    def deliver(self, job: _Job, writer: ledger.Writer,
                last: Outcome | None = None) -> tuple[_Report, Outcome | None]:
        """Mail one job. `last`: this worker's previous outcome, not yet durable; it is written
        before this job's transport call (with the mark, in one transaction, when nothing waits).
        Returns the report and this job's outcome if it still has to be written."""
        try:
            raw = self.template.personalise(job.recipient)
        except Exception as exc:  # noqa: BLE001  (a bad merge value or address fails this one recipient)
            failed = Outcome(job.delivery_id, "failed", error=f"message could not be made: {exc}", was="pending")
            writer.record([o for o in (last, failed) if o is not None])
            return _Report("failed"), None
        tags = {**self.tags, "delivery_id": str(job.delivery_id),
                "subscriber_id": str(job.recipient.subscriber_id)}
        report = _Report("pending")
        for attempt in range(MAX_ATTEMPTS):
            if self.stop.is_set():
                writer.record([last] if last else [])
                return report, None  # not (or no longer) attempted: pending, still ours until the run ends
            if not self._mark(job, writer, last):
                return _Report("lost"), None  # our claim lapsed and another run took the row: it is theirs
            last = None
            report.attempts += 1
            outcome, report = self._call(job, raw, tags, report)
            if report.state != "pending":
                return report, outcome  # written before this worker's next call
            writer.record([outcome])
            if not report.error or not report.error.retryable:
                return report, None
            self.sleep(min(30.0, 0.5 * 2 ** attempt) * (0.5 + random.random()))  # backoff with jitter
        ledger.give_back(self.db, job.delivery_id)
        return report, None  # still refused for now after every attempt: pending, counted as an error

    def _mark(self, job: _Job, writer: ledger.Writer, last: Outcome | None) -> bool:
        """Mark the row `sending` at the limiter's pace, the last outcome made durable first."""
        try_acquire = getattr(self.limiter, "try_acquire", None)
        if last is not None and try_acquire is not None and try_acquire():
            return writer.record_and_mark(last, job.delivery_id, self.run_id)
        if last is not None:  # waiting for the limiter: do not hold an outcome meanwhile
            writer.record([last])
        self.limiter.acquire()
        return writer.record_and_mark(None, job.delivery_id, self.run_id)

    def _call(self, job: _Job, raw: bytes, tags: dict[str, str], report: _Report) -> tuple[Outcome, _Report]:
        try:
            message_id = self.transport.send(raw, job.recipient.email, tags)
        except TransportError as exc:
            report.error = exc
            if exc.ambiguous:  # it may have gone out: unknown until an SES event or --retry-unknown says
                report.state = "sending"
                return Outcome(job.delivery_id, "sending", error=str(exc)), report
            if exc.fatal:
                self.stop.set()  # the account cannot send: nothing went out
            report.state = "pending" if exc.fatal or exc.retryable else "failed"
            return Outcome(job.delivery_id, report.state, error=str(exc)), report
        except Exception as exc:  # noqa: BLE001  (a bug, not a refusal: whether it went out is unknown)
            self.stop.set()
            report.state, report.unexpected = "sending", exc
            return Outcome(job.delivery_id, "sending", error=f"unexpected error: {exc!r}"), report
        report.state, report.error = "sent", None
        return Outcome(job.delivery_id, "sent", message_id=message_id, sent_at=utcnow()), report


def run_send(db: Database, send_id: int, template: MessageTemplate, transport: Transport, tokens: Tokens,
             base_url: str, *, rate: float, workers: int = 4, retry_unknown: bool = False,
             quota_left: float | None = None, on_progress: Callable[[SendResult], None] | None = None,
             limiter: RateLimiter | None = None, sleep: Callable[[float], None] = time.sleep) -> SendResult:
    """Send every pending row of the send. Raises SendStopped (resumable) when it cannot finish."""
    with db.begin(read_only=True) as conn:
        send = conn.execute(select(sends).where(sends.c.id == send_id)).one()
    with db.begin() as conn:  # running from now (a stopped or queued send resumes), unless it has ended
        conn.execute(update(sends).where(sends.c.id == send_id, sends.c.state.not_in(jobs.ENDED))
                     .values(state="running", reason=None))
    run_id = ledger.begin_run(db, send_id)
    stop = threading.Event()
    sender = _Sender(db, run_id, template, transport, limiter or RateLimiter(rate), stop,
                     {"send": _tag(f"{send.issue}_{send.list_name}"), "send_id": str(send_id)}, sleep)
    run = _Run(db, send, sender, tokens, base_url.rstrip("/"), quota_left, on_progress, workers,
               # About half a second of work per claim: bigger claims cost fewer round
               # trips; claimed rows stay pending, so their size costs nothing after a crash.
               claim_size=max(workers * 2, min(200, int(rate / 2))))
    try:
        if retry_unknown:
            ledger.reset_unknown(db, send_id)
        run.result.total = ledger.pending_left(db, send_id)
        run.loop()
    finally:
        ledger.end_run(db, run_id)
    _finish(db, send_id, run.result)
    if run.result.stopped:
        raise SendStopped(run.result.stopped)
    return run.result


class _Run:
    """One run of a send: keeps the worker threads fed with claimed rows and counts what they did."""

    def __init__(self, db: Database, send: Any, sender: _Sender, tokens: Tokens, base_url: str,
                 quota_left: float | None, on_progress: Callable[[SendResult], None] | None, workers: int,
                 claim_size: int):
        self.db, self.send, self.sender, self.tokens, self.base_url = db, send, sender, tokens, base_url
        self.quota_left, self.on_progress, self.workers, self.claim_size = quota_left, on_progress, workers, claim_size
        self.result = SendResult()
        self.consecutive = 0
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.reports: queue.SimpleQueue[_Report] = queue.SimpleQueue()
        self.outstanding = 0  # jobs handed to workers, not yet reported
        self.wake = threading.Event()
        # Refill when the jobs waiting fall to this: every worker still has one to take.
        self.low_water = max(workers, claim_size // 2 - workers)
        self.exhausted = False
        self.beaten = self.shown = self.watched = time.monotonic()

    def loop(self) -> None:
        threads = [threading.Thread(target=self._work, name=f"send-{i}", daemon=True) for i in range(self.workers)]
        for thread in threads:
            thread.start()
        try:
            while True:
                # Refill at half: claiming after every finished message costs a claim and a
                # look-up of the audience per message (most of the sender's own CPU).
                if not self.sender.stop.is_set() and not self.exhausted and self.outstanding <= self.claim_size // 2:
                    self._feed()
                if not self.outstanding:
                    if self.exhausted or self.sender.stop.is_set():
                        break
                    continue  # a claim whose people all left: claim the next rows
                self._collect()
                self._beat()
        except KeyboardInterrupt:
            self.result.stopped = "interrupted; run the same command again to resume"
        finally:
            self.sender.stop.set()  # in-flight messages finish and are recorded; the rest stay pending
            for _ in threads:
                self.jobs.put(None)
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.25)
                    self._beat()
            while self.outstanding:
                self._collect()
            self._show(force=True)

    def _work(self) -> None:
        last: Outcome | None = None  # this worker's last outcome, written with its next mark
        writer = ledger.Writer(self.db)
        try:
            while True:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:  # nothing waiting: write the last outcome now, not when work comes
                    if last is not None:
                        writer.record([last])
                        last = None
                    job = self.jobs.get()
                if job is None:
                    break
                try:
                    report, last = (self.sender.deliver(job, writer, last) if not self.sender.stop.is_set()
                                    else (_Report("pending"), last))
                except BaseException as exc:  # noqa: BLE001  (the database gave up: stop; what is unknown stays so)
                    self.sender.stop.set()
                    report, last = _Report("pending", unexpected=exc), None
                self.reports.put(report)
                if (self.jobs.qsize() <= self.low_water or self.sender.stop.is_set() or report.error is not None
                        or report.state == "failed"):  # errors are counted at once: 20 in a row stop the send
                    self.wake.set()  # the queue is low (the run refills it) or the run is stopping
        finally:
            try:
                if last is not None:
                    writer.record([last])
            finally:
                writer.close()
                self.wake.set()

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self.beaten > ledger.HEARTBEAT:
            self.beaten = now
            ledger.beat(self.db, self.sender.run_id)
        if now - self.watched > WATCH:  # paused or cancelled from elsewhere: stop within a second or two
            self.watched = now
            state = jobs.state_of(self.db, self.send.id)
            if state in ("paused", "cancelled") and not self.sender.stop.is_set():
                self.result.halted = state
                self.result.stopped = f"the send was {state}; in-flight messages finished, the rest are pending"
                self.sender.stop.set()

    def _feed(self) -> None:
        size = self.claim_size - self.outstanding
        if self.quota_left is not None:
            size = min(size, int(self.quota_left) - self.outstanding)
            if size < 1:
                if not self.outstanding:
                    self._quota_used_up()
                return
        claimed = ledger.claim(self.db, self.send.id, self.sender.run_id, size)
        if not claimed:
            self.exhausted = True
            return
        with self.db.begin(read_only=True) as conn:
            members = eligible(conn, self.send.list_id, [s for _, s in claimed]) if self.send.list_id else {}
        skipped = []
        for delivery_id, subscriber_id in claimed:
            member = members.get(subscriber_id) if subscriber_id is not None else None
            if not isinstance(member, Member):
                skipped.append(Outcome(delivery_id, "skipped", error=f"skipped: {member or 'forgotten'}",
                                       was="pending"))
                continue
            url = f"{self.base_url}/u/{self.tokens.unsubscribe(member.subscriber_id, self.send.list_id)}"
            self.jobs.put(_Job(delivery_id, Recipient(member.email, member.name, member.fields, url,
                                                      member.subscriber_id)))
            self.outstanding += 1
        ledger.record(self.db, skipped)
        self.result.skipped += len(skipped)

    def _quota_used_up(self) -> None:
        # A send that ends exactly at the quota has finished, not stopped.
        if ledger.pending_left(self.db, self.send.id):
            self.result.halted = jobs.QUOTA
            self.result.stopped = ("the SES 24-hour quota is used up; a worker resumes the send when the window "
                                   "has room (or run the same command later)")
            self.sender.stop.set()
        else:
            self.exhausted = True

    def _collect(self) -> None:
        """Count what the workers reported. Workers wake this thread only when the queue of jobs runs
        low or they stop, or it wakes by itself to show progress: not once per message."""
        self.wake.wait(0.25)
        self.wake.clear()
        while True:
            try:
                report = self.reports.get_nowait()
            except queue.Empty:
                break
            self.outstanding -= 1
            self._tally(report)
        self._show()

    def _tally(self, report: _Report) -> None:
        result = self.result
        if self.quota_left is not None:
            self.quota_left -= report.attempts
        if report.state == "sent":
            result.sent += 1
            self.consecutive = 0
        elif report.state == "failed":
            result.failed += 1
        elif report.state == "sending":
            result.unknown += 1
        else:  # pending or lost: not sent by this run; claim again unless stopping
            result.released += 1
            self.exhausted = False
        if report.unexpected is not None and result.stopped is None:
            result.stopped = f"unexpected error: {report.unexpected!r}; the send stopped and will resume"
        error = report.error
        if error is not None:
            self.consecutive += 1
            key = error.code or type(error).__name__
            result.errors[key] = result.errors.get(key, 0) + 1
            if error.fatal and result.stopped is None:
                result.stopped = f"{error}; the send stopped and will resume where it left off"
        if self.consecutive >= MAX_CONSECUTIVE_ERRORS and result.stopped is None:
            result.stopped = f"{self.consecutive} errors in a row; the send stopped and will resume"
        if result.stopped:
            self.sender.stop.set()

    def _show(self, force: bool = False) -> None:
        if self.on_progress is not None and (force or time.monotonic() - self.shown > 0.1):
            self.shown = time.monotonic()
            self.on_progress(self.result)


def _finish(db: Database, send_id: int, result: SendResult) -> None:
    """The send's state after a run; a pause or cancel from elsewhere is left as it is."""
    def write(conn: Any) -> None:
        state = conn.execute(select(sends.c.state).where(sends.c.id == send_id)).scalar()
        if state != "running":
            return
        # Finished when nothing is left to send; rows left unknown are reported, not waited for.
        if not ledger.counts(conn, send_id).get("pending"):
            values: dict[str, Any] = {"state": "finished", "finished_at": utcnow(), "reason": None}
        elif result.halted == jobs.QUOTA:
            values = {"state": "paused", "reason": jobs.QUOTA, "at": utcnow() + jobs.QUOTA_RETRY}
        elif result.stopped:
            values = {"state": "stopped", "reason": result.stopped[:2000]}
        else:
            return  # rows held by another run: it finishes the send
        conn.execute(update(sends).where(sends.c.id == send_id).values(**values))
    ledger.patiently(db, write)


@dataclass(frozen=True)
class Delivery:
    """How a send goes out: what the edge makes from configuration and flags."""

    transport: Transport
    envelope: Envelope
    tokens: Tokens
    base_url: str
    rate: float
    workers: int = 4
    quota_left: float | None = None
    retry_unknown: bool = False
    force: bool = False  # resume with changed content; send although the archive holds another version


def send_issue(db: Database, plan: Plan, rendered: RenderedIssue, how: Delivery,
               on_progress: Callable[[SendResult], None] | None = None, issue_path: str | None = None) -> SendResult:
    """Start (or resume) the send of a built issue to a list (or a segment) and run it to its end.

    The one entry the CLI's `send` and the worker call. Refused before anything is written
    when the archive holds other content under the slug, or the send already mailed other
    content (unless `how.force`), or it was cancelled, expired or paused by hand.
    Raises SendStopped (resumable) when it cannot finish.
    """
    content = content_hash(rendered)
    if plan.send_id is not None:  # the more telling refusal first: this send started with other content
        start_send(db, plan, rendered.subject, content, force=how.force)
    conflict = archive_conflict(db, rendered.slug, content)
    if conflict and not how.force:
        raise ArchiveConflict(conflict)
    send_id = start_send(db, plan, rendered.subject, content, force=how.force)
    _begin(db, send_id, plan, issue_path)
    publish(db, rendered, content, force=True)  # conflicts were settled above
    sender_domain = parseaddr(how.envelope.sender)[1].rpartition("@")[2]
    envelope = replace(how.envelope, feedback_id=feedback_id(plan.issue, plan.list_name, sender_domain))
    return run_send(db, send_id, MessageTemplate(rendered, envelope), how.transport, how.tokens, how.base_url,
                    rate=how.rate, workers=how.workers, retry_unknown=how.retry_unknown,
                    quota_left=how.quota_left, on_progress=on_progress)


def _begin(db: Database, send_id: int, plan: Plan, issue_path: str | None) -> None:
    """Refuse a send that may not go on; a scheduled one gets its recipients now (run_send marks it running)."""
    with db.begin() as conn:
        state, reason = conn.execute(select(sends.c.state, sends.c.reason).where(sends.c.id == send_id)).one()
        if state in jobs.ENDED and state != "finished":
            raise jobs.SendStateError(f"send {send_id} ({plan.issue}/{plan.list_name}) is {state}: {reason}")
        if state == "paused" and reason != jobs.QUOTA:
            raise jobs.SendStateError(f"send {send_id} ({plan.issue}/{plan.list_name}) is paused; "
                                      f"`newsletter sends resume {send_id}` lets it go on")
        if issue_path:  # a worker resuming it later (after a quota pause) builds it from here
            conn.execute(update(sends).where(sends.c.id == send_id).values(issue_path=issue_path))
        freeze(conn, send_id, plan.list_id, plan.segment)


def schedule_issue(db: Database, plan: Plan, rendered: RenderedIssue, at: dt.datetime,
                   expires_at: dt.datetime | None, issue_path: str, *, force: bool = False,
                   queued: bool = False) -> int:
    """`send --at`: a send that a worker starts at `at` (and not after `expires_at`), built from `issue_path` then.
    `queued`: the console's "now", for the next worker."""
    content = content_hash(rendered)
    conflict = archive_conflict(db, rendered.slug, content)
    if conflict and not force:
        raise ArchiveConflict(conflict)
    send_id = start_send(db, plan, rendered.subject, content, force=force, frozen=False)
    with db.begin() as conn:
        state = conn.execute(select(sends.c.state).where(sends.c.id == send_id)).scalar_one()
        if state not in ("scheduled", "queued", "paused", "stopped"):
            raise jobs.SendStateError(f"send {send_id} ({plan.issue}/{plan.list_name}) is {state} already: "
                                      "it cannot be scheduled")
        jobs.schedule(conn, send_id, at, expires_at, issue_path, queued=queued)
    return send_id


def send_proofs(template: MessageTemplate, transport: Transport, tokens: Tokens, base_url: str,
                addresses: list[str]) -> list[str]:
    """Test sends to any address, outside the ledger; their unsubscribe link changes nothing."""
    url = f"{base_url.rstrip('/')}/u/{tokens.proof()}"
    return [transport.send(template.personalise(Recipient(a, unsubscribe_url=url)), a, {"send": "proofs"})
            for a in addresses]
