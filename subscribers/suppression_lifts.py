"""The suppression list as people read it (a page at a time, searched), and lifting a suppression.

The rule of what may never be lifted lives here, once (`why_kept`): a complaint (the person
marked a message as spam: only they can undo that, by signing up again and confirming), and a
forgotten person (only a hash is kept, so that they are never mailed again). Lifting removes
the suppression and nothing else: whoever was unsubscribed stays unsubscribed. Each lift is
kept, with its reason and the suppression as it was (migration 0006).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    select,
    update,
)

from .addresses import Address, display_address, normalise, try_normalise
from .db import Database, as_utc, utcnow
from .errors import NotAllowed, SubscriberNotFound, SubscribersError
from .schema import suppressions

PAGE = 50
MAX_REASON = 1000

# Mirrors migration 0006 (kept here so this module stands alone, as accounts.py does for 0005).
_meta = MetaData()
suppression_lifts = Table(
    "suppression_lifts", _meta,
    Column("id", Integer, primary_key=True),
    Column("email_hash", String(64), nullable=False),
    Column("email", String(320)),
    Column("reason", Text, nullable=False),
    Column("actor", String(400), nullable=False),
    Column("lifted_at", DateTime(timezone=True), nullable=False),
    Column("suppressed_reason", Text, nullable=False),
    Column("suppressed_source", String(20), nullable=False),
    Column("suppressed_at", DateTime(timezone=True), nullable=False),
)


def is_complaint(reason: str, source: str = "") -> bool:
    """A suppression that records a complaint: SES's ("complaint", "complaint (abuse)") or an
    imported one (Sendy's "marked as spam")."""
    return source == "complaint" or reason.strip().lower().startswith(("complaint", "marked as spam"))


def why_kept(reason: str, source: str, email: str | None) -> str | None:
    """Why this suppression may never be lifted, or None when it may be."""
    if is_complaint(reason, source):
        return ("a complaint is never lifted: the person marked a message as spam. Only they can come "
                "back, by signing up again and confirming from their mailbox")
    if email is None:
        return ("the person asked to be forgotten: only a hash of the address is kept, so that they are "
                "never mailed again")
    return None


@dataclass(frozen=True)
class Suppression:
    id: int
    email: str | None  # None: forgotten, only the hash is kept
    email_hash: str
    reason: str
    source: str
    created_at: dt.datetime

    @property
    def shown(self) -> str:
        return _shown(self.email)

    @property
    def kept_because(self) -> str | None:
        return why_kept(self.reason, self.source, self.email)

    @property
    def complaint(self) -> bool:
        return is_complaint(self.reason, self.source)


@dataclass(frozen=True)
class SuppressionPage:
    rows: list[Suppression]
    total: int  # every suppression, whatever the search
    newer: int | None  # ?after= for the page of newer rows, if any
    older: int | None  # ?before= for the page of older rows, if any


@dataclass(frozen=True)
class Lift:
    id: int
    email: str | None
    email_hash: str
    reason: str
    actor: str
    lifted_at: dt.datetime
    suppressed_reason: str
    suppressed_source: str
    suppressed_at: dt.datetime

    @property
    def shown(self) -> str:
        return _shown(self.email)


def _shown(email: str | None) -> str:
    return display_address(email) if email is not None else "(forgotten)"


def _suppression(row: Any) -> Suppression:
    return Suppression(row.id, row.email, row.email_hash, row.reason, row.source, as_utc(row.created_at))


def _lift_of(row: Any) -> Lift:
    return Lift(row.id, row.email, row.email_hash, row.reason, row.actor, as_utc(row.lifted_at),
                row.suppressed_reason, row.suppressed_source, as_utc(row.suppressed_at))


def suppression_page(db: Database, *, search: str = "", before: int | None = None, after: int | None = None,
                     limit: int = PAGE) -> SuppressionPage:
    """Suppressions newest first, `limit` at a time, by keyset on the id.

    `before` pages on to older rows, `after` back to newer ones. `search` is an exact address
    (found by its hash, so a forgotten person is found too) or the start of one.
    """
    column = suppressions.c.id
    with db.begin(read_only=True) as conn:
        query = _matching(select(suppressions), search, conn.dialect.name)
        if after is not None:
            rows = [_suppression(r) for r in conn.execute(
                query.where(column > after).order_by(column.asc()).limit(limit + 1))]
            more, rows = len(rows) > limit, rows[:limit][::-1]
            newer, older = (rows[0].id if more and rows else None), (rows[-1].id if rows else None)
        else:
            if before is not None:
                query = query.where(column < before)
            rows = [_suppression(r) for r in conn.execute(query.order_by(column.desc()).limit(limit + 1))]
            more, rows = len(rows) > limit, rows[:limit]
            newer = rows[0].id if before is not None and rows else None
            older = rows[-1].id if more else None
        total = conn.execute(select(func.count()).select_from(suppressions)).scalar_one()
    return SuppressionPage(rows, int(total), newer, older)


def _matching(query: Select[Any], search: str, dialect: str) -> Select[Any]:
    text = search.strip()
    if not text:
        return query
    found = try_normalise(text)
    if isinstance(found, Address):
        return query.where(suppressions.c.email_hash == found.hash)
    return query.where(_starts_with(text.lower(), dialect))


def _starts_with(prefix: str, dialect: str) -> Any:
    """lower(email) starts with `prefix`, as a range of the index of migration 0006.

    Ranges, not LIKE: SQLite uses an index for LIKE only on a plain NOCASE column, and PostgreSQL
    only with a literal pattern. Both compare in code point order here (SQLite's BINARY, "C").
    """
    key: Any = func.lower(suppressions.c.email)
    if dialect == "postgresql":
        key = key.collate("C")
    end = _after_prefix(prefix)
    return key >= prefix if end is None else and_(key >= prefix, key < end)


def _after_prefix(prefix: str) -> str | None:
    """The least string greater than every string that starts with `prefix` (None: no such string)."""
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be encoded: the next code point is U+E000
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:i] + chr(code)
    return None


