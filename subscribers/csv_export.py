"""`subscribers export`: a list as CSV, streamed; the file round-trips through `import`."""
from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Text, cast, func, select, text

from .csv_files import atomic_writer, neutralise
from .db import Database, iso
from .lists import get_list
from .schema import memberships, subscribers

CHUNK = 5000


def export_csv(db: Database, list_name: str, out: Path | None = None,
               on_progress: Callable[[int], None] | None = None) -> int:
    """Write the list (every status) as CSV to `out` or stdout; returns the rows written.

    Rows are read through the driver, not SQLAlchemy's result processing:
    decoding JSON and timestamps per row would cost more than the export.
    """
    with db.begin(read_only=True) as conn:  # a long read: writers must not wait for it
        mailing_list = get_list(conn, list_name)
        custom = _field_names(conn, mailing_list.id)
        query = select(subscribers.c.email, subscribers.c.name, memberships.c.status,
                       func.coalesce(cast(subscribers.c.fields, Text), "{}"),
                       memberships.c.subscribed_at, memberships.c.unsubscribed_at,
                       ).select_from(subscribers.join(memberships)).where(
            memberships.c.list_id == mailing_list.id).order_by(subscribers.c.id)
        compiled = query.compile(dialect=conn.dialect)
        raw = conn.connection.driver_connection
        # PostgreSQL: a named (server-side) cursor, or psycopg fetches every row at once.
        cursor = raw.cursor(name="newsletter_export") if conn.dialect.name == "postgresql" else raw.cursor()  # type: ignore[union-attr]
        params = compiled.params if compiled.positiontup is None else [compiled.params[n] for n in compiled.positiontup]
        cursor.execute(compiled.string, params)
        if out is None:
            return _write(sys.stdout, custom, cursor, on_progress)
        with atomic_writer(out) as handle:
            return _write(handle, custom, cursor, on_progress)


def _field_names(conn: Connection, list_id: int) -> list[str]:
    """Every custom field name used on the list, from the database's own JSON functions."""
    if conn.dialect.name == "postgresql":
        sql = ("SELECT DISTINCT jsonb_object_keys(s.fields::jsonb) FROM subscribers s "
               "JOIN memberships m ON m.subscriber_id = s.id WHERE m.list_id = %(list_id)s")
    else:
        sql = ("SELECT DISTINCT j.key FROM subscribers s JOIN memberships m ON m.subscriber_id = s.id, "
               "json_each(s.fields) j WHERE m.list_id = :list_id")
    return sorted(conn.execute(text(sql.replace("%(list_id)s", ":list_id")), {"list_id": list_id}).scalars())


def _write(handle: IO[str], custom: list[str], cursor: Any, on_progress: Callable[[int], None] | None) -> int:
    writer = csv.writer(handle)
    writer.writerow(["email", "name", "status", *custom, "subscribed_at", "unsubscribed_at"])
    count = 0
    loads = json.loads
    while chunk := cursor.fetchmany(CHUNK):
        for email, name, status, fields, sub, unsub in chunk:
            values = loads(fields)
            # Neutralised (csv_files.neutralise): a name or field is whatever a sign-up form was sent.
            writer.writerow([neutralise(email), neutralise(name), status,
                             *(_cell(values.get(k, "")) for k in custom), _iso(sub), _iso(unsub)])
        count += len(chunk)
        if on_progress is not None:
            on_progress(count)
    return count


def _cell(value: Any) -> Any:
    """A field as written: text neutralised; a number or a JSON object or list (from listmonk) as JSON."""
    if isinstance(value, str):
        return neutralise(value)
    return neutralise(json.dumps(value)) if isinstance(value, (dict, list, bool)) else value


def _iso(value: Any) -> str:
    """ISO 8601 in UTC. SQLite hands back its text form, PostgreSQL a datetime."""
    if value is None:
        return ""
    if isinstance(value, str):  # "2026-11-26 11:38:57[.123456]", stored in UTC
        value = dt.datetime.fromisoformat(value)
    return iso(value) or ""
