"""Tables (SQLAlchemy Core). Changes go through a migration in migrations/versions/."""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

STATUSES = ("subscribed", "unconfirmed", "unsubscribed")
SOURCES = ("import", "form", "admin", "one-click", "complaint", "bounce")

lists = Table(
    "lists", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("title", String(200), nullable=False, server_default=""),
    Column("double_opt_in", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Set by `lists rm`: the list is gone, but its unsubscribed members are kept,
    # so a list re-created under the same name cannot mail them again.
    Column("removed_at", DateTime(timezone=True)),
)

subscribers = Table(
    "subscribers", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    # The comparison key: the address lower-cased (see addresses.py).
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(300), nullable=False, server_default=""),
    Column("fields", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

memberships = Table(
    "memberships", metadata,
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("source", String(20), nullable=False),
    Column("subscribed_at", DateTime(timezone=True)),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("unsubscribed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_memberships_subscriber", "subscriber_id"),
)

# Addresses never to be mailed. `email` is dropped by `forget`; the hash stays.
suppressions = Table(
    "suppressions", metadata,
    Column("id", Integer, primary_key=True),
    Column("email_hash", String(64), nullable=False, unique=True),
    Column("email", String(320)),
    Column("reason", Text, nullable=False),
    Column("source", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per sign-up attempt, by address and by client IP (both hashed): the
# rate limits live in the database so several `serve` processes share them.
signup_attempts = Table(
    "signup_attempts", metadata,
    Column("id", Integer, primary_key=True),
    Column("bucket", String(20), nullable=False),  # "address" or "ip"
    Column("key_hash", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
