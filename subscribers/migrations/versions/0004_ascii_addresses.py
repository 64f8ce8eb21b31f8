"""Addresses with an IDN domain are stored in ASCII (punycode), the form SES can send to.

Until now email-validator's Unicode form was stored (`x@bücher.de`, even when
`x@xn--bcher-kva.de` was typed); SES does not support SMTPUTF8, so the sender
crashed on them. This rewrites `subscribers.email` and `email_key`, and the
addresses the suppression list keeps, to the ASCII form addresses.py now stores.

- Hashes (suppressions, sign-up attempts, SES events) are of the key with its
  domain in Unicode (addresses.address_hash), which is what the key was before:
  they stay valid, including those of forgotten people, whose address is gone.
  A suppression that keeps its address gets its hash recomputed from it anyway.
- Two rows that become one key are one person: the row with memberships is kept
  (the most; then the oldest), the other's memberships, name and fields move onto
  it, and on a list where both had one, the one that left wins: nobody is
  re-subscribed. Rows of other tables that point at the dropped row move to the
  kept one where that breaks no unique constraint; otherwise their foreign key's
  ON DELETE applies, as for `forget`.
- A local part with non-ASCII characters cannot be sent at all: those rows are
  left as they are (the sender fails them, each with its reason).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""
import hashlib
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

subscribers = sa.table(
    "subscribers", sa.column("id", sa.Integer), sa.column("email", sa.String), sa.column("email_key", sa.String),
    sa.column("name", sa.String), sa.column("fields", sa.JSON))
memberships = sa.table(
    "memberships", sa.column("list_id", sa.Integer), sa.column("subscriber_id", sa.Integer),
    sa.column("status", sa.String))
suppressions = sa.table(
    "suppressions", sa.column("id", sa.Integer), sa.column("email", sa.String), sa.column("email_hash", sa.String))

# On one list, which membership of a merged person stands: leaving always wins.
RANK = {"unsubscribed": 3, "subscribed": 2, "unconfirmed": 1}


def upgrade() -> None:
    bind = op.get_bind()
    _subscribers(bind)
    _suppressions(bind)


def downgrade() -> None:
    """Back to the Unicode form the code of 0003 stores (merged rows stay merged)."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(subscribers.c.id, subscribers.c.email)
                        .where(subscribers.c.email_key.contains("xn--"))).all()
    for row in rows:
        email = _unicode(row.email)
        bind.execute(subscribers.update().where(subscribers.c.id == row.id)
                     .values(email=email, email_key=email.lower()))
    rows = bind.execute(sa.select(suppressions.c.id, suppressions.c.email)
                        .where(suppressions.c.email.contains("xn--"))).all()
    for row in rows:
        bind.execute(suppressions.update().where(suppressions.c.id == row.id).values(email=_unicode(row.email)))


# --- subscribers ----------------------------------------------------------------------------------------


def _subscribers(bind: Any) -> None:
    rows = bind.execute(sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.email_key)
                        .where(_has_non_ascii(bind, subscribers.c.email))).all()
    new: dict[int, str] = {}
    for row in rows:
        email = _ascii(row.email)
        if email is not None:
            new[row.id] = email
    by_key: dict[str, list[int]] = defaultdict(list)
    for subscriber_id, email in new.items():
        by_key[email.lower()].append(subscriber_id)
    for key, converted in by_key.items():
        # Someone may already be stored under the ASCII key (typed as xn--, written by hand).
        stored = bind.execute(sa.select(subscribers.c.id).where(subscribers.c.email_key == key)).scalars().all()
        ids = sorted({*converted, *stored})
        keeper = _merge(bind, ids) if len(ids) > 1 else ids[0]
        if keeper in new:  # after the merge: the others no longer hold the key
            bind.execute(subscribers.update().where(subscribers.c.id == keeper)
                         .values(email=new[keeper], email_key=key))


def _merge(bind: Any, ids: list[int]) -> int:
    """Fold several rows of one person into one; returns the id kept."""
    counts = dict(bind.execute(sa.select(memberships.c.subscriber_id, sa.func.count())
                               .where(memberships.c.subscriber_id.in_(ids))
                               .group_by(memberships.c.subscriber_id)).all())
    keeper = min(ids, key=lambda i: (-counts.get(i, 0), i))
    for dropped in ids:
        if dropped != keeper:
            _fold(bind, keeper, dropped)
    return keeper


def _fold(bind: Any, keeper: int, dropped: int) -> None:
    _move_memberships(bind, keeper, dropped)
    _merge_details(bind, keeper, dropped)
    _repoint_references(bind, keeper, dropped)
    bind.execute(subscribers.delete().where(subscribers.c.id == dropped))


