"""The suppression list: addresses that must never be mailed again."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from .addresses import Address
from .db import in_values, insert_new_only, utcnow
from .schema import suppressions


def suppression_of(conn: Connection, address: Address) -> str | None:
    """The reason an address is suppressed, or None."""
    return conn.execute(
        select(suppressions.c.reason).where(suppressions.c.email_hash == address.hash)).scalar()


def any_suppressed(conn: Connection) -> bool:
    return conn.execute(select(suppressions.c.id).limit(1)).first() is not None


def suppressed_hashes(conn: Connection, hashes: Iterable[str]) -> set[str]:
    wanted = list(hashes)
    if not wanted:
        return set()
    query = select(suppressions.c.email_hash).where(in_values(conn, suppressions.c.email_hash, wanted))
    return set(conn.execute(query).scalars())


def suppress(conn: Connection, address: Address, reason: str, source: str, *, keep_address: bool = True) -> bool:
    """Add an address (idempotent); `keep_address=False` stores only its hash. True if it is new.

    One INSERT … ON CONFLICT DO NOTHING: two event pollers suppressing the same
    address at once must not fail each other, and it is the cheap path for bounces.
    """
    row = {"email_hash": address.hash, "email": address.email if keep_address else None, "reason": reason,
           "source": source, "created_at": utcnow()}
    new = conn.execute(insert_new_only(conn.dialect.name, suppressions, "email_hash"), row).first() is not None
    if not new and not keep_address:
        conn.execute(suppressions.update().where(suppressions.c.email_hash == address.hash).values(email=None))
    return new
