"""Opening the database: SQLite (WAL, foreign keys) or PostgreSQL, migrated on first use."""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError

from .errors import DatabaseError

MIGRATIONS = Path(__file__).parent / "migrations"
# SQLite's own wait for the write lock, per attempt. Writers here hold it well under a second
# (imports commit every few thousand rows); a longer stall is waited out by run_in_transaction,
# which backs off between attempts instead of keeping a thread parked inside SQLite.
BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands timestamps back without their zone."""
    return as_utc(value).isoformat() if value is not None else None


def as_utc(value: dt.datetime) -> dt.datetime:
    """Aware and in UTC: SQLite drops the zone (we store UTC), PostgreSQL answers in the session's zone."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass
class Database:
    """One engine, migrated; `begin()` gives a connection in one transaction."""

    engine: Engine
    extra_migrations: tuple[Path, ...] = ()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def begin(self, *, read_only: bool = False) -> Iterator[Connection]:
        """One transaction. On SQLite it takes the write lock up front (BEGIN IMMEDIATE)
        unless `read_only`: a transaction that reads and then writes cannot wait for a
        busy database (SQLite skips busy_timeout then) and fails at once with
        "database is locked". Long reads (an export) pass read_only so writers go on.
        It waits BUSY_TIMEOUT_MS for the lock, then fails with DatabaseError; a writer that
        must not fail then uses run_in_transaction, which runs its work again."""
        try:
            with self.engine.connect() as conn:
                if read_only:
                    conn = conn.execution_options(newsletter_read_only=True)
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise DatabaseError(f"database error: {exc.orig}") from None

    def run_in_transaction(self, fn: Callable[[Connection], T], **options: Any) -> T:
        """`run_in_transaction(self, fn, **options)`: the same contract, see there."""
        return run_in_transaction(self, fn, **options)

    def dispose(self) -> None:
        self.engine.dispose()


# SQLite result codes (the low byte of the extended code): SQLITE_BUSY, SQLITE_LOCKED.
_SQLITE_BUSY = (5, 6)
# PostgreSQL SQLSTATEs after which the server has rolled the transaction back, or never ran it:
# serialization_failure, deadlock_detected, lock_not_available (lock_timeout, NOWAIT),
# cannot_connect_now (starting up or shutting down).
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57P03"}
FIRST_DELAY, MAX_DELAY, DEADLINE = 0.05, 2.0, 60.0


class _Busy(Exception):
    """One attempt that the database turned away without applying it."""


def run_in_transaction(db: Database, fn: Callable[[Connection], T], *, read_only: bool = False,
                       deadline: float = DEADLINE, attempts: int | None = None,
                       sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic) -> T:
    """Run `fn(conn)` in one transaction (as `db.begin()`) and commit; wait out a busy database.

    Contract, for writers that must not die when another process holds the database:
    - `fn` gets a connection inside an open transaction and must do all its database work
      through it (not through `db.begin()`). It may be called SEVERAL times: each failed
      attempt is rolled back entirely, so `fn` must have no effect outside the database
      (no mail sent, no counters bumped) or only effects it is safe to repeat. Its return
      value is returned after a successful commit.
    - An attempt is re-run when the database proves it applied nothing: SQLite "database is
      locked" / busy (SQLITE_BUSY, SQLITE_LOCKED; each attempt already waits BUSY_TIMEOUT_MS
      inside SQLite), PostgreSQL serialization failure, deadlock, lock_not_available, a
      connection lost BEFORE the COMMIT (and then a server that refuses new connections while it
      restarts). A first connection that cannot be opened (a bad URL, a wrong password) fails at once.
    - It is not re-run when the connection is lost DURING the commit: the transaction may or may
      not have been applied, so DatabaseError says so and the caller decides (a ledger row
      left `sending` stays unknown, as after a crash).
    - Between attempts it sleeps FIRST_DELAY s, doubling up to MAX_DELAY s, with jitter so
      several waiters do not retry in step. It gives up with DatabaseError ("database busy")
      once `deadline` seconds have passed since the first attempt (or after `attempts` attempts,
      when given); `sleep` and `clock` are injectable for tests.
    - Any other OperationalError becomes DatabaseError at once (as `db.begin()` does); other
      errors, including IntegrityError and whatever `fn` raises itself, propagate unchanged.
    """
    start, delay, attempt = clock(), FIRST_DELAY, 0
    while True:
        attempt += 1
        try:
            return _attempt(db, fn, read_only, reconnecting=attempt > 1)
        except _Busy as busy:
            waited = clock() - start
            if (attempts is not None and attempt >= attempts) or waited + delay > deadline:
                raise DatabaseError(f"database busy: gave up after {attempt} attempts in {waited:.0f} s "
                                    f"({busy})") from None
            sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, MAX_DELAY)


