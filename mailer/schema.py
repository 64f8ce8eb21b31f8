"""The per-recipient delivery ledger (migrations in mailer/migrations/versions/).

A send is (issue, list). Its recipients are frozen into `deliveries` when it
starts; each row goes pending -> sending -> sent | failed (or skipped, when
the person left or was suppressed before their turn). A row is marked
`sending` and committed BEFORE the transport is called, so after a crash a
row left `sending` is "unknown" and is never resent unless asked.
Deliveries hold no personal data: the address is read from `subscribers`
when the row's turn comes, and `forget` nulls the subscriber id.
"""
from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

STATES = ("pending", "sending", "sent", "failed", "skipped")

sends = Table(
    "sends", metadata,
    Column("id", Integer, primary_key=True),
    Column("issue", String(100), nullable=False),
    Column("list_id", Integer),
    Column("list_name", String(100), nullable=False),
    Column("subject", Text, nullable=False),
    Column("state", String(20), nullable=False),  # running, finished, stopped
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("send_id", Integer, nullable=False),
    Column("subscriber_id", Integer),
    Column("state", String(20), nullable=False),
    Column("message_id", String(200)),
    Column("error", Text),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)
