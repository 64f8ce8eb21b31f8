"""A list's welcome issue (design §12): whoever joins through the sign-up form gets it once.

The welcome is a send of its own, (issue, list, segment "(welcome)"), kept open:
each person who joins adds one ledger row to it and a worker mails it, through
the same ledger as every send, so it is exactly once and resumable like them.
Once per person and list: someone who left and joins again is not welcomed
again, not even by a later welcome issue of the same list.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, false, func, select, update

from components import RenderedIssue
from subscribers import Database, get_list, insert_new_only

from .jobs import send_id_of
from .ledger import utcnow
from .schema import deliveries, sends
from .sending import content_hash

WELCOME = "(welcome)"  # the segment of a welcome send: no segment file can be named so
OPEN = ("finished", "queued", "running", "paused", "stopped")  # a welcome send that takes new people


class WelcomeSegment:
    """How a welcome send names itself to the sender: its rows come one by one, never from a rule."""

    name = WELCOME

    def members(self, conn: Any, list_id: int) -> Any:
        return select(deliveries.c.subscriber_id).where(false())  # nobody joins it by a rule


def set_welcome(db: Database, list_name: str, rendered: RenderedIssue, issue_path: str) -> int:
    """Make this built issue the list's welcome (an earlier one of another issue is cancelled)."""
    with db.begin() as conn:
        mailing_list = get_list(conn, list_name)
        conn.execute(update(sends).where(sends.c.list_id == mailing_list.id, sends.c.segment == WELCOME,
                                         sends.c.issue != rendered.slug, sends.c.state.in_(OPEN))
                     .values(state="cancelled", reason="another welcome issue replaced it"))
        found = send_id_of(conn, rendered.slug, list_name, WELCOME)
        values = {"content_hash": content_hash(rendered), "issue_path": issue_path, "subject": rendered.subject}
        if found is not None:  # the same issue again (edited, or after --no-welcome): it takes new people again
            state = "queued" if _pending(conn, found) else "finished"
            conn.execute(update(sends).where(sends.c.id == found).values(state=state, reason=None, **values))
            return int(found)
        return int(conn.execute(sends.insert().values(
            issue=rendered.slug, list_id=mailing_list.id, list_name=list_name, segment=WELCOME, state="finished",
            frozen=True, created_at=utcnow(), **values)).inserted_primary_key[0])  # type: ignore[index]


def clear_welcome(db: Database, list_name: str) -> bool:
    """`--no-welcome`: nobody else is welcomed; those already waiting are not mailed either."""
    with db.begin() as conn:
        mailing_list = get_list(conn, list_name)
        return bool(conn.execute(update(sends).where(
            sends.c.list_id == mailing_list.id, sends.c.segment == WELCOME, sends.c.state.in_(OPEN))
            .values(state="cancelled", reason="the list's welcome was turned off")).rowcount)


def welcome_of(db: Database, list_name: str) -> str | None:
    """The slug of the list's welcome issue, if it has one."""
    with db.begin(read_only=True) as conn:
        return conn.execute(select(sends.c.issue).where(
            sends.c.list_name == list_name, sends.c.segment == WELCOME, sends.c.state.in_(OPEN))).scalar()


def welcome_newcomer(db: Database, list_id: int, subscriber_id: int) -> bool:
    """Someone joined through the form: queue the list's welcome for them, once ever. True when queued."""
    with db.begin() as conn:
        send_id = conn.execute(select(sends.c.id).where(
            sends.c.list_id == list_id, sends.c.segment == WELCOME, sends.c.state.in_(OPEN))).scalar()
        if send_id is None:
            return False
        welcomed = conn.execute(select(deliveries.c.id).select_from(
            deliveries.join(sends, and_(sends.c.id == deliveries.c.send_id, sends.c.segment == WELCOME)))
            .where(sends.c.list_id == list_id, deliveries.c.subscriber_id == subscriber_id).limit(1)).first()
        if welcomed is not None:
            return False  # welcomed before (by this or an earlier welcome issue): never again
        # One ledger row per person and send, whoever races to add it (two confirmations at once).
        added = conn.execute(insert_new_only(conn.dialect.name, deliveries, ("send_id", "subscriber_id")), dict(
            send_id=send_id, subscriber_id=subscriber_id, state="pending", attempts=0,
            updated_at=utcnow())).first() is not None
        if added:
            conn.execute(update(sends).where(sends.c.id == send_id, sends.c.state == "finished")
                         .values(state="queued", at=utcnow()))
        return added


def _pending(conn: Connection, send_id: int) -> bool:
    return bool(conn.execute(select(func.count()).where(
        deliveries.c.send_id == send_id, deliveries.c.state == "pending")).scalar())



def remove_list(db: Database, name: str) -> tuple[int, int]:
    """`lists rm` and the console's Remove: the list's welcome ends with it, so a list created again under
    that name (which gets the same row back) starts without one. Returns subscribers.remove_list's counts."""
    from subscribers import remove_list as remove
    clear_welcome(db, name)
    return remove(db, name)
