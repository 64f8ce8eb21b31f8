"""The send ledger: sends and per-recipient deliveries.

Revision ID: m0001
Revises:
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "m0001"
down_revision = None
branch_labels = ("mailer",)
depends_on = "0001"  # lists and subscribers first

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sends",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue", sa.String(100), nullable=False),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="SET NULL")),
        sa.Column("list_name", sa.String(100), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.UniqueConstraint("issue", "list_name", name="uq_sends_issue_list"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("send_id", sa.Integer, sa.ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("message_id", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.UniqueConstraint("send_id", "subscriber_id", name="uq_deliveries_send_subscriber"),
    )
    op.create_index("ix_deliveries_send_state", "deliveries", ["send_id", "state", "id"])
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("sends")