def _attempt(db: Database, fn: Callable[[Connection], T], read_only: bool, reconnecting: bool) -> T:
    phase = "connect"
    try:
        with db.engine.connect() as conn:
            if read_only:
                conn = conn.execution_options(newsletter_read_only=True)
            phase = "begin"
            with conn.begin():
                phase = "run"
                result = fn(conn)
                phase = "commit"
        return result
    except DBAPIError as exc:
        if _transient(exc, phase, reconnecting):
            raise _Busy(str(exc.orig).strip()) from exc
        if phase == "commit" and exc.connection_invalidated:
            raise DatabaseError(f"the database connection was lost while committing, so the change may or may "
                                f"not have been applied: {exc.orig}") from None
        if isinstance(exc, OperationalError):
            raise DatabaseError(f"database error: {exc.orig}") from None
        raise


def _transient(exc: DBAPIError, phase: str, reconnecting: bool) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_BUSY
    state = getattr(orig, "sqlstate", None)
    if state in _PG_TRANSIENT:
        return True
    if phase == "connect":
        # psycopg gives no SQLSTATE when it cannot connect: "refused" and "no such role" look alike.
        # Only a server we were already talking to is worth waiting for.
        return reconnecting and isinstance(exc, OperationalError)
    # The server rolls back a transaction whose connection is gone, unless COMMIT was already sent.
    return exc.connection_invalidated and phase != "commit"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets `serve` read while `send` writes; foreign keys are off by default.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get("newsletter_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create(url: str) -> Engine:
    try:
        # PostgreSQL: enough connections for `serve`'s worker threads and several send workers.
        options: dict[str, Any] = {"pool_size": 10, "max_overflow": 20} if url.startswith("postgresql") else {}
        engine = create_engine(url, future=True, **options)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        from .urls import masked_url  # never the password, nor a parser's message quoting part of it
        reason = "it cannot be parsed" if isinstance(exc, ValueError) else str(exc)
        raise DatabaseError(f"bad database URL {masked_url(url)!r}: {reason}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let the sqlite3 module leave transactions to SQLAlchemy.
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "connect", lambda dbapi_conn, _r: setattr(dbapi_conn, "isolation_level", None))
    return engine


def open_database(url: str, *, migrate: bool = True, extra_migrations: tuple[Path, ...] = ()) -> Database:
    """Connect and bring the schema up to date (migrations run on first use).

    `extra_migrations`: version folders of packages that build on these tables
    (the mailer's ledger); the caller names them, so nothing here imports them.
    """
    db = Database(create(url), tuple(extra_migrations))
    if migrate:
        upgrade(db)
    return db


def _alembic_config(db: Database) -> Any:
    from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    folders = [MIGRATIONS / "versions", *db.extra_migrations]
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(f) for f in folders))
    config.attributes["engine"] = db.engine
    return config


def current_revisions(db: Database) -> set[str]:
    from alembic.runtime.migration import MigrationContext
    # Read-only: every command opens the database through here, and must not queue for the
    # write lock (nor fail with "database is locked") just to read the schema's version.
    with db.engine.connect().execution_options(newsletter_read_only=True) as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def head_revisions(db: Database) -> set[str]:
    from alembic.script import ScriptDirectory
    return set(ScriptDirectory.from_config(_alembic_config(db)).get_heads())


