"""One send as the console follows it: its report, where it stands, and what may be done with it now.

`sends ls` and the API read every send through jobs.list_sends; a page about one send also needs the
report row itself (its `rated_bounces`, which warnings() reads), the end of its window, and the hand
actions its state allows (jobs.actions_of, the rule pause/resume/cancel apply).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from subscribers import Database

from .jobs import QUOTA, SendNotFound, actions_of, iso
from .reports import SendReport, report_row
from .schema import sends

# States in which a send may still change by itself (a worker runs it, or will when it is due).
MOVING = ("scheduled", "queued", "running")


@dataclass(frozen=True)
class SendStatus:
    report: SendReport  # design §4's object: id, issue, list, segment, state and the counts
    at: str | None  # ISO 8601: when it is (or was) due
    expires_at: str | None
    reason: str | None  # why it is paused, stopped, cancelled or expired
    actions: frozenset[str]  # of pause, resume, cancel
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def state(self) -> str:
        return str(self.report["state"])

    @property
    def done(self) -> int:
        return done_of(self.report)

    @property
    def moving(self) -> bool:
        """Whether its numbers may change without anyone's hand: worth watching live."""
        return is_moving(self.state, self.reason)


def done_of(report: Mapping[str, Any]) -> int:
    """Recipients whose turn is over: sent, failed for good, or skipped (unknown and pending are not)."""
    return int(report["sent"] + report["failed"] + report["skipped"])


def is_moving(state: str, reason: str | None) -> bool:
    """Running or due to run: scheduled, queued, running, or paused for the quota (a worker resumes it)."""
    return state in MOVING or (state == "paused" and reason == QUOTA)


def send_status(db: Database, send_id: int) -> SendStatus:
    with db.begin(read_only=True) as conn:  # never the write lock of a running send
        send = conn.execute(select(sends).where(sends.c.id == send_id)).first()
        if send is None:
            raise SendNotFound(f"no send {send_id}")
        report = report_row(conn, send)
    return SendStatus(report, iso(send.at), iso(send.expires_at), send.reason, frozenset(actions_of(send.state)),
                      iso(send.created_at), iso(send.finished_at))


def created_times(db: Database) -> dict[int, str | None]:
    """When each send was made (ISO 8601): a foreground send has no `at` to show."""
    with db.begin(read_only=True) as conn:
        return {int(i): iso(created) for i, created in conn.execute(select(sends.c.id, sends.c.created_at))}
