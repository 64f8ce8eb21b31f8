"""The worker's loop (design §12): run every send that is due, one after another.

The process wiring (configuration, transports, building issue files, signals)
is the edge's (newsletter/worker.py): it hands `run_due` a `prepare` that turns
a due send into a built issue and how to deliver it. Several workers may run at
once on PostgreSQL: taking a send is one guarded UPDATE, and two workers on the
same send share its ledger like two `send` processes do.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components import RenderedIssue
from subscribers import Database

from . import jobs
from .errors import MailerError, SendStopped
from .sending import Delivery, Segmented, SendResult, plan_send, send_issue
from .welcome import WELCOME, WelcomeSegment

POLL = 5.0  # seconds between looks for due sends when idle


@dataclass(frozen=True)
class Prepared:
    """What the edge makes of a due send: the issue built from its file, and how to deliver it."""

    rendered: RenderedIssue
    how: Delivery
    segment: Segmented | None = None


@dataclass
class Ran:
    send_id: int
    outcome: str  # finished, paused, cancelled, stopped, skipped (another worker took it)
    result: SendResult | None = None
    message: str = ""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_due(db: Database, prepare: Callable[[jobs.Due], Prepared], *,
            now: Callable[[], dt.datetime] = _utcnow,
            on_start: Callable[[jobs.Due], None] | None = None) -> list[Ran]:
    """Run every send due now to its end (or until it pauses or stops); what became of each."""
    out = []
    for due in jobs.due(db, now()):
        if not jobs.take(db, due.id, (due.state,)):
            out.append(Ran(due.id, "skipped", message="another worker or a hand moved it first"))
            continue
        if on_start is not None:
            on_start(due)
        out.append(_run_one(db, due, prepare))
    return out


def _run_one(db: Database, due: jobs.Due, prepare: Callable[[jobs.Due], Prepared]) -> Ran:
    try:
        prepared = prepare(due)
        segment = prepared.segment or (WelcomeSegment() if due.segment == WELCOME else None)
        plan = plan_send(db, due.issue, due.list_name, segment)
        result = send_issue(db, plan, prepared.rendered, prepared.how)
    except SendStopped as exc:
        return Ran(due.id, jobs.state_of(db, due.id), message=str(exc))
    except Exception as exc:  # noqa: BLE001  (a file that no longer builds, a refused send: say why, go on)
        reason = str(exc) if isinstance(exc, MailerError) else f"{type(exc).__name__}: {exc}"
        jobs.stopped(db, due.id, f"the worker could not run it: {reason}")
        return Ran(due.id, "stopped", message=reason)
    return Ran(due.id, jobs.state_of(db, due.id), result)


def run_forever(db: Database, prepare: Callable[[jobs.Due], Prepared], stop: threading.Event, *,
                poll: float = POLL, **options: Any) -> None:
    """`newsletter worker`: run what is due, then look again every `poll` seconds, until `stop`."""
    while not stop.is_set():
        ran = run_due(db, prepare, **options)
        if not ran:
            stop.wait(poll)
