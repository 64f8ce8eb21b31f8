"""SES events (bounces, complaints, deliveries…) and inputs that could not be read.

Revision ID: m0002
Revises: m0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "m0002"
down_revision = "m0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("email_hash", sa.String(64)),
        sa.Column("hard", sa.Boolean),
        sa.Column("bounce_type", sa.String(40)),
        sa.Column("bounce_subtype", sa.String(60)),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("message_id", sa.String(200)),
        sa.Column("send_id", sa.Integer, sa.ForeignKey("sends.id", ondelete="SET NULL")),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id", ondelete="SET NULL")),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("sns_message_id", sa.String(100)),
        sa.Column("raw", sa.Text),
        sa.UniqueConstraint("key", name="uq_events_key"),
    )
    op.create_index("ix_events_address", "events", ["email_hash", "kind", "occurred_at"])
    op.create_index("ix_events_send", "events", ["send_id", "kind"])
    op.create_table(
        "inbound_errors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inbound_errors")
    op.drop_table("events")
