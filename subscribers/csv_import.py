"""`subscribers import`: a CSV file into a list, streamed, in short transactions.

The file's header decides how it is read (formats.py: a plain CSV, or the
export of Mailchimp, listmonk, Sendy or Substack; `auto` recognises them),
and every format's rows take this one path. The file is first read whole as
CSV (malformed records and a bad header stop the import before anything is
written), then parsed and written in batches of BATCH rows, each its own
transaction, so other writers (a send, the event poller, an unsubscribe) get
the database between batches instead of waiting for the whole file. A busy
database is waited out (run_in_transaction).

A batch goes into a temporary staging table (executemany on SQLite, COPY on
PostgreSQL) and is classified and written by a few set-based statements: the
never-re-subscribe guard (membership.guard, as SQL), the suppressions a file
brings, new people, changed people, new members, leavers. Per row, Python only
parses and normalises. Addresses of batches already written are kept in a
scratch SQLite file, not in memory, so memory stays flat whatever the file's
size.

A failure part-way (ImportIncomplete) leaves the batches already committed;
running the same import again finishes it, since an import converges: rows
already imported count as unchanged. `--dry-run` stages and classifies each
batch in a read-only transaction and writes nothing; its counts are exact,
because a row's outcome depends only on its own address's records, which
earlier batches of the same file do not touch (a later duplicate only merges
into the first row and is counted as a duplicate).

Nobody who unsubscribed or is suppressed is ever put back on the list, and
nobody a file says left or was removed there is subscribed here: they are
recorded as unsubscribed from the list (and suppressed, when the tool
bounced them or they reported spam), whichever order the files come in.
"""
from __future__ import annotations

import csv
import datetime as dt
import gc
import json
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError

from .addresses import try_normalise
from .csv_files import CsvSource, atomic_writer, check_structure, inspect_file, restore, rows, safe_row
from .db import Database, _wrapped, insert_new_only, run_in_transaction
from .errors import ImportFailed, ImportIncomplete, SubscribersError
from .formats import SKIPPED, SUBSCRIBED, SUPPRESSED, UNSUBSCRIBED, Header, Options, Reader, Reject, Row, choose
from .lists import get_list
from .membership import LEFT_HERE, SUPPRESSED_HERE, guard
from .people import merged
from .schema import memberships, subscribers, suppressions
from .suppression import any_suppressed

# Rows a transaction: ~0.1 s of writing here, so the write lock is free again within a
# fraction of a second for a send, the poller or an unsubscribe (SQLite has one writer).
BATCH = 5000
# The outcome groups of the summary, each with its reasons.
REJECTED, LEFT, BLOCKED, NOT_IMPORTED = "rejected", "skipped (unsubscribed)", "skipped (suppressed)", "skipped (other)"
TOP_REASONS = 3


@dataclass
class ImportReport:
    list_name: str
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped_unsubscribed: int = 0
    skipped_suppressed: int = 0
    skipped_other: int = 0
    duplicates: int = 0
    dry_run: bool = False
    format: str = "plain"
    format_label: str = "plain CSV"
    format_why: str = ""
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)  # group -> reason -> rows
    encoding_note: str = ""  # the rows that were not UTF-8 (csv_files.py), or nothing

    def summary(self) -> str:
        """What the import did: how it read the file, the counts, then each group's top reasons."""
        head = f"{self.rows} rows {'would be ' if self.dry_run else ''}imported into {self.list_name!r}"
        parts = [
            f"{self.added} added", f"{self.updated} updated", f"{self.unchanged} unchanged",
            f"{self.rejected} rejected", f"{self.skipped_unsubscribed} skipped (unsubscribed)",
            f"{self.skipped_suppressed} skipped (suppressed)",
        ]
        if self.skipped_other:
            parts.append(f"{self.skipped_other} skipped (other)")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate rows merged")
        lines = [f"Read as {self.format_label} ({self.format_why})." if self.format_why else "",
                 f"{head}: " + ", ".join(parts)]
        lines += [f"  {self._count(group)} {group}: {self.top(group)}"
                  for group in (REJECTED, LEFT, BLOCKED, NOT_IMPORTED) if self.reasons.get(group)]
        lines.append(self.encoding_note and f"Note: {self.encoding_note}.")
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        return "\n".join(line for line in lines if line)

    def top(self, group: str) -> str:
        """'9 invalid address, 3 no email' (the commonest reasons, then how many others)."""
        counts = self.reasons.get(group, Counter()).most_common()
        shown = [f"{n} {reason}" for reason, n in counts[:TOP_REASONS]]
        rest = sum(n for _, n in counts[TOP_REASONS:])
        return ", ".join(shown + ([f"{rest} other"] if rest else []))

    def _count(self, group: str) -> int:
        return sum(self.reasons.get(group, Counter()).values())

    def note(self, group: str, reason: str, n: int = 1) -> None:
        self.reasons.setdefault(group, Counter())[reason] += n


