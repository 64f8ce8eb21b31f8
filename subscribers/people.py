"""One subscriber: record merging, shared by `add`, the form and imports."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from .addresses import Address
from .db import utcnow
from .schema import subscribers


def field_name(key: str) -> str:
    """Custom field names, in one form wherever they come from: `Home Town` -> `home_town`.

    Merge fields (`{{ fields.home_town }}`) and CSV columns must agree.
    """
    return "_".join(key.strip().lower().split())


def field_names(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {field_name(k): v for k, v in fields.items()}


def merged(old_name: str, old_fields: Mapping[str, Any], name: str,
           fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """New non-empty values win; what the new data does not mention is kept."""
    out = dict(old_fields)
    out.update({k: v for k, v in fields.items() if v not in ("", None)})
    return (name or old_name, out)


def full_name(name: str, fields: Mapping[str, Any]) -> str:
    """`name`, or first and last name joined when only those are given.

    No first name, no name: the mailer greets by the name's first word, and a last
    name alone would greet "Dear Patel,"; an empty name lets the merge default greet
    ("Dear friend,"). The last name stays in the fields.
    """
    if name:
        return name
    first = fields.get("first_name")
    if not first or not (first := str(first).strip()):
        return ""
    last = fields.get("last_name")
    return f"{first} {last}".rstrip() if last else first


def upsert(conn: Connection, address: Address, name: str, fields: Mapping[str, Any]) -> tuple[int, str]:
    """Create or update a subscriber; returns (id, "added" | "updated" | "unchanged")."""
    fields = field_names(fields)
    row = conn.execute(select(subscribers.c.id, subscribers.c.name, subscribers.c.fields)
                       .where(subscribers.c.email_key == address.key)).first()
    now = utcnow()
    if row is None:
        new_id = conn.execute(subscribers.insert().values(
            email=address.email, email_key=address.key, name=full_name(name, fields), fields=dict(fields),
            created_at=now, updated_at=now)).inserted_primary_key[0]  # type: ignore[index]
        return int(new_id), "added"
    new_name, new_fields = merged(row.name, row.fields, full_name(name, fields), fields)
    if (new_name, new_fields) == (row.name, row.fields):
        return int(row.id), "unchanged"
    conn.execute(subscribers.update().where(subscribers.c.id == row.id)
                 .values(name=new_name, fields=new_fields, updated_at=now))
    return int(row.id), "updated"


def find(conn: Connection, address: Address) -> Any:
    return conn.execute(select(subscribers).where(subscribers.c.email_key == address.key)).first()
