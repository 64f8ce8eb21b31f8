"""The console's accounts (design §13): users and roles, sessions, login limits, API tokens, the audit log.

Passwords are argon2 hashes; session ids and API tokens are random and stored
only as SHA-256 digests (they are long and random, so a fast hash is enough and
a copy of the database lets nobody in). Everything lives in the database, so
several `serve` processes share sessions and login limits. Clocks are
injectable (`clock`), so tests of expiry and limits run instantly.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from .db import Database, as_utc, utcnow
from .errors import NotAllowed, SubscribersError

# Mirrors migration 0005 (kept here so this module stands alone).
_meta = MetaData()
users = Table(
    "users", _meta,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
)
user_sessions = Table(
    "user_sessions", _meta,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
)
login_attempts = Table(
    "login_attempts", _meta,
    Column("id", Integer, primary_key=True),
    Column("bucket", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
api_tokens = Table(
    "api_tokens", _meta,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
)
audit_log = Table(
    "audit_log", _meta,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(400), nullable=False),
    Column("action", String(100), nullable=False),
    Column("detail", Text, nullable=False),
)

# Each role has the rights of those before it (design §13).
ROLES = ("viewer", "editor", "sender", "admin")
MIN_PASSWORD, MAX_PASSWORD = 12, 1024  # the upper bound keeps one login from costing a minute of argon2
# 10 failed logins for an account within 15 minutes: its logins are refused for 15 minutes, even with
# the right password (design §13). A client (an IP, keyed) gets more room: an office shares one address.
WINDOW = dt.timedelta(minutes=15)
ACCOUNT_FAILURES, CLIENT_FAILURES = 10, 50
SESSION_HOURS = 12
# A session's last_seen is written at most this often: not a write on every page.
TOUCH_EVERY = dt.timedelta(minutes=1)
Clock = Callable[[], dt.datetime]


class AccountsError(SubscribersError):
    """Base of the console's account errors."""


class InvalidRole(AccountsError):
    """A role that is not one of ROLES."""


class BadPassword(AccountsError):
    """A new password that is too short or too long."""


class UserExists(AccountsError):
    """A console user with that email already exists."""


class UserNotFound(AccountsError):
    """No console user with that email."""


class TokenExists(AccountsError):
    """An API token of that name already exists."""


class TokenNotFound(AccountsError):
    """No API token of that name."""


class LoginFailed(AccountsError):
    """A wrong email or password: the same message for both, so nobody learns which accounts exist."""