# A row of the file on its way in: formats.Row, with its normalised address set.
_Record = Row


# A person a file says left is recorded so; these are what the summary says when the file gives no why.
_LEFT_IN_FILE = "unsubscribed in the file"


@dataclass
class _Tally:
    """What one batch did; added to the report only once its transaction commits."""
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add_to(self, report: ImportReport) -> None:
        report.added += self.added
        report.updated += self.updated
        report.unchanged += self.unchanged
        for (group, reason), n in self.reasons.items():
            report.note(group, reason, n)
            if group == LEFT:
                report.skipped_unsubscribed += n
            elif group == BLOCKED:
                report.skipped_suppressed += n
            else:
                report.skipped_other += n


class _Rejects:
    """Rejected rows, as they were, with line number and reason; spooled to disk."""

    def __init__(self, report: ImportReport) -> None:
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
        self.writer = csv.writer(self.spool)
        self.report = report

    def add(self, line: int, cells: list[str], kind: str, message: str) -> None:
        self.report.rejected += 1
        self.report.note(REJECTED, kind)
        # Spooled as read (neutralised once, when saved): a file opened in a spreadsheet runs no formula.
        self.writer.writerow([line, message, *cells])

    def save(self, path: Path, header: list[str]) -> None:
        self.spool.seek(0)
        with atomic_writer(path) as out:
            writer = csv.writer(out)
            writer.writerow(safe_row(["line", "reason", *header]))
            writer.writerows(safe_row(row) for row in csv.reader(self.spool))


def import_csv(db: Database, path: Path, list_name: str, *, format: str = "auto", dry_run: bool = False,
               rejects_path: Path | None = None, on_progress: Callable[[int, int], None] | None = None,
               ) -> ImportReport:
    """Import `path` into the list; raises ImportFailed (nothing changed) or ImportIncomplete.

    `format`: auto, plain, mailchimp, listmonk, sendy or substack (formats.py).
    """
    source = inspect_file(path)
    if rejects_path is not None and not os.access(rejects_path.parent or Path("."), os.W_OK):
        # Checked first: the import must not succeed and then fail to report its rejects.
        raise ImportFailed(f"{rejects_path}: cannot write the rejects file there (no such folder, or read-only)")
    # A typo in the list's name fails first; its opt-in decides what "unconfirmed" in another tool becomes.
    mailing_list = run_in_transaction(db, lambda conn: get_list(conn, list_name), read_only=True)
    check_structure(source)
    report = ImportReport(list_name=list_name, dry_run=dry_run, warnings=list(source.warnings))
    rejects = _Rejects(report)
    progress = (lambda done: on_progress(done, source.size)) if on_progress else None
    job = _Import(db, source, list_name, report, rejects, dry_run)
    header = job.run(format, Options(double_opt_in=mailing_list.double_opt_in), progress)
    report.encoding_note = source.recoded_note()
    if rejects_path is not None:
        rejects.save(rejects_path, header)
    return report


