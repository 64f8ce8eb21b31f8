"""Mailing lists: create, list with counts, remove."""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from .addresses import address_hash
from .db import Database, in_values, utcnow
from .errors import ListExists, ListNotFound, SubscribersError
from .schema import lists, memberships, subscribers, suppressions
from .suppression import any_suppressed

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class MailingList:
    id: int
    name: str
    title: str
    double_opt_in: bool


def _row(row: Any) -> MailingList:
    return MailingList(row.id, row.name, row.title, bool(row.double_opt_in))


def create_list(db: Database, name: str, title: str = "", double_opt_in: bool = False) -> MailingList:
    """Create a list; a removed list of that name comes back, with its unsubscribes."""
    title = checked_title(title)
    if not NAME.match(name):
        raise SubscribersError(
            f"{name!r} is not a valid list name: use lower-case letters, digits, '-' and '_' (e.g. news)")
    try:
        with db.begin() as conn:
            removed = conn.execute(select(lists.c.id).where(lists.c.name == name, lists.c.removed_at.is_not(None)))
            old_id = removed.scalar()
            if old_id is not None:
                conn.execute(lists.update().where(lists.c.id == old_id).values(
                    removed_at=None, title=title or name, double_opt_in=double_opt_in))
                return MailingList(old_id, name, title or name, double_opt_in)
            new_id = conn.execute(lists.insert().values(
                name=name, title=title or name, double_opt_in=double_opt_in, created_at=utcnow(),
            )).inserted_primary_key[0]  # type: ignore[index]
    except IntegrityError:
        raise ListExists(f"a list named {name!r} already exists") from None
    return MailingList(new_id, name, title or name, double_opt_in)


def get_list(conn: Connection, name: str) -> MailingList:
    row = conn.execute(select(lists).where(lists.c.name == name, lists.c.removed_at.is_(None))).first()
    if row is None:
        known = [r.name for r in conn.execute(
            select(lists.c.name).where(lists.c.removed_at.is_(None)).order_by(lists.c.name))]
        hint = f" (lists: {', '.join(known)})" if known else " (no lists yet: `newsletter lists create NAME`)"
        raise ListNotFound(f"no list named {name!r}{hint}")
    return _row(row)


def list_lists(db: Database) -> list[dict[str, Any]]:
    """Every list with its member counts: by status, and the suppressed apart.

    A suppressed member is never mailed whatever their status, so they are counted
    once, as `suppressed`, and not in `subscribed`, `unconfirmed` or `unsubscribed`:
    `subscribed` is who a send would mail.
    """
    with db.begin() as conn:
        counts: dict[int, dict[str, int]] = {}
        query = select(memberships.c.list_id, memberships.c.status, func.count()).group_by(
            memberships.c.list_id, memberships.c.status)
        for list_id, status, n in conn.execute(query):
            counts.setdefault(list_id, {})[status] = n
        for (list_id, status), n in _suppressed_members(conn).items():
            by_status = counts.setdefault(list_id, {})
            by_status[status] -= n
            by_status["suppressed"] = by_status.get("suppressed", 0) + n
        out = []
        for row in conn.execute(select(lists).where(lists.c.removed_at.is_(None)).order_by(lists.c.name)):
            c = counts.get(row.id, {})
            out.append({
                "name": row.name, "title": row.title, "double_opt_in": bool(row.double_opt_in),
                "subscribed": c.get("subscribed", 0), "unconfirmed": c.get("unconfirmed", 0),
                "unsubscribed": c.get("unsubscribed", 0), "suppressed": c.get("suppressed", 0),
                "created_at": row.created_at.isoformat(),
            })
        return out


