"""Indexes for the console's Subscribers pages (design §13): a million-member list pages in constant time.

- memberships (list_id, status, subscriber_id): a page of a list's members in one status, newest first,
  is one range of this index (the primary key (list_id, subscriber_id) would check every row's status,
  and few unsubscribed among a million means reading most of them).
- PostgreSQL only: the address key in byte order (COLLATE "C"). A search by the start of an address is a
  range of keys, which under a language's collation (en_US sorts "a-b" beside "ab") it is not; the
  unique index of the key keeps the database's collation. SQLite compares in byte order already.

Revision ID: 0007_browse_indexes
Revises: 0006_suppression_lifts
Create Date: 2026-12-07
"""
from alembic import op

revision = "0007_browse_indexes"
down_revision = "0006_suppression_lifts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_memberships_list_status", "memberships", ["list_id", "status", "subscriber_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute('CREATE INDEX ix_subscribers_key_bytes ON subscribers (email_key COLLATE "C")')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_subscribers_key_bytes", "subscribers")
    op.drop_index("ix_memberships_list_status", "memberships")