def pending_revisions(db: Database) -> list[str]:
    """Migrations not yet applied; none when the database was migrated by a fuller set
    (e.g. with the mailer's ledger) and is opened here without it."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError
    script = ScriptDirectory.from_config(_alembic_config(db))
    current = tuple(current_revisions(db))
    try:
        return [r.revision for r in script.iterate_revisions("heads", current or "base")]
    except (CommandError, RevisionError):
        return []


def upgrade(db: Database) -> bool:
    """Apply pending migrations; True when something was applied."""
    try:
        if not pending_revisions(db):
            return False
        from alembic import command
        command.upgrade(_alembic_config(db), "heads")
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the database: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot migrate the database: {exc}") from None
    return True


def table_names(db: Database) -> list[str]:
    return sorted(inspect(db.engine).get_table_names())


def bulk_execute(conn: Connection, statement: Any, rows: list[dict[str, Any]]) -> None:
    """executemany for a million rows.

    On PostgreSQL SQLAlchemy's own executemany is the fast path (it batches
    INSERTs into multi-row VALUES). On SQLite it spends ~10 µs a row building
    parameters, five times the driver's cost, so there the statement is
    compiled once and run by the driver. Timestamps come from SQL (`.values()`);
    JSON columns are encoded here.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(statement, rows)
        return
    compiled = statement.compile(dialect=conn.dialect, column_keys=list(rows[0]))
    fixed = compiled.params  # values given in .values(): the same for every row
    table = statement.table
    encode = {name for name in rows[0] if name in table.c and isinstance(table.c[name].type, JSON)}
    order = compiled.positiontup
    params = [tuple((json.dumps(row[n]) if n in encode else row[n]) if n in row else fixed[n] for n in order)
              for row in rows]
    conn.exec_driver_sql(compiled.string, params)


NOW = object()  # bulk_insert: "the current time", from SQL where that is cheaper


def bulk_insert(conn: Connection, table: Any, rows: list[dict[str, Any]], fixed: dict[str, Any]) -> None:
    """Insert many rows; `fixed` gives columns with one value for all (NOW allowed).

    PostgreSQL: COPY, the server's own bulk path (executemany sends a
    statement a row, ~80 µs each). SQLite: one compiled INSERT run by the
    driver, with timestamps from SQL (see bulk_execute).
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy(conn, table, rows, fixed)
        return
    values = {k: func.current_timestamp() if v is NOW else v for k, v in fixed.items()}
    bulk_execute(conn, table.insert().values(**values), rows)


def _copy(conn: Connection, table: Any, rows: list[dict[str, Any]], fixed: dict[str, Any]) -> None:
    now = utcnow()
    constants = {k: now if v is NOW else v for k, v in fixed.items()}
    names = [*rows[0], *constants]
    encode = [isinstance(table.c[n].type, JSON) for n in names]
    columns = ", ".join(f'"{n}"' for n in names)
    statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                record = [*row.values(), *constants.values()]
                copy.write_row([json.dumps(v) if e else v for v, e in zip(record, encode, strict=True)])
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, statement, exc, cursor) from exc


def _wrapped(conn: Connection, statement: str, exc: Exception, cursor: Any) -> DBAPIError:
    """A driver error met outside SQLAlchemy (COPY), as SQLAlchemy would have raised it, so callers
    (run_in_transaction) classify it the same way; a lost connection is invalidated as it would be."""
    lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(exc)
    return DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error,
                               connection_invalidated=lost, dialect=conn.dialect)  # type: ignore[return-value]


def in_values(conn: Connection, column: Any, values: list[Any]) -> Any:
    """`column IN values` as ONE bound parameter, however many values.

    SQLAlchemy renders a bind parameter per element of a plain IN, which costs
    more than the query itself for 5,000 keys. PostgreSQL takes an array
    (`= ANY(...)`); SQLite takes a JSON array, unpacked by json_each.
    """
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    unpacked: Any = select(literal_column("value")).select_from(func.json_each(bindparam(None, json.dumps(values))))
    return column.in_(unpacked.scalar_subquery())


@functools.cache
def insert_new_only(dialect_name: str, table: Any, key: str | tuple[str, ...], returning: str | None = "id") -> Any:
    """INSERT … ON CONFLICT (key) DO NOTHING RETURNING id: a row comes back only if it is new.

    `key`: a unique column, or the columns of a unique constraint. `returning`: the column that
    comes back (None: nothing, e.g. for INSERT … SELECT of many rows).
    RETURNING, not rowcount: for a skipped row, rowcount is not 0 on every driver.
    Cached per table: the parameters go apart, so SQLAlchemy compiles it once.
    """
    from sqlalchemy.dialects import postgresql, sqlite
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    columns = [key] if isinstance(key, str) else list(key)
    statement = dialect.insert(table).on_conflict_do_nothing(index_elements=columns)
    return statement.returning(table.c[returning]) if returning else statement
