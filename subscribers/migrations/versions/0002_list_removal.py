"""Lists are removed softly: who unsubscribed from a list stays unsubscribed if it comes back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("removed_at")
