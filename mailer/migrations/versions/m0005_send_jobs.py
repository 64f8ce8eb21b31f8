"""Sends as jobs (design §12): a time, an expiry window, a segment, a reason, and the file to build.

A send is now (issue, list, segment); `segment` is '' when the whole list is meant
(an empty string, not NULL, so the unique key holds on both databases).

Revision ID: m0005
Revises: m0004
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "m0005"
down_revision = "m0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("segment", sa.String(100), nullable=False, server_default=""))
        batch.add_column(sa.Column("at", TS))  # when it is due (scheduled, or a quota pause's retry)
        batch.add_column(sa.Column("expires_at", TS))  # a worker finding it later sends nothing
        batch.add_column(sa.Column("reason", sa.Text))  # why paused, stopped, expired or cancelled
        batch.add_column(sa.Column("issue_path", sa.Text))  # the file a worker builds it from
        batch.add_column(sa.Column("frozen", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.drop_constraint("uq_sends_issue_list", type_="unique")
        batch.create_unique_constraint("uq_sends_issue_list_segment", ["issue", "list_name", "segment"])
    op.create_index("ix_sends_state_at", "sends", ["state", "at"])


def downgrade() -> None:
    op.drop_index("ix_sends_state_at", "sends")
    with op.batch_alter_table("sends") as batch:
        batch.drop_constraint("uq_sends_issue_list_segment", type_="unique")
        batch.create_unique_constraint("uq_sends_issue_list", ["issue", "list_name"])
        for name in ("frozen", "issue_path", "reason", "expires_at", "at", "segment"):
            batch.drop_column(name)