class _Import:
    """Pass two: parse the rows and write them a batch (a transaction) at a time."""

    def __init__(self, db: Database, source: CsvSource, list_name: str, report: ImportReport,
                 rejects: _Rejects, dry_run: bool):
        self.db, self.source, self.list_name = db, source, list_name
        self.report, self.rejects, self.dry_run = report, rejects, dry_run
        self.rows_written = 0  # rows of the file whose batches are committed
        self.line = 0

    def run(self, format: str, options: Options, progress: Callable[[int], None] | None) -> list[str]:
        try:
            return self._batches(format, options, progress)
        except (SubscribersError, SQLAlchemyError, OSError) as exc:
            if not self.rows_written:
                raise  # nothing was committed: the error as it is
            raise ImportIncomplete(
                f"{self.source.path}: the import stopped near line {self.line}: {exc}. "
                f"The first {self.rows_written:,} rows were imported and stay imported; run the same import "
                "again to finish it (rows already imported are left as they are)", self.rows_written) from None

    def _reader(self, cells: list[str], format: str, options: Options) -> Reader:
        header = Header.of(cells)
        choice = choose(header, format, self.source.path)
        self.report.format, self.report.format_label = choice.format.name, choice.format.label
        self.report.format_why = choice.why
        if header.repeats:
            self.report.warnings.append(
                f"{self.source.path}: column names written more than once: {', '.join(header.repeats)}; "
                "the first column of each name is read, the others are left out")
        return choice.format.make(header, options)

    def _batches(self, format: str, options: Options, progress: Callable[[int], None] | None) -> list[str]:
        records = rows(self.source, progress)
        first = next(records, None)
        if first is None:
            raise ImportFailed(f"{self.source.path}: the file is empty (a header row with an email column is needed)")
        header = first[1]
        read = self._reader(header, format, options)
        batch: dict[str, _Record] = {}
        report, rejects, width = self.report, self.rejects, len(header)
        with _Seen() as seen, _no_full_collections():
            for line, cells in records:
                report.rows += 1
                record = _parse(line, cells, width, read, rejects)
                if record is None:
                    continue
                key = record.address.key
                if key in batch:
                    _merge_into(batch[key], record)
                    report.duplicates += 1
                else:
                    batch[key] = record
                    if len(batch) >= BATCH:
                        self.line = line  # for the message of a failure, which is a batch's
                        self._commit(batch, seen)
                        batch = {}
            self.line = self.line if not report.rows else line
            self._commit(batch, seen)
        return header

    def _commit(self, batch: dict[str, _Record], seen: _Seen) -> None:
        if batch:
            # Written in an earlier batch: this batch writes it again, as an update of that row.
            for key in seen.earlier(list(batch)):
                batch[key].repeat = True
                self.report.duplicates += 1
            rows = [r for r in batch.values() if not (self.dry_run and r.repeat)]
            tally = run_in_transaction(self.db, lambda conn: self._write(conn, rows), read_only=self.dry_run)
            tally.add_to(self.report)
        if not self.dry_run:
            self.rows_written = self.report.rows

    def _write(self, conn: Connection, rows: list[_Record]) -> _Tally:
        # Looked up again each batch: the list may have been removed meanwhile.
        mailing_list = get_list(conn, self.list_name)
        stage = _Stage(conn, mailing_list.id)
        stage.load(rows)
        tally = stage.classify()
        if not self.dry_run:
            stage.write()
        stage.clear()
        return tally


def _parse(line: int, cells: list[str], width: int, read: Reader, rejects: _Rejects) -> _Record | None:
    """One row to a record, or None after rejecting it. Hot: a million calls an import."""
    if len(cells) != width:
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            rejects.add(line, cells, "too many values", f"{len(cells)} values but the header has {width} columns")
            return None
        cells = (cells + [""] * width)[:width]
    row = read(cells)
    if isinstance(row, Reject):
        rejects.add(line, cells, row.kind, row.message)
        return None
    if not row.email.strip():
        rejects.add(line, cells, "no email", "the email address is empty")
        return None
    # A neutralised address (csv_files.neutralise: an exported -dash@example.org) comes back as it was.
    address = try_normalise(restore(row.email.strip()) if "'" in row.email else row.email)
    if isinstance(address, str):
        rejects.add(line, cells, "unusable address" if "cannot be used" in address else "invalid address", address)
        return None
    row.address = address
    return row


