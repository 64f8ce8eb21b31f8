"""A person's deliveries by their subscriber id: the console shows the sends someone was in (design §13).

Without it, one person's page reads every ledger row of every send (a million a send on a big list).

Revision ID: m0006_deliveries_by_subscriber
Revises: m0005
Create Date: 2026-12-07
"""
from alembic import op

revision = "m0006_deliveries_by_subscriber"
down_revision = "m0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_subscriber", "deliveries", ["subscriber_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscriber", "deliveries")