def lift_suppression(db: Database, email: str, reason: str, actor: str) -> Lift:
    """Remove the suppression of `email`, keeping a record of it and of `reason`.

    NotAllowed for a complaint or a forgotten person (`why_kept`); SubscriberNotFound when the
    address is not suppressed. Memberships are not touched: nobody is re-subscribed by this.
    """
    address = normalise(email, held=True)
    return _lift(db, suppressions.c.email_hash == address.hash, reason, actor,
                 f"{display_address(address.email)} is not suppressed")


def lift_suppression_by_id(db: Database, suppression_id: int, reason: str, actor: str) -> Lift:
    """`lift_suppression` of the suppression with this id (as the console names one)."""
    return _lift(db, suppressions.c.id == suppression_id, reason, actor,
                 "that suppression is not there any more (lifted, or the person signed up again)")


def _lift(db: Database, which: Any, reason: str, actor: str, missing: str) -> Lift:
    why = " ".join(reason.split())
    if not why:
        raise SubscribersError("give the reason for lifting this suppression: it is kept")
    if len(why) > MAX_REASON:
        raise SubscribersError(f"the reason is too long: at most {MAX_REASON} characters")
    with db.begin() as conn:
        row = conn.execute(select(suppressions).where(which)).first()
        if row is None:
            raise SubscriberNotFound(missing)
        kept = why_kept(row.reason, row.source, row.email)
        if kept is not None:
            raise NotAllowed(f"{_shown(row.email)} stays suppressed: {kept}")
        # Deleted by id: a suppression that came back in between (a new bounce) is a new one, not lifted.
        conn.execute(delete(suppressions).where(suppressions.c.id == row.id))
        values = dict(email_hash=row.email_hash, email=row.email, reason=why, actor=actor[:400], lifted_at=utcnow(),
                      suppressed_reason=row.reason, suppressed_source=row.source, suppressed_at=row.created_at)
        lift_id = conn.execute(suppression_lifts.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return _lift_of(conn.execute(select(suppression_lifts).where(suppression_lifts.c.id == lift_id)).one())


def get_suppression(db: Database, suppression_id: int) -> tuple[Suppression, list[Lift]]:
    """One suppression, and the earlier lifts of its address (SubscriberNotFound when it is gone)."""
    with db.begin(read_only=True) as conn:
        row = conn.execute(select(suppressions).where(suppressions.c.id == suppression_id)).first()
        if row is None:
            raise SubscriberNotFound("that suppression is not there any more (lifted, or the person signed up again)")
        earlier = conn.execute(select(suppression_lifts).where(suppression_lifts.c.email_hash == row.email_hash)
                               .order_by(suppression_lifts.c.id.desc()))
        return _suppression(row), [_lift_of(r) for r in earlier]


def suppression_lifts_of(db: Database, *, limit: int = PAGE) -> tuple[list[Lift], int]:
    """The latest lifts, newest first, and how many there are in all."""
    with db.begin(read_only=True) as conn:
        rows = conn.execute(select(suppression_lifts).order_by(suppression_lifts.c.id.desc()).limit(limit))
        lifted = [_lift_of(r) for r in rows]
        total = conn.execute(select(func.count()).select_from(suppression_lifts)).scalar_one()
    return lifted, int(total)


def forget_lifts(conn: Connection, address: Address) -> None:
    """`forget`: the lifts of this address keep its hash, not the address (nor in their reasons)."""
    forms = sorted({address.key, display_address(address.email).lower()}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(f) for f in forms), re.I)
    for lift_id, reason in conn.execute(select(suppression_lifts.c.id, suppression_lifts.c.reason)
                                        .where(suppression_lifts.c.email_hash == address.hash)).all():
        conn.execute(update(suppression_lifts).where(suppression_lifts.c.id == lift_id)
                     .values(email=None, reason=pattern.sub("[forgotten]", reason)))
