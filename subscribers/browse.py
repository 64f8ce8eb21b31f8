"""Browsing people a page at a time, searching them by address, and editing one (the console, design §13).

Built for lists of a million: a page is found by keyset (the id of the last person
shown), never by OFFSET, and nothing counts a whole list. Three ways in, each an
index range that stops after one page:
- a list (and status): memberships by (list_id, status, subscriber_id), newest first;
- everyone: subscribers by id, newest first;
- a search: subscribers by the address key, in address order (a prefix is a key range,
  `key >= q AND key < q'` where q' is q with its last character incremented).
The cursor in a page link is always a person's id, so no address is written into a URL.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, exists, func, select

from .addresses import address_hash, display_address, normalise
from .db import Database, as_utc, in_values, utcnow
from .errors import SubscriberNotFound, SubscribersError
from .lists import get_list
from .membership import _leave
from .people import field_name
from .schema import STATUSES, lists, memberships, subscribers
from .suppression import suppressed_hashes

PAGE = 50
MAX_SELECTED = 500  # people one bulk action takes (a page holds 50)
MAX_NAME = 300  # subscribers.name
MAX_FIELDS, MAX_FIELD_KEY, MAX_FIELD_VALUE = 100, 100, 2000


@dataclass(frozen=True)
class ListStatus:
    list: str
    status: str


@dataclass(frozen=True)
class PersonRow:
    """One row of a page: no fields, no history (those are on the person's own page)."""
    id: int
    email: str  # as stored and sent (ASCII)
    shown: str  # as people read it (a punycode domain in Unicode)
    name: str
    created_at: dt.datetime
    lists: tuple[ListStatus, ...]
    suppressed: bool


@dataclass(frozen=True)
class PeoplePage:
    people: list[PersonRow]
    after: int | None  # the cursor of the next page, None on the last
    before: int | None  # the cursor of the previous page, None on the first
    by_address: bool  # a search: in address order (else newest first)


def list_names(db: Database) -> list[tuple[str, str]]:
    """(name, title) of every list, by name: for choosing one (list_lists counts members: too dear here)."""
    with db.begin(read_only=True) as conn:
        rows = conn.execute(select(lists.c.name, lists.c.title).where(lists.c.removed_at.is_(None))
                            .order_by(lists.c.name))
        return [(r.name, r.title) for r in rows]


def find_people(db: Database, *, list_name: str | None = None, status: str | None = None, search: str = "",
           after: int | None = None, before: int | None = None, limit: int = PAGE) -> PeoplePage:
    """One page of people: of a list (and status) or of everyone, or those whose address starts with `search`.

    `after` / `before` are the cursors of the page links (a person's id). A cursor whose person has
    gone since (forgotten) starts from the top again.
    """
    if status and status not in STATUSES:
        raise SubscribersError(f"{status!r} is not a status (one of {', '.join(STATUSES)})")
    prefix = search_key(search)
    with db.begin(read_only=True) as conn:
        if conn.dialect.name == "postgresql":
            # A plan for these values: psycopg prepares a statement after its fifth run, and PostgreSQL's
            # generic plan for it (a prefix it cannot see) walks the whole key index for a small list's
            # members (0.3 s at a million, against 10 ms).
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
        list_id = get_list(conn, list_name).id if list_name else None
        cursor = after if after is not None else before
        if prefix and cursor is not None and _key_of(conn, cursor) is None:
            after = before = cursor = None  # that person has gone since: from the top
        backwards = before is not None
        if prefix:
            ids, more = _by_address(conn, prefix, list_id, status, cursor, backwards, limit)
        elif list_id is not None:
            ids, more = _by_membership(conn, list_id, status, cursor, backwards, limit)
        else:
            ids, more = _by_id(conn, status, cursor, backwards, limit)
        people = _people(conn, ids)
    # Reading forwards, `more` says whether a next page exists and a cursor that there was a previous
    # one; reading backwards, the other way round.
    has_next = more if not backwards else bool(ids)
    has_previous = more if backwards else cursor is not None
    return PeoplePage(people, after=ids[-1] if ids and has_next else None,
                before=ids[0] if ids and has_previous else None, by_address=bool(prefix))


def search_key(text: str) -> str:
    """What an address key must start with: the text lower-cased (keys are), an IDN domain in punycode
    as stored (`anna@bücher` finds anna@xn--bcher-kva.de; a label is converted once it is whole)."""
    text = text.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or domain.isascii():
        return text
    return f"{local}@{'.'.join(_ace(label) for label in domain.split('.'))}"


def _ace(label: str) -> str:
    import idna  # email-validator's own IDNA 2008 codec (UTS 46 mapping): the form addresses.py stores
    if label.isascii():
        return label
    try:
        return str(idna.encode(label, uts46=True).decode("ascii"))
    except idna.IDNAError:
        return label  # cannot be a stored domain: the search finds nobody, as it should


def _after_prefix(prefix: str) -> str:
    """The least string greater than every string starting with `prefix` (byte = code point order)."""
    while prefix and ord(prefix[-1]) >= 0x10FFFF:
        prefix = prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else ""


def _key_column(conn: Connection) -> ColumnElement[Any]:
    # Code point order on both databases: SQLite's BINARY is; PostgreSQL's database collation may not be
    # (en_US sorts "a-b" beside "ab"), so its searches use "C" and the index of migration 0007.
    return subscribers.c.email_key.collate("C") if conn.dialect.name == "postgresql" else subscribers.c.email_key


def _by_address(conn: Connection, prefix: str, list_id: int | None, status: str | None, cursor: int | None,
                backwards: bool, limit: int) -> tuple[list[int], bool]:
    # One range, its bounds worked out here: given `key >= prefix AND key > cursor`, SQLite bounds the
    # index by one of them and filters by the other, reading from the prefix's start on every page.
    # (Python compares strings by code point, as both databases do here.)
    low, low_included, high = prefix, True, _after_prefix(prefix)
    cursor_key = _key_of(conn, cursor) if cursor is not None else None
    if cursor_key is not None and not backwards and cursor_key >= low:
        low, low_included = cursor_key, False
    if cursor_key is not None and backwards and (not high or cursor_key < high):
        high = cursor_key
    if list_id is not None and conn.dialect.name == "sqlite" and _small(conn, list_id):
        # A small list among many people: its members first (by the list's index), their keys compared
        # as an expression, which SQLite cannot take the address index for. Walking the address index
        # met few of them: 0.8 s for a 2-letter search in a list of 1,000 among a million, now ~10 ms.
        key: Any = func.lower(subscribers.c.email_key)  # keys are lower case already
        query = (select(subscribers.c.id).select_from(memberships.join(subscribers))
                 .where(memberships.c.list_id == list_id, *([memberships.c.status == status] if status else [])))
    else:
        key = _key_column(conn)
        query = select(subscribers.c.id)
        if list_id is not None or status:
            query = query.where(_member(subscribers.c.id, list_id, status))
    query = query.where(key >= low if low_included else key > low)
    if high:
        query = query.where(key < high)
    return _keyset(conn, query, key, None, ascending=True, backwards=backwards, limit=limit)


SMALL = 20_000  # members: a list this small is read from its own index for a search within it


def _small(conn: Connection, list_id: int) -> bool:
    """Whether the list has fewer than SMALL members (reading SMALL index entries at most)."""
    some = select(memberships.c.subscriber_id).where(memberships.c.list_id == list_id).limit(SMALL).subquery()
    return int(conn.execute(select(func.count()).select_from(some)).scalar_one()) < SMALL


def _by_membership(conn: Connection, list_id: int, status: str | None, cursor: int | None, backwards: bool,
                   limit: int) -> tuple[list[int], bool]:
    query = select(memberships.c.subscriber_id).where(memberships.c.list_id == list_id)
    if status:
        query = query.where(memberships.c.status == status)
    return _keyset(conn, query, memberships.c.subscriber_id, cursor, ascending=False, backwards=backwards,
                   limit=limit)


def _by_id(conn: Connection, status: str | None, cursor: int | None, backwards: bool,
           limit: int) -> tuple[list[int], bool]:
    query = select(subscribers.c.id)
    if status:
        query = query.where(_member(subscribers.c.id, None, status))
    return _keyset(conn, query, subscribers.c.id, cursor, ascending=False, backwards=backwards, limit=limit)


def _member(person: Any, list_id: int | None, status: str | None) -> ColumnElement[bool]:
    """EXISTS a membership of the person (of that list, in that status): a primary-key probe."""
    where = [memberships.c.subscriber_id == person]
    if list_id is not None:
        where.append(memberships.c.list_id == list_id)
    if status:
        where.append(memberships.c.status == status)
    return exists().where(*where)


def _keyset(conn: Connection, query: Select[Any], key: Any, cursor: Any, *, ascending: bool, backwards: bool,
            limit: int) -> tuple[list[int], bool]:
    """The ids of one page in display order, and whether there are more beyond it in the direction read.

    Reading backwards (a "Previous" link) walks the index the other way from the cursor and turns
    the rows round; limit + 1 rows tell whether another page follows without counting anything.
    """
    forward = ascending != backwards  # walking the key upwards
    if cursor is not None:
        query = query.where(key > cursor if forward else key < cursor)
    query = query.order_by(key.asc() if forward else key.desc()).limit(limit + 1)
    ids = [int(i) for i in conn.execute(query).scalars()]
    more = len(ids) > limit
    ids = ids[:limit]
    return (ids[::-1] if backwards else ids), more


def _key_of(conn: Connection, person_id: int) -> str | None:
    return conn.execute(select(subscribers.c.email_key).where(subscribers.c.id == person_id)).scalar()


def _people(conn: Connection, ids: Sequence[int]) -> list[PersonRow]:
    """The rows of a page: two look-ups by primary key and one of the suppression list, however big the list."""
    if not ids:
        return []
    rows = {r.id: r for r in conn.execute(
        select(subscribers.c.id, subscribers.c.email, subscribers.c.email_key, subscribers.c.name,
               subscribers.c.created_at).where(in_values(conn, subscribers.c.id, list(ids))))}
    member_of: dict[int, list[ListStatus]] = {}
    for row in conn.execute(select(memberships.c.subscriber_id, lists.c.name, memberships.c.status)
                            .select_from(memberships.join(lists))
                            .where(in_values(conn, memberships.c.subscriber_id, list(ids)),
                                   lists.c.removed_at.is_(None)).order_by(lists.c.name)):
        member_of.setdefault(row.subscriber_id, []).append(ListStatus(row.name, row.status))
    hashes = {i: address_hash(r.email_key) for i, r in rows.items()}
    blocked = suppressed_hashes(conn, hashes.values())
    return [PersonRow(i, rows[i].email, display_address(rows[i].email), rows[i].name, as_utc(rows[i].created_at),
                   tuple(member_of.get(i, ())), hashes[i] in blocked)
            for i in ids if i in rows]


def email_of(db: Database, person_id: int) -> str:
    """The stored address of the person with this id (the console's URLs carry ids, not addresses)."""
    with db.begin(read_only=True) as conn:
        found = conn.execute(select(subscribers.c.email).where(subscribers.c.id == person_id)).scalar()
    if found is None:
        raise SubscriberNotFound(f"no subscriber #{person_id} (forgotten, or never here)")
    return str(found)


def parse_fields(text: str) -> dict[str, str]:
    """Custom fields written one a line as KEY=VALUE, as `subscribers add --field KEY=VALUE` takes them.

    Keys take their one form (`Home Town` -> `home_town`, as imports and merge fields use); blank
    lines are skipped; every bad line is reported at once, by its number.
    """
    out: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        name = field_name(key)
        if not sep or not name:
            problems.append(f"line {number}: {line.strip()[:60]!r} is not KEY=VALUE")
        elif len(name) > MAX_FIELD_KEY or len(value.strip()) > MAX_FIELD_VALUE:
            problems.append(f"line {number}: a key is at most {MAX_FIELD_KEY} characters, "
                            f"a value at most {MAX_FIELD_VALUE}")
        elif name in out:
            problems.append(f"line {number}: {name!r} is given twice")
        else:
            out[name] = value.strip()
    if len(out) > MAX_FIELDS:
        problems.append(f"at most {MAX_FIELDS} fields")
    if problems:
        raise SubscribersError("fields: " + "; ".join(problems))
    return out


def edit_subscriber(db: Database, person_id: int, name: str, fields: Mapping[str, Any]) -> str:
    """Set a person's name and fields to exactly these (a field left out is removed).

    Returns "updated" or "unchanged". Unlike an import's merge, an edit may empty a value:
    it is what the person asked to be held about them (GDPR rectification).
    """
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise SubscribersError(f"a name is at most {MAX_NAME} characters")
    wanted = {field_name(k): ("" if v is None else str(v)) for k, v in fields.items()}
    if any(not k for k in wanted):
        raise SubscribersError("fields: a field needs a name")
    with db.begin() as conn:
        row = conn.execute(select(subscribers.c.name, subscribers.c.fields)
                           .where(subscribers.c.id == person_id)).first()
        if row is None:
            raise SubscriberNotFound(f"no subscriber #{person_id} (forgotten, or never here)")
        if (row.name, dict(row.fields)) == (name, wanted):
            return "unchanged"
        conn.execute(subscribers.update().where(subscribers.c.id == person_id)
                     .values(name=name, fields=wanted, updated_at=utcnow()))
        return "updated"


def unsubscribe_people(db: Database, person_ids: Iterable[int], list_name: str, source: str = "admin") -> int:
    """Unsubscribe these people from one list (the bulk action); idempotent. How many were changed."""
    wanted = sorted(set(person_ids))
    if len(wanted) > MAX_SELECTED:
        raise SubscribersError(f"at most {MAX_SELECTED} people at a time")
    with db.begin() as conn:
        list_id = get_list(conn, list_name).id
        return sum(1 for person_id in wanted if _leave(conn, person_id, list_id, source))


def emails_of(db: Database, person_ids: Iterable[int]) -> dict[int, str]:
    """id -> stored address of those that exist (a bulk action adds through add_subscriber, by address)."""
    wanted = sorted(set(person_ids))
    if len(wanted) > MAX_SELECTED:
        raise SubscribersError(f"at most {MAX_SELECTED} people at a time")
    if not wanted:
        return {}
    with db.begin(read_only=True) as conn:
        return {int(r.id): str(r.email) for r in conn.execute(
            select(subscribers.c.id, subscribers.c.email).where(in_values(conn, subscribers.c.id, wanted)))}


def id_of(db: Database, email: str) -> int:
    """The id of the person with this address (after adding someone, the console shows their page)."""
    address = normalise(email, held=True)
    with db.begin(read_only=True) as conn:
        found = conn.execute(select(subscribers.c.id).where(subscribers.c.email_key == address.key)).scalar()
    if found is None:
        raise SubscriberNotFound(f"no subscriber {display_address(address.email)}")
    return int(found)
