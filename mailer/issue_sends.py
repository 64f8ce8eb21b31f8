"""Which issues have gone to which lists: the sends table alone, for a page that lists every issue.

(mailer.jobs.list_sends adds each send's report, counted over its ledger: right for one
send, too slow to repeat for every issue on a page.)
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from subscribers import Database

from .jobs import iso
from .schema import sends


@dataclass(frozen=True)
class IssueSend:
    id: int
    issue: str
    list_name: str
    segment: str | None
    state: str
    at: str | None  # ISO 8601, UTC: when it is or was due


def sends_by_issue(db: Database) -> dict[str, list[IssueSend]]:
    """slug -> its sends, newest first."""
    query = select(sends.c.id, sends.c.issue, sends.c.list_name, sends.c.segment, sends.c.state, sends.c.at,
                   sends.c.created_at).order_by(sends.c.id.desc())
    out: dict[str, list[IssueSend]] = {}
    with db.begin(read_only=True) as conn:
        for row in conn.execute(query):
            out.setdefault(row.issue, []).append(IssueSend(row.id, row.issue, row.list_name, row.segment or None,
                                                           row.state, iso(row.at or row.created_at)))
    return out
