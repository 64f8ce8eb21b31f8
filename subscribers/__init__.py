"""Audience and storage: lists, subscribers, suppression, CSV import/export.

Imports no other project package. SQLAlchemy Core on SQLite (default) or
PostgreSQL; the schema is migrated with Alembic on first use. The public
names load their module on first use (PEP 562): `subscribers.errors` alone
does not pull in SQLAlchemy.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Member": ".audience", "eligible": ".audience", "status_counts": ".audience", "subscribed_ids": ".audience",
    "suppressed_among_subscribed": ".audience", "subscribed_members": ".audience", "get_list": ".lists",
    "Address": ".addresses", "address_hash": ".addresses", "display_address": ".addresses", "normalise": ".addresses",
    "try_normalise": ".addresses",
    "export_csv": ".csv_export",
    "ImportReport": ".csv_import", "import_csv": ".csv_import",
    "Database": ".db", "as_utc": ".db", "insert_new_only": ".db", "open_database": ".db",
    "run_in_transaction": ".db", "upgrade": ".db",
    "DatabaseError": ".errors", "ImportFailed": ".errors", "ImportIncomplete": ".errors", "InvalidAddress": ".errors",
    "ListExists": ".errors",
    "ListNotFound": ".errors", "NotAllowed": ".errors", "SubscriberNotFound": ".errors",
    "SubscribersError": ".errors",
    "MailingList": ".lists", "create_list": ".lists", "list_lists": ".lists", "remove_list": ".lists",
    "set_title": ".lists",
    "add_subscriber": ".membership", "request_subscription": ".membership", "suppress_address": ".membership",
    "unsubscribe": ".membership", "Refusal": ".membership", "refusals": ".membership",
    "ensure_may_join": ".membership", "suppression_of": ".suppression",
    "forget": ".privacy", "show": ".privacy",
    "ListMember": ".signup", "SignUp": ".signup", "allow_attempt": ".signup", "confirm_subscription": ".signup",
    "leave": ".signup", "list_member": ".signup", "sign_up": ".signup",
    "InvalidToken": ".tokens", "Tokens": ".tokens", "UnsubscribeTarget": ".tokens",
    "AccountsError": ".accounts", "ApiToken": ".accounts", "AuditEntry": ".accounts", "BadPassword": ".accounts",
    "InvalidRole": ".accounts", "LoginFailed": ".accounts", "LoginLocked": ".accounts", "ROLES": ".accounts",
    "Session": ".accounts", "TokenExists": ".accounts", "TokenNotFound": ".accounts", "User": ".accounts",
    "UserExists": ".accounts", "UserNotFound": ".accounts", "add_user": ".accounts", "audit": ".accounts",
    "audit_entries": ".accounts", "create_token": ".accounts", "end_session": ".accounts",
    "generate_password": ".accounts", "get_user": ".accounts", "list_tokens": ".accounts",
    "list_users": ".accounts", "login": ".accounts", "may": ".accounts", "remove_user": ".accounts",
    "revoke_token": ".accounts", "session_count": ".accounts", "session_of": ".accounts",
    "set_password": ".accounts", "set_role": ".accounts", "token_of": ".accounts",
    "AuditPage": ".accounts", "LastAdmin": ".accounts", "MIN_PASSWORD": ".accounts", "audit_page": ".accounts",
    "session_counts": ".accounts",
    "Lift": ".suppression_lifts", "Suppression": ".suppression_lifts", "SuppressionPage": ".suppression_lifts",
    "get_suppression": ".suppression_lifts", "is_complaint": ".suppression_lifts",
    "lift_suppression": ".suppression_lifts", "lift_suppression_by_id": ".suppression_lifts",
    "suppression_lifts_of": ".suppression_lifts", "suppression_page": ".suppression_lifts",
    "why_kept": ".suppression_lifts",
    "ListStatus": ".browse", "PeoplePage": ".browse", "PersonRow": ".browse", "find_people": ".browse",
    "edit_subscriber": ".browse", "email_of": ".browse", "emails_of": ".browse", "list_names": ".browse",
    "id_of": ".browse", "parse_fields": ".browse", "search_key": ".browse", "unsubscribe_people": ".browse",
    "neutralise": ".csv_files",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'subscribers' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .accounts import (
        MIN_PASSWORD,
        ROLES,
        AccountsError,
        ApiToken,
        AuditEntry,
        AuditPage,
        BadPassword,
        InvalidRole,
        LastAdmin,
        LoginFailed,
        LoginLocked,
        Session,
        TokenExists,
        TokenNotFound,
        User,
        UserExists,
        UserNotFound,
        add_user,
        audit,
        audit_entries,
        audit_page,
        create_token,
        end_session,
        generate_password,
        get_user,
        list_tokens,
        list_users,
        login,
        may,
        remove_user,
        revoke_token,
        session_count,
        session_counts,
        session_of,
        set_password,
        set_role,
        token_of,
    )
    from .addresses import Address, address_hash, display_address, normalise, try_normalise
    from .audience import (
        Member,
        eligible,
        status_counts,
        subscribed_ids,
        subscribed_members,
        suppressed_among_subscribed,
    )
    from .browse import (
        ListStatus,
        PeoplePage,
        PersonRow,
        edit_subscriber,
        email_of,
        emails_of,
        find_people,
        id_of,
        list_names,
        parse_fields,
        search_key,
        unsubscribe_people,
    )
    from .csv_export import export_csv
    from .csv_files import neutralise
    from .csv_import import ImportReport, import_csv
    from .db import Database, as_utc, insert_new_only, open_database, run_in_transaction, upgrade
    from .errors import (
        DatabaseError,
        ImportFailed,
        ImportIncomplete,
        InvalidAddress,
        ListExists,
        ListNotFound,
        NotAllowed,
        SubscriberNotFound,
        SubscribersError,
    )
    from .lists import MailingList, create_list, get_list, list_lists, remove_list, set_title
    from .membership import (
        Refusal,
        add_subscriber,
        ensure_may_join,
        refusals,
        request_subscription,
        suppress_address,
        unsubscribe,
    )
    from .privacy import forget, show
    from .signup import ListMember, SignUp, allow_attempt, confirm_subscription, leave, list_member, sign_up
    from .suppression import suppression_of
    from .suppression_lifts import (
        Lift,
        Suppression,
        SuppressionPage,
        get_suppression,
        is_complaint,
        lift_suppression,
        lift_suppression_by_id,
        suppression_lifts_of,
        suppression_page,
        why_kept,
    )
    from .tokens import InvalidToken, Tokens, UnsubscribeTarget