# Which status a person ends with when a file names them twice: whoever left or was removed stays so.
_WEIGHT = {SKIPPED: 0, "unconfirmed": 1, SUBSCRIBED: 1, UNSUBSCRIBED: 2, SUPPRESSED: 3}


def _merge_into(first: _Record, later: _Record) -> None:
    first.name, first.fields = merged(first.name, first.fields, later.name, later.fields)
    if _WEIGHT[later.status] > _WEIGHT[first.status]:
        first.status, first.reason = later.status, later.reason
        first.times = later.times or first.times


@contextmanager
def _no_full_collections() -> Iterator[None]:
    """Leave the objects that were there before the import out of the garbage collector's full passes.

    An import makes millions of small objects, so the collector runs a full pass every
    few hundred thousand of them, each walking every object of the process (SQLAlchemy's,
    the web app's): a tenth of an import's time, to find nothing. Frozen objects are still
    there and still freed by reference counting; they are handed back at the end.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Seen:
    """The addresses of the batches already written, in a scratch SQLite file: memory stays flat.

    A later row with one of them is a repeat: written again as an update, counted as a
    duplicate. A set in memory would grow with the file (91 MiB at 250,000 rows).
    """

    def __enter__(self) -> _Seen:
        self.folder = tempfile.TemporaryDirectory(prefix="newsletter-import-")
        self.conn = sqlite3.connect(Path(self.folder.name) / "seen.db", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("CREATE TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
        self.folder.cleanup()

    def earlier(self, keys: list[str]) -> list[str]:
        """Those of `keys` seen in an earlier call; all of them are seen from now on."""
        # One statement: the keys it adds are the new ones; the rest were there.
        added = {k for (k,) in self.conn.execute(
            "INSERT INTO seen SELECT value FROM json_each(?) WHERE true ON CONFLICT DO NOTHING RETURNING key",
            (json.dumps(keys),))}
        return [k for k in keys if k not in added]


# The batch, in a temporary table of the batch's own connection, so that deduplication against
# the database, the guard and suppression are a few set-based statements, not a loop per row.
_STAGE_META = MetaData()
_stage = Table(
    "newsletter_import_stage", _STAGE_META,
    Column("n", Integer),  # the row's place in the batch
    Column("key", String), Column("email", String), Column("hash", String), Column("name", String),
    Column("fields", Text), Column("status", String), Column("reason", String),
    Column("subscribed_at", DateTime(timezone=True)), Column("unsubscribed_at", DateTime(timezone=True)),
    Column("repeat", Boolean),
    # Filled in by classify():
    Column("person_id", Integer), Column("outcome", String), Column("changed", Boolean),
)
_LOADED = ("n", "key", "email", "hash", "name", "fields", "status", "reason", "subscribed_at", "unsubscribed_at",
           "repeat")
_STAGE_DDL = ("CREATE TEMPORARY TABLE IF NOT EXISTS newsletter_import_stage (n INTEGER PRIMARY KEY, key TEXT, "
              "email TEXT, hash TEXT, name TEXT, fields TEXT, status TEXT DEFAULT 'subscribed', "
              "reason TEXT DEFAULT '', subscribed_at {time}, unsubscribed_at {time}, repeat BOOLEAN DEFAULT false, "
              "person_id INTEGER, outcome TEXT DEFAULT 'new', changed BOOLEAN){tail}")
# What classify() finds for a row:
NEW, JOIN, LEAVE, STAY = "new", "join", "leave", "stay"  # the guard lets it through
BLOCKED_HERE, LEFT_BEFORE, LEFT_AND_REMOVED, NOT_TAKEN = "blocked", "left", "left-suppress", "skipped"
_LEAVING = (UNSUBSCRIBED, SUPPRESSED)
_NOW = func.current_timestamp()


class _Stage:
    """One batch, loaded into the stage (executemany on SQLite, COPY on PostgreSQL), then classified
    and written by set-based statements: the guard decides first, and only the statements a
    batch needs run (a file of new people: load, classify, two inserts)."""

    def __init__(self, conn: Connection, list_id: int):
        self.conn, self.list_id = conn, list_id
        self.postgres = conn.dialect.name == "postgresql"
        self.t = _stage
        self.present: set[tuple[str, str]] = set()  # (outcome, status) of the rows, repeats too
        self.changed = 0
        self.doc = ""  # SQLite: the batch's fields, a JSON array in the rows' order

    def load(self, rows: list[_Record]) -> None:
        conn = self.conn
        if self.postgres:
            # A batch's statements are cheap index look-ups that PostgreSQL's estimates make look
            # costly enough to compile (JIT): tens of milliseconds a statement, for nothing.
            conn.exec_driver_sql("SET LOCAL jit = off")
            conn.exec_driver_sql(_STAGE_DDL.format(time="TIMESTAMPTZ", tail=" ON COMMIT DELETE ROWS"))
            self._copy(rows)
            return
        conn.exec_driver_sql(_STAGE_DDL.format(time="TIMESTAMP", tail=""))
        conn.exec_driver_sql("DELETE FROM newsletter_import_stage")
        # An empty suppression list (a new installation) needs no hashes to look up; a row the file
        # says was removed gets one all the same, to be suppressed with. Asked in the batch's own
        # transaction, which holds the write lock: no suppression can come in meanwhile.
        hashed = any_suppressed(conn)
        # Most rows are someone to subscribe, with no dates: the columns' defaults say the rest.
        plain = [(n, r.address.key, r.address.email, r.address.hash if hashed else None, r.name)
                 for n, r in enumerate(rows) if r.status == SUBSCRIBED and not r.times and not r.repeat]
        if plain:
            conn.exec_driver_sql("INSERT INTO newsletter_import_stage (n, key, email, hash, name) "
                                 "VALUES (?, ?, ?, ?, ?)", plain)
        if len(plain) < len(rows):
            marks = ", ".join("?" * len(_LOADED))
            conn.exec_driver_sql(f"INSERT INTO newsletter_import_stage ({', '.join(_LOADED)}) VALUES ({marks})",
                                 [_values(n, r, None, _sqlite_time) for n, r in enumerate(rows)
                                  if r.status != SUBSCRIBED or r.times or r.repeat])
        # The fields, as one JSON document for the batch that SQLite takes apart where they are needed
        # (_fields_loaded, write): json.dumps a row at a time costs more than the rest of its loading.
        self.doc = json.dumps([r.fields for r in rows])

    def _copy(self, rows: list[_Record]) -> None:
        statement = f"COPY newsletter_import_stage ({', '.join(_LOADED)}) FROM STDIN"
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(statement) as copy:
                for n, r in enumerate(rows):
                    copy.write_row(_values(n, r, json.dumps(r.fields), _same))
        except self.conn.dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy would raise it, so run_in_transaction tells a busy database from a lost one.
            raise _wrapped(self.conn, statement, exc, cursor) from exc

    def classify(self) -> _Tally:
        """Each row's outcome, and the batch's counts."""
        t, conn = self.t, self.conn
        person = select(subscribers.c.id).where(subscribers.c.email_key == t.c.key).scalar_subquery()
        member = (select(memberships.c.status).select_from(memberships.join(subscribers))
                  .where(subscribers.c.email_key == t.c.key, memberships.c.list_id == self.list_id)
                  .scalar_subquery())
        rule = guard(self.list_id, t.c.key, t.c.hash)  # the one guard (membership.py), as SQL
        # A row stays NEW (the column's default) unless someone has that address, it is suppressed or
        # the file skips it: the guard refuses nobody else (leaving a list takes a record). A file of
        # new people is then classified by two index look-ups a row, and no row is rewritten.
        known = or_(person.is_not(None), rule.suppressed.is_not(None), t.c.status == SKIPPED)
        conn.execute(t.update().where(known).values(person_id=person, outcome=case(
            (rule.suppressed.is_not(None), BLOCKED_HERE),  # never put back, nor a forgotten record re-made
            (t.c.status == SKIPPED, NOT_TAKEN),
            (rule.left, case((t.c.status == SUPPRESSED, LEFT_AND_REMOVED), else_=LEFT_BEFORE)),
            (person.is_(None), NEW),
            (member.is_(None), JOIN),
            (t.c.status.in_(_LEAVING), LEAVE),
            else_=STAY)))
        tally = _Tally()
        grouped = select(t.c.outcome, t.c.status, t.c.reason, t.c.repeat, func.count()).group_by(
            t.c.outcome, t.c.status, t.c.reason, t.c.repeat)
        stay = 0
        for outcome, status, reason, repeat, n in conn.execute(grouped).all():
            self.present.add((outcome, status))
            if not repeat:
                stay += n if outcome == STAY else 0
                _count(tally, outcome, status, reason, n)
        if self._has(JOIN, LEAVE, STAY):
            updated = self._find_changed()
            tally.updated, tally.unchanged = updated, stay - updated
        return tally

    def _find_changed(self) -> int:
        """Mark the people whose name or fields this batch changes; how many of them count as updated."""
        t, conn = self.t, self.conn
        if not self.postgres:  # their fields, from the batch's document (the rest are new: write() takes theirs)
            conn.exec_driver_sql(f"UPDATE newsletter_import_stage SET fields = j.value FROM json_each(?) AS j "
                                 f"WHERE newsletter_import_stage.n = j.key AND outcome IN ('{JOIN}', '{LEAVE}', "
                                 f"'{STAY}')", (self.doc,))
        conn.execute(t.update().where(t.c.person_id == subscribers.c.id, t.c.outcome.in_((JOIN, LEAVE, STAY)))
                     .values(changed=or_(subscribers.c.name != self._name(), self._fields_differ())))
        changed, updated = conn.execute(select(
            func.count(), func.count().filter(t.c.outcome == STAY, t.c.repeat.is_(False)))
            .where(t.c.changed.is_(True))).one()
        self.changed = int(changed)
        return int(updated)

    def _has(self, *outcomes: str, status: str | None = None) -> bool:
        return any(o in outcomes and (status is None or s == status) for o, s in self.present)

    def write(self) -> None:
        """Suppressions, new people, changed people, new members, leavers: at most five statements."""
        t, conn = self.t, self.conn
        removed = t.c.status == SUPPRESSED
        if self._has(NEW, JOIN, LEAVE, LEFT_AND_REMOVED, status=SUPPRESSED):
            conn.execute(insert_new_only(conn.dialect.name, suppressions, "email_hash", returning=None).from_select(
                ["email_hash", "email", "reason", "source", "created_at"],
                select(t.c.hash, t.c.email, t.c.reason, literal("import"), _NOW)
                .where(removed, t.c.outcome.in_((NEW, JOIN, LEAVE, LEFT_AND_REMOVED)))))
        if self._has(NEW):
            self._new_people()
        if self.changed:
            conn.execute(subscribers.update().where(subscribers.c.id == t.c.person_id, t.c.changed.is_(True))
                         .values(name=self._name(), fields=self._merged(), updated_at=_NOW))
        if self._has(NEW, JOIN):
            self._join()
        if self._has(LEAVE):
            conn.execute(memberships.update().where(
                memberships.c.list_id == self.list_id, memberships.c.subscriber_id == t.c.person_id,
                t.c.outcome == LEAVE).values(status=UNSUBSCRIBED, source="import", unsubscribed_at=_NOW,
                                             updated_at=_NOW))

    def _new_people(self) -> None:
        t = self.t
        columns = ["email", "email_key", "name", "fields", "created_at", "updated_at"]
        if self.postgres:
            self.conn.execute(subscribers.insert().from_select(columns, select(
                t.c.email, t.c.key, t.c.name, cast(t.c.fields, JSON), _NOW, _NOW).where(t.c.outcome == NEW)))
            return
        self.conn.exec_driver_sql(
            f"INSERT INTO subscribers ({', '.join(columns)}) SELECT s.email, s.key, s.name, j.value, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM json_each(?) AS j JOIN newsletter_import_stage AS s "
            f"ON s.n = j.key WHERE s.outcome = '{NEW}'", (self.doc,))

    def _join(self) -> None:
        """New members, with the status the file gives (a suppressed person has left the list too)."""
        t = self.t
        leaving = t.c.status.in_(_LEAVING)
        status = case((t.c.status == SUPPRESSED, UNSUBSCRIBED), else_=t.c.status)
        # A person by an index look-up a row: a join would let a planner with stale statistics
        # scan every subscriber once a batch.
        person = func.coalesce(t.c.person_id, select(subscribers.c.id).where(
            subscribers.c.email_key == t.c.key).scalar_subquery())
        self.conn.execute(memberships.insert().from_select(
            ["list_id", "subscriber_id", "status", "source", "subscribed_at", "confirmed_at", "unsubscribed_at",
             "updated_at"],
            select(literal(self.list_id), person, status, literal("import"),
                   func.coalesce(t.c.subscribed_at, _NOW), case((t.c.status == SUBSCRIBED, _NOW), else_=null()),
                   case((leaving, func.coalesce(t.c.unsubscribed_at, _NOW)), else_=null()), _NOW)
            .where(t.c.outcome.in_((NEW, JOIN)))))

    def clear(self) -> None:
        if not self.postgres:  # PostgreSQL empties it at commit
            self.conn.exec_driver_sql("DELETE FROM newsletter_import_stage")

    # --- people.merged, in SQL: new non-empty values win, the rest is kept -------------------------------

    def _name(self) -> Any:
        return func.coalesce(func.nullif(self.t.c.name, ""), subscribers.c.name)

    def _merged(self) -> Any:
        if self.postgres:
            return cast(cast(subscribers.c.fields, JSONB).op("||")(cast(self.t.c.fields, JSONB)), JSON)
        return func.json_patch(subscribers.c.fields, self.t.c.fields)

    def _fields_differ(self) -> Any:
        if self.postgres:
            return cast(subscribers.c.fields, JSONB) != cast(self._merged(), JSONB)
        return func.json(subscribers.c.fields) != self._merged()


def _values(n: int, r: _Record, fields: str | None, time: Callable[[dt.datetime | None], Any]) -> tuple[Any, ...]:
    address, times = r.address, r.times
    return (n, address.key, address.email, address.hash, r.name, fields, r.status, r.reason,
            time(times.get("subscribed_at")) if times else None, time(times.get("unsubscribed_at")) if times else None,
            r.repeat)


def _sqlite_time(value: dt.datetime | None) -> str | None:
    # How SQLAlchemy's SQLite dialect stores a DateTime: text, in UTC (as_utc), without the zone.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if value is not None else None


def _same(value: dt.datetime | None) -> dt.datetime | None:
    return value


def _count(tally: _Tally, outcome: str, status: str, reason: str, n: int) -> None:
    """What a group of rows with one outcome adds to the summary (STAY: classify counts those)."""
    if outcome == BLOCKED_HERE:
        tally.reasons[BLOCKED, SUPPRESSED_HERE] += n
    elif outcome == NOT_TAKEN:
        tally.reasons[NOT_IMPORTED, reason] += n
    elif outcome == LEFT_BEFORE:
        tally.reasons[LEFT, LEFT_HERE] += n
    elif outcome == STAY:
        return
    elif status == SUPPRESSED:  # LEFT_AND_REMOVED, or NEW, JOIN, LEAVE: recorded as having left
        tally.reasons[BLOCKED, reason] += n
    elif status == UNSUBSCRIBED:
        tally.reasons[LEFT, reason or _LEFT_IN_FILE] += n
    else:
        tally.added += n
