"""The public archive: each sent issue's web version and images, kept in the database.

Revision ID: m0003
Revises: m0002
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "m0003"
down_revision = "m0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "archive",
        sa.Column("slug", sa.String(100), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("preheader", sa.Text, nullable=False),
        sa.Column("web_html", sa.Text, nullable=False),
        sa.Column("published_at", TS, nullable=False),
    )
    op.create_table(
        "archive_assets",
        sa.Column("slug", sa.String(100), sa.ForeignKey("archive.slug", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archive_assets")
    op.drop_table("archive")