def _move_memberships(bind: Any, keeper: int, dropped: int) -> None:
    theirs = {r.list_id: r.status for r in bind.execute(
        sa.select(memberships.c.list_id, memberships.c.status).where(memberships.c.subscriber_id == keeper))}
    for row in bind.execute(sa.select(memberships.c.list_id, memberships.c.status)
                            .where(memberships.c.subscriber_id == dropped)).all():
        kept = theirs.get(row.list_id)
        if kept is not None and RANK.get(kept, 0) >= RANK.get(row.status, 0):
            continue  # the kept row's membership stands; the dropped one goes with its row
        if kept is not None:
            bind.execute(memberships.delete().where(memberships.c.subscriber_id == keeper,
                                                    memberships.c.list_id == row.list_id))
        bind.execute(memberships.update().where(memberships.c.subscriber_id == dropped,
                                                memberships.c.list_id == row.list_id)
                     .values(subscriber_id=keeper))


def _merge_details(bind: Any, keeper: int, dropped: int) -> None:
    """The kept row's name and fields win; what only the dropped row knew is kept."""
    rows = {r.id: r for r in bind.execute(sa.select(subscribers.c.id, subscribers.c.name, subscribers.c.fields)
                                          .where(subscribers.c.id.in_([keeper, dropped])))}
    kept, gone = rows[keeper], rows[dropped]
    fields = {**(gone.fields or {}), **(kept.fields or {})}
    bind.execute(subscribers.update().where(subscribers.c.id == keeper)
                 .values(name=kept.name or gone.name or "", fields=fields))


def _repoint_references(bind: Any, keeper: int, dropped: int) -> None:
    """Rows of other tables (the mailer's ledger) follow the person to the kept row.

    Found through the database's own foreign keys, so this package names no other
    package's table. Where a unique constraint forbids it (both rows were in the
    same send), the row stays and the foreign key's ON DELETE applies to it.
    """
    inspector = sa.inspect(bind)
    for table in inspector.get_table_names():
        if table in ("memberships", "subscribers"):
            continue
        key = inspector.get_pk_constraint(table)["constrained_columns"]
        for fk in inspector.get_foreign_keys(table):
            if fk["referred_table"] == "subscribers" and len(fk["constrained_columns"]) == 1 and len(key) == 1:
                _repoint(bind, sa.table(table, sa.column(key[0]), sa.column(fk["constrained_columns"][0])),
                         keeper, dropped)


def _repoint(bind: Any, table: Any, keeper: int, dropped: int) -> None:
    row_id, column = table.c  # one row at a time: one that may not move must not hold back the others
    for found in bind.execute(sa.select(row_id).where(column == dropped)).scalars().all():
        savepoint = bind.begin_nested()
        try:
            bind.execute(table.update().where(row_id == found).values({column.name: keeper}))
        except IntegrityError:
            savepoint.rollback()
        else:
            savepoint.commit()


# --- suppressions ---------------------------------------------------------------------------------------


def _suppressions(bind: Any) -> None:
    rows = bind.execute(sa.select(suppressions.c.id, suppressions.c.email, suppressions.c.email_hash)
                        .where(sa.or_(_has_non_ascii(bind, suppressions.c.email),
                                      suppressions.c.email.contains("xn--")))
                        .order_by(suppressions.c.id)).all()
    for row in rows:
        email = _ascii(row.email)
        if email is None:
            continue
        digest = _hash(email.lower())
        if email == row.email and digest == row.email_hash:
            continue
        other = bind.execute(sa.select(suppressions.c.id).where(
            suppressions.c.email_hash == digest, suppressions.c.id != row.id)).scalar()
        if other is not None:  # the same address suppressed twice: the older entry (its reason) stands
            bind.execute(suppressions.delete().where(suppressions.c.id == max(other, row.id)))
            if other < row.id:
                continue
        bind.execute(suppressions.update().where(suppressions.c.id == row.id).values(email=email, email_hash=digest))


# --- the address forms, frozen here as addresses.py had them at 0004 -------------------------------------


def _has_non_ascii(bind: Any, column: Any) -> Any:
    # More bytes than characters in UTF-8: some character is not ASCII.
    if bind.dialect.name == "postgresql":
        return sa.func.octet_length(column) != sa.func.length(column)
    return sa.func.length(sa.cast(column, sa.LargeBinary)) != sa.func.length(column)


def _ascii(email: str) -> str | None:
    """The address with its domain in punycode; None when it cannot be sent (a non-ASCII local part)."""
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        return None
    ascii_domain = _ascii_domain(domain)
    return None if ascii_domain is None else f"{local}@{ascii_domain}"


def _ascii_domain(domain: str) -> str | None:
    if domain.isascii():
        return domain.lower()
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).ascii_domain  # type: ignore[no-any-return]
    except EmailNotValidError:
        return None  # never valid: leave it, the sender fails it with its reason


def _unicode(email: str) -> str:
    local, _, domain = email.rpartition("@")
    labels = [label[4:].encode("ascii").decode("punycode") if label.startswith("xn--") else label
              for label in domain.split(".")]
    return f"{local}@{'.'.join(labels)}"


def _hash(key: str) -> str:
    """addresses.address_hash: SHA-256 of the key with its domain in Unicode."""
    if "xn--" in key:
        key = _unicode(key).lower()
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
