"""Runs of a send and the content a send is bound to.

`send_runs`: every process running a send registers a run and beats its heart;
ledger rows a run has claimed but not yet handed to the transport carry its id
(`deliveries.run_id`) and stay `pending`, so a run that dies gives them back by
itself: a row is claimable when its run is no longer alive.

`sends.content_hash` and `archive.content_hash`: the built issue a send started
with; resuming with other content (a draft under the same slug) is refused,
and the archive of a sent issue is never overwritten by another file.

Revision ID: m0004
Revises: m0003
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "m0004"
down_revision = "m0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "send_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("send_id", sa.Integer, sa.ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),  # seconds since the epoch: compares alike everywhere
        sa.Column("ended_at", TS),
    )
    op.create_index("ix_send_runs_send", "send_runs", ["send_id", "ended_at"])
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("run_id", sa.Integer))
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64)))
    with op.batch_alter_table("archive") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("archive") as batch:
        batch.drop_column("content_hash")
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("content_hash")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("run_id")
    op.drop_table("send_runs")
