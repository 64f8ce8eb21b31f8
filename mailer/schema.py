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

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

STATES = ("pending", "sending", "sent", "failed", "skipped")

sends = Table(
    "sends", metadata,
    Column("id", Integer, primary_key=True),
    Column("issue", String(100), nullable=False),
    Column("list_id", Integer),
    Column("list_name", String(100), nullable=False),
    Column("subject", Text, nullable=False),
    Column("state", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("content_hash", String(64)),  # the built issue it started with (m0004)
    # Sends as jobs (m0005): state is scheduled, queued, running, paused, finished, cancelled,
    # expired or stopped; `at` is when it is due; `segment` is '' for the whole list.
    Column("segment", String(100), nullable=False, default=""),
    Column("at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("reason", Text),
    Column("issue_path", Text),
    Column("frozen", Boolean, nullable=False, default=True),  # its recipients are in the ledger
)

# Each process running a send (m0004). Rows it claimed carry its id and stay
# `pending` until handed to the transport; when it stops beating, they are free.
send_runs = Table(
    "send_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("send_id", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat", Float, nullable=False),
    Column("ended_at", DateTime(timezone=True)),
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
    Column("run_id", Integer),  # the run that claimed it (m0004)
)

# Every SES event, one row per recipient, kept and attributed to its send
# (design §8). `key` makes applying the same notification twice a no-op.
# `email` and `raw` hold the address and are erased by `forget`; the hash stays.
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(500), nullable=False, unique=True),
    Column("kind", String(30), nullable=False),
    Column("email", String(320)),
    Column("email_hash", String(64)),
    Column("hard", Boolean),
    Column("bounce_type", String(40)),
    Column("bounce_subtype", String(60)),
    Column("detail", JSON, nullable=False),
    Column("message_id", String(200)),
    Column("send_id", Integer),
    Column("delivery_id", Integer),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("source", String(20), nullable=False),
    Column("sns_message_id", String(100)),
    Column("raw", Text),
)

# What arrived and could not be read (not JSON, not SNS, an unknown type):
# kept for a human to look at, so it never blocks the queue.
inbound_errors = Table(
    "inbound_errors", metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(20), nullable=False),
    Column("error", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# The public archive (design §7): what was sent, as the web version, with its
# images. Kept in the database, not on one machine's disk, so every `serve`
# process answers the same, and the images the emails link to stay up.
archive = Table(
    "archive", metadata,
    Column("slug", String(100), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("preheader", Text, nullable=False),
    Column("web_html", Text, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("content_hash", String(64)),  # the built issue published (m0004)
)

archive_assets = Table(
    "archive_assets", metadata,
    Column("slug", String(100), primary_key=True),
    Column("name", String(300), primary_key=True),
    Column("content_type", String(100), nullable=False),
    Column("data", LargeBinary, nullable=False),
)
