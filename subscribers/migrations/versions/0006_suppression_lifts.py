"""Lifting a suppression is kept (who, when, why, and what it was), and suppressed addresses can be searched.

- `suppression_lifts`: one row per lifted suppression (design §13). The address is kept beside its
  hash so the console can show whom a lift was for; `forget` erases it (the hash stays).
- An index on the lower-cased address, so that the console's search by the start of an address is a
  range of an index, not a scan of every suppression. On PostgreSQL it is in byte order (COLLATE "C"):
  under a language's collation, "all strings that start with p" is not a range.

Revision ID: 0006_suppression_lifts
Revises: 0005
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_suppression_lifts"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "suppression_lifts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320)),  # None once the person is forgotten
        sa.Column("reason", sa.Text, nullable=False),  # why it was lifted, as the user wrote it
        sa.Column("actor", sa.String(400), nullable=False),  # user:EMAIL, token:NAME or cli
        sa.Column("lifted_at", TS, nullable=False),
        sa.Column("suppressed_reason", sa.Text, nullable=False),  # the suppression, as it was
        sa.Column("suppressed_source", sa.String(20), nullable=False),
        sa.Column("suppressed_at", TS, nullable=False),
    )
    op.create_index("ix_suppression_lifts_hash", "suppression_lifts", ["email_hash"])
    collate = ' COLLATE "C"' if op.get_bind().dialect.name == "postgresql" else ""
    op.execute(f"CREATE INDEX ix_suppressions_email_lower ON suppressions ((lower(email){collate}))")


def downgrade() -> None:
    op.drop_index("ix_suppressions_email_lower", table_name="suppressions")
    op.drop_table("suppression_lifts")