def _suppressed_members(conn: Connection) -> Counter[tuple[int, str]]:
    """(list id, status) -> members whose address is suppressed.

    Suppression is kept by address hash, which SQL cannot compute. Hashing every member
    took seconds on a list of a million, so the members are found from the suppressions
    instead: a suppression that keeps its address names its member's key (an indexed
    look-up per suppression). One that keeps only a hash (`forget`) can match only a
    person added after it, since `forget` deletes the person: only those are hashed here.
    """
    if not any_suppressed(conn):
        return Counter()
    counts: Counter[tuple[int, str]] = Counter()
    keys = sorted({_key_of(email) for email in conn.execute(
        select(suppressions.c.email).where(suppressions.c.email.is_not(None))).scalars()} - {""})
    if keys:
        counts.update({(list_id, status): n for list_id, status, n in conn.execute(
            _live_members(in_values(conn, subscribers.c.email_key, keys))
            .with_only_columns(memberships.c.list_id, memberships.c.status, func.count())
            .group_by(memberships.c.list_id, memberships.c.status))})
    counts.update(_hash_only_members(conn))
    return counts


def _key_of(email: str) -> str:
    from .addresses import try_normalise
    found = try_normalise(email)
    return "" if isinstance(found, str) else found.key


def _live_members(condition: Any) -> Any:
    """Members of lists not removed whose person matches `condition`."""
    return (select(memberships.c.list_id).select_from(memberships.join(subscribers)).join(lists)
            .where(lists.c.removed_at.is_(None), condition))


def _hash_only_members(conn: Connection) -> Counter[tuple[int, str]]:
    first, blocked = None, set()
    for email_hash, created_at in conn.execute(select(suppressions.c.email_hash, suppressions.c.created_at)
                                               .where(suppressions.c.email.is_(None))):
        blocked.add(email_hash)
        first = created_at if first is None or created_at < first else first
    if first is None:
        return Counter()
    rows = conn.execute(_live_members(subscribers.c.created_at >= first).with_only_columns(
        memberships.c.list_id, memberships.c.status, subscribers.c.email_key))
    hashed = functools.lru_cache(maxsize=1 << 16)(address_hash)
    return Counter((list_id, status) for list_id, status, key in rows if hashed(key) in blocked)


def remove_list(db: Database, name: str) -> tuple[int, int]:
    """Remove a list and its memberships; returns (memberships removed, unsubscribed kept).

    Subscribers and suppressions stay, and so do the list's unsubscribed
    memberships (with the list, marked removed): whoever left it must stay
    left if a list of that name is created again (the law, not a preference).
    """
    with db.begin() as conn:
        mailing_list = get_list(conn, name)
        removed = conn.execute(memberships.delete().where(
            memberships.c.list_id == mailing_list.id, memberships.c.status != "unsubscribed")).rowcount
        conn.execute(lists.update().where(lists.c.id == mailing_list.id).values(removed_at=utcnow()))
        kept = conn.execute(select(func.count()).select_from(memberships).where(
            memberships.c.list_id == mailing_list.id)).scalar_one()
        return int(removed), int(kept)


def set_title(db: Database, name: str, title: str) -> MailingList:
    """Rename what readers see (the list's name, used in commands and links, stays)."""
    with db.begin() as conn:
        found = get_list(conn, name)
        conn.execute(update(lists).where(lists.c.id == found.id).values(title=checked_title(title)))
        return get_list(conn, name)


def list_choices(db: Database) -> list[MailingList]:
    """Every list, by name, without counting members (list_lists does): for a form's choice of list."""
    with db.begin(read_only=True) as conn:
        return [_row(r) for r in conn.execute(
            select(lists).where(lists.c.removed_at.is_(None)).order_by(lists.c.name))]


MAX_TITLE = 200  # the column's width (schema.lists.title)


def checked_title(title: str) -> str:
    """A title as stored: stripped, and no longer than its column (PostgreSQL refuses longer ones)."""
    title = title.strip()
    if len(title) > MAX_TITLE:
        raise SubscribersError(f"a list's title is at most {MAX_TITLE} characters (this one has {len(title)})")
    return title
