"""Audience and storage: lists, subscribers, suppression, CSV import/export.

Imports no other project package. SQLAlchemy Core on SQLite (default) or
PostgreSQL; the schema is migrated with Alembic on first use.
"""
from .addresses import Address, address_hash, normalise
from .csv_export import export_csv
from .csv_import import ImportReport, import_csv
from .db import Database, open_database, upgrade
from .errors import (
    DatabaseError,
    ImportFailed,
    InvalidAddress,
    ListExists,
    ListNotFound,
    NotAllowed,
    SubscriberNotFound,
    SubscribersError,
)
from .lists import MailingList, create_list, list_lists, remove_list
from .membership import add_subscriber, request_subscription, unsubscribe
from .privacy import forget, show

__all__ = [
    "Address", "Database", "DatabaseError", "ImportFailed", "ImportReport", "InvalidAddress", "ListExists",
    "ListNotFound", "MailingList", "NotAllowed", "SubscriberNotFound", "SubscribersError", "add_subscriber",
    "address_hash", "create_list", "export_csv", "forget", "import_csv", "list_lists", "normalise",
    "open_database", "remove_list", "request_subscription", "show", "unsubscribe", "upgrade",
]