class LoginLocked(AccountsError):
    """Too many failed logins for this account or from this client (HTTP 429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str
    created_at: dt.datetime


@dataclass(frozen=True)
class Session:
    """A signed-in user. `token` (the cookie's value) is only known right after `login`."""

    user: User
    csrf: str
    token: str | None = None


@dataclass(frozen=True)
class ApiToken:
    name: str
    role: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    detail: str


# --- roles and secrets ----------------------------------------------------------------------------------


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRole(f"{role!r} is not a role (one of {', '.join(ROLES)})")
    return role


def may(role: str, needed: str) -> bool:
    """Whether `role` has the rights of `needed` (every role has those of the roles before it)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(check_role(needed))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _hasher() -> Any:
    from argon2 import PasswordHasher  # imported on first use: most commands never hash a password
    return PasswordHasher()


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadPassword(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadPassword(f"the password must have at most {MAX_PASSWORD} characters")
    return password


def _email_key(email: str) -> str:
    """How a user's email is stored and found: as subscribers' key (lower case, domain in ASCII)."""
    from .addresses import try_normalise
    found = try_normalise(email)
    return email.strip().lower() if isinstance(found, str) else found.key


# --- users ----------------------------------------------------------------------------------------------


def add_user(db: Database, email: str, role: str, password: str, *, actor: str = "cli",
             clock: Clock = utcnow) -> User:
    """A new console account. Raises UserExists, InvalidRole, BadPassword."""
    from .addresses import normalise
    key = normalise(email).key
    check_role(role)
    hashed = _hasher().hash(_check_password(password))
    now = clock()
    try:
        with db.begin() as conn:
            user_id = conn.execute(users.insert().values(
                email=key, role=role, password_hash=hashed, created_at=now, password_changed_at=now)
                .returning(users.c.id)).scalar_one()
            record(conn, actor, "users.add", f"{key} ({role})", clock=clock)
    except IntegrityError:
        raise UserExists(f"there is already a user {key}") from None
    return User(user_id, key, role, now)


def list_users(db: Database) -> list[User]:
    with db.begin(read_only=True) as conn:
        return [_user(row) for row in conn.execute(select(users).order_by(users.c.email))]


def get_user(db: Database, email: str) -> User:
    with db.begin(read_only=True) as conn:
        return _user(_find_user(conn, email))


def remove_user(db: Database, email: str, *, actor: str = "cli", clock: Clock = utcnow) -> int:
    """Remove the account and end its sessions; returns how many sessions ended."""
    with db.begin() as conn:
        row = _find_user(conn, email)
        _keep_an_admin(conn, row, actor)
        ended = _end_sessions(conn, row.id)
        conn.execute(delete(users).where(users.c.id == row.id))
        record(conn, actor, "users.rm", row.email, clock=clock)
    return ended


def set_password(db: Database, email: str, password: str, *, actor: str = "cli", clock: Clock = utcnow) -> int:
    """A new password; every session of the user ends (returns how many)."""
    hashed = _hasher().hash(_check_password(password))
    with db.begin() as conn:
        row = _find_user(conn, email)
        conn.execute(update(users).where(users.c.id == row.id).values(password_hash=hashed,
                                                                       password_changed_at=clock()))
        ended = _end_sessions(conn, row.id)
        record(conn, actor, "users.passwd", row.email, clock=clock)
    return ended


def set_role(db: Database, email: str, role: str, *, actor: str = "cli", clock: Clock = utcnow) -> User:
    check_role(role)
    with db.begin() as conn:
        row = _find_user(conn, email)
        if role != "admin":
            _keep_an_admin(conn, row, actor)
        conn.execute(update(users).where(users.c.id == row.id).values(role=role))
        record(conn, actor, "users.role", f"{row.email}: {row.role} -> {role}", clock=clock)
    return User(row.id, row.email, role, as_utc(row.created_at))


def _find_user(conn: Connection, email: str) -> Any:
    row = conn.execute(select(users).where(users.c.email == _email_key(email))).first()
    if row is None:
        raise UserNotFound(f"no user {email.strip()}")
    return row


def _user(row: Any) -> User:
    return User(row.id, row.email, row.role, as_utc(row.created_at))


# --- logins and sessions --------------------------------------------------------------------------------


def login(db: Database, email: str, password: str, client: str, *, clock: Clock = utcnow) -> Session:
    """Check a password and open a session. Raises LoginLocked (429) or LoginFailed.

    `client` identifies who is asking (the web layer passes a keyed hash of the IP).
    A locked account or client is refused before its password is looked at, and an
    unknown email costs an argon2 check too, so neither answer nor timing tells
    which accounts exist.
    """
    now = clock()
    email = _email_key(email)
    keys = {"account": _digest(email), "client": _digest(client)}
    with db.begin(read_only=True) as conn:
        _refuse_if_locked(conn, keys, now)
        row = conn.execute(select(users).where(users.c.email == email)).first()
    if not _verify(row.password_hash if row is not None else None, password):
        db.run_in_transaction(lambda conn: _failed(conn, keys, now))
        raise LoginFailed("wrong email or password")
    return db.run_in_transaction(lambda conn: _open_session(conn, row, now))


def _verify(hashed: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError
    hasher = _hasher()
    if len(password) > MAX_PASSWORD:
        return False
    try:
        # No such user: check against a hash of nothing anyway, so it takes as long.
        return bool(hasher.verify(hashed or _dummy_hash(), password)) and hashed is not None
    except (VerificationError, InvalidHashError):
        return False


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_hasher().hash(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def _refuse_if_locked(conn: Connection, keys: dict[str, str], now: dt.datetime) -> None:
    for bucket, key in keys.items():
        locked_at = conn.execute(select(func.max(login_attempts.c.at)).where(
            login_attempts.c.bucket == f"{bucket}-lock", login_attempts.c.key_hash == key,
            login_attempts.c.at > now - WINDOW)).scalar()
        if locked_at is not None:
            wait = int((as_utc(locked_at) + WINDOW - now).total_seconds()) + 1
            whom = "this account" if bucket == "account" else "this address"
            raise LoginLocked(f"too many failed sign-ins for {whom}: try again in {wait // 60 + 1} minutes", wait)


def _failed(conn: Connection, keys: dict[str, str], now: dt.datetime) -> None:
    """Record a failure; the one that makes the limit locks the account (or client) for WINDOW."""
    limits = {"account": ACCOUNT_FAILURES, "client": CLIENT_FAILURES}
    for bucket, key in keys.items():
        conn.execute(login_attempts.insert().values(bucket=bucket, key_hash=key, at=now))
        recent = conn.execute(select(func.count()).select_from(login_attempts).where(
            login_attempts.c.bucket == bucket, login_attempts.c.key_hash == key,
            login_attempts.c.at > now - WINDOW)).scalar_one()
        if recent >= limits[bucket]:
            conn.execute(login_attempts.insert().values(bucket=f"{bucket}-lock", key_hash=key, at=now))
            # The lock stands for WINDOW; the failures that caused it must not lock it again after.
            conn.execute(delete(login_attempts).where(login_attempts.c.bucket == bucket,
                                                      login_attempts.c.key_hash == key))
    # Old rows are of no use to any limit.
    conn.execute(delete(login_attempts).where(login_attempts.c.at < now - 2 * WINDOW))


def _open_session(conn: Connection, row: Any, now: dt.datetime) -> Session:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(user_sessions.insert().values(id_hash=_digest(token), user_id=row.id, csrf=csrf,
                                               created_at=now, last_seen_at=now))
    record(conn, f"user:{row.email}", "login", "", clock=lambda: now)
    return Session(_user(row), csrf, token)


def session_of(db: Database, token: str, *, hours: float = SESSION_HOURS, clock: Clock = utcnow) -> Session | None:
    """The signed-in user of a session cookie; None when it is unknown, ended or idle too long."""
    if not token:
        return None
    now, key = clock(), _digest(token)
    with db.begin(read_only=True) as conn:
        found = conn.execute(select(user_sessions.c.last_seen_at, user_sessions.c.csrf, users)
                             .join(users, users.c.id == user_sessions.c.user_id)
                             .where(user_sessions.c.id_hash == key)).first()
    if found is None:
        return None
    seen = as_utc(found.last_seen_at)
    if now - seen > dt.timedelta(hours=hours):
        end_session(db, token)
        return None
    if now - seen > TOUCH_EVERY:
        db.run_in_transaction(lambda conn: conn.execute(update(user_sessions).where(
            user_sessions.c.id_hash == key).values(last_seen_at=now)))
    return Session(_user(found), found.csrf)


def end_session(db: Database, token: str) -> bool:
    """Sign out: True when there was such a session."""
    with db.begin() as conn:
        return bool(conn.execute(delete(user_sessions).where(user_sessions.c.id_hash == _digest(token))).rowcount)


def _end_sessions(conn: Connection, user_id: int) -> int:
    return int(conn.execute(delete(user_sessions).where(user_sessions.c.user_id == user_id)).rowcount or 0)


def session_count(db: Database, email: str) -> int:
    with db.begin(read_only=True) as conn:
        row = _find_user(conn, email)
        return int(conn.execute(select(func.count()).select_from(user_sessions)
                                .where(user_sessions.c.user_id == row.id)).scalar_one())


# --- API tokens -----------------------------------------------------------------------------------------


def create_token(db: Database, name: str, role: str, *, actor: str = "cli", clock: Clock = utcnow) -> str:
    """A new bearer token; returned once, stored only as its SHA-256."""
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountsError("a token's name must have 1 to 100 characters")
    check_role(role)
    token = secrets.token_urlsafe(32)
    try:
        with db.begin() as conn:
            conn.execute(api_tokens.insert().values(name=name, role=role, token_hash=_digest(token),
                                                    created_at=clock()))
            record(conn, actor, "tokens.create", f"{name} ({role})", clock=clock)
    except IntegrityError:
        raise TokenExists(f"there is already a token {name!r} (revoke it first)") from None
    return token


def list_tokens(db: Database) -> list[ApiToken]:
    with db.begin(read_only=True) as conn:
        return [ApiToken(r.name, r.role, as_utc(r.created_at), as_utc(r.last_used_at) if r.last_used_at else None)
                for r in conn.execute(select(api_tokens).order_by(api_tokens.c.name))]


def revoke_token(db: Database, name: str, *, actor: str = "cli", clock: Clock = utcnow) -> None:
    with db.begin() as conn:
        gone = conn.execute(delete(api_tokens).where(api_tokens.c.name == name.strip())).rowcount
        if not gone:
            raise TokenNotFound(f"no token {name.strip()!r}")
        record(conn, actor, "tokens.revoke", name.strip(), clock=clock)


def token_of(db: Database, token: str, *, clock: Clock = utcnow) -> ApiToken | None:
    """The token presented in `Authorization: Bearer`, or None when it is unknown or revoked."""
    if not token or len(token) > 200:
        return None
    key, now = _digest(token), clock()
    with db.begin(read_only=True) as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.token_hash == key)).first()
    if row is None:
        return None
    if row.last_used_at is None or now - as_utc(row.last_used_at) > TOUCH_EVERY:
        db.run_in_transaction(lambda conn: conn.execute(update(api_tokens).where(
            api_tokens.c.token_hash == key).values(last_used_at=now)))
    return ApiToken(row.name, row.role, as_utc(row.created_at), now)


# --- the audit log --------------------------------------------------------------------------------------


def record(conn: Connection, actor: str, action: str, detail: str = "", *, clock: Clock = utcnow) -> None:
    """One audit row, inside the caller's transaction: the action and its record stand or fall together."""
    conn.execute(audit_log.insert().values(at=clock(), actor=actor[:400], action=action[:100], detail=detail))


def audit(db: Database, actor: str, action: str, detail: str = "", *, clock: Clock = utcnow) -> None:
    """One audit row in its own transaction (for actions whose own write is elsewhere)."""
    db.run_in_transaction(lambda conn: record(conn, actor, action, detail, clock=clock))


def audit_entries(db: Database, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
    """Newest first, `limit` at a time; `before` (an id) pages on by keyset."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_log.c.id < before)
    with db.begin(read_only=True) as conn:
        return [AuditEntry(r.id, as_utc(r.at), r.actor, r.action, r.detail) for r in conn.execute(query)]


# --- added for the console's Users and Audit log pages ----------------------------------------------------


class LastAdmin(AccountsError, NotAllowed):
    """The only admin may not remove or demote themselves: nobody could manage users from the console then."""


def _keep_an_admin(conn: Connection, row: Any, actor: str) -> None:
    """Refuse (LastAdmin) when `actor` is the user of `row` taking away their own admin role and no other
    admin is left. The admins' rows are locked first (PostgreSQL; SQLite's writer holds its lock already),
    so two admins demoting each other at once cannot both pass. `cli` acts from a shell, where
    `users add --role admin` is always at hand: it is not held back."""
    if actor != f"user:{row.email}":
        return
    admins = set(conn.execute(select(users.c.id).where(users.c.role == "admin").with_for_update()).scalars())
    if admins == {row.id}:
        raise LastAdmin("you are the only admin: make another user an admin first")


def session_counts(db: Database, *, hours: float = SESSION_HOURS, clock: Clock = utcnow) -> dict[str, int]:
    """Each user's sessions still open (seen within `hours`), by email, in one query: users without any are absent."""
    since = clock() - dt.timedelta(hours=hours)
    query = (select(users.c.email, func.count()).join(user_sessions, user_sessions.c.user_id == users.c.id)
             .where(user_sessions.c.last_seen_at > since).group_by(users.c.email))
    with db.begin(read_only=True) as conn:
        return {email: int(count) for email, count in conn.execute(query)}


AUDIT_WINDOW = 50_000  # ids a filtered page of the audit log looks through at most


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    older: int | None  # `before` for the next (older) page; None when nothing is older
    scanned_from: int | None  # a filtered page looked at ids from here up (None: unfiltered, or to the start)


def audit_page(db: Database, *, limit: int = 100, before: int | None = None, actor: str = "", action: str = "",
               window: int = AUDIT_WINDOW) -> AuditPage:
    """Newest first, `limit` at a time, optionally only one actor (exactly) or actions starting with `action`.

    Neither column has an index and every API call adds a row, so a filtered page looks through at most
    `window` ids below `before` (a range of the primary key): a rare match costs a bounded scan per page,
    and the page says how far it looked, instead of one page reading the whole log."""
    if not actor and not action:
        found = audit_entries(db, limit=limit + 1, before=before)
        return AuditPage(found[:limit], found[limit - 1].id if len(found) > limit else None, None)
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit + 1)
    if actor:
        query = query.where(audit_log.c.actor == actor)
    if action:
        query = query.where(audit_log.c.action.startswith(action, autoescape=True))
    with db.begin(read_only=True) as conn:
        top = before if before is not None else (conn.execute(select(func.max(audit_log.c.id))).scalar() or 0) + 1
        first = conn.execute(select(func.min(audit_log.c.id))).scalar()
        floor = top - window
        rows = [AuditEntry(r.id, as_utc(r.at), r.actor, r.action, r.detail) for r in conn.execute(
            query.where(audit_log.c.id < top, audit_log.c.id >= floor))]
    if len(rows) > limit:
        return AuditPage(rows[:limit], rows[limit - 1].id, rows[limit - 1].id)
    older = floor if first is not None and first < floor else None
    return AuditPage(rows, older, floor if older is not None else None)
