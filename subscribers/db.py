"""Opening the database: SQLite (WAL, foreign keys) or PostgreSQL, migrated on first use."""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from .errors import DatabaseError

MIGRATIONS = Path(__file__).parent / "migrations"


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
        "database is locked". Long reads (an export) pass read_only so writers go on."""
        try:
            with self.engine.connect() as conn:
                if read_only:
                    conn = conn.execution_options(newsletter_read_only=True)
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise DatabaseError(f"database error: {exc.orig}") from None

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets `serve` read while `send` writes; foreign keys are off by default.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
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
        raise DatabaseError(f"bad database URL {url!r}: {exc}") from None
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
    with db.engine.connect() as conn:
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
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
        for row in rows:
            record = [*row.values(), *constants.values()]
            copy.write_row([json.dumps(v) if e else v for v, e in zip(record, encode, strict=True)])


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
def insert_new_only(dialect_name: str, table: Any, key: str) -> Any:
    """INSERT … ON CONFLICT (key) DO NOTHING RETURNING id: a row comes back only if it is new.

    RETURNING, not rowcount: for a skipped row, rowcount is not 0 on every driver.
    Cached per table: the parameters go apart, so SQLAlchemy compiles it once.
    """
    from sqlalchemy.dialects import postgresql, sqlite
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c.id)
