"""Sign-up attempts, for rate limits that hold across every `serve` process.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signup_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("bucket", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_signup_attempts_key", "signup_attempts", ["bucket", "key_hash", "at"])


def downgrade() -> None:
    op.drop_table("signup_attempts")
