"""`subscribers import`: a CSV file into a list, streamed, in short transactions.

The file is first read whole as CSV (malformed records and a bad header stop
the import before anything is written), then parsed and written in batches
of BATCH rows, each its own transaction (one query per batch for each of
suppression, existing subscribers and memberships): a million rows take
seconds, memory stays flat, and other writers (a send, the event poller, an
unsubscribe) get the database between batches instead of waiting for the
whole file. A busy database is waited out (run_in_transaction).

A failure part-way (ImportIncomplete) leaves the batches already committed;
running the same import again finishes it, since an import converges: rows
already imported count as unchanged. `--dry-run` classifies each batch in a
read-only transaction and writes nothing; its counts are exact, because a
row's outcome depends only on its own address's records, which earlier
batches of the same file do not touch (a later duplicate only merges into
the first row and is counted as a duplicate). Nobody who unsubscribed or is
suppressed is ever put back on the list.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.exc import SQLAlchemyError

from .addresses import Address, try_normalise
from .csv_files import CsvSource, atomic_writer, check_structure, inspect_file, rows
from .db import NOW, Database, as_utc, bulk_execute, bulk_insert, in_values, run_in_transaction, utcnow
from .errors import ImportFailed, ImportIncomplete, SubscribersError
from .lists import MailingList, get_list
from .people import field_name, full_name, merged
from .schema import memberships, subscribers
from .suppression import any_suppressed, suppressed_hashes

# Rows a transaction: ~0.1 s of writing here, so the write lock is free again within a
# fraction of a second for a send, the poller or an unsubscribe (SQLite has one writer).
BATCH = 5000
EMAIL_COLUMNS = ("email", "email_address", "e-mail", "e-mail_address")
NAME_COLUMN = "name"
# Columns `export` writes that are not custom fields.
STATUS_COLUMN = "status"
TIME_COLUMNS = ("subscribed_at", "unsubscribed_at")
STATUSES_IN_FILES = ("subscribed", "unconfirmed", "unsubscribed")


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
    duplicates: int = 0
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would be" if self.dry_run else ""
        parts = [
            f"{self.added} added", f"{self.updated} updated", f"{self.unchanged} unchanged",
            f"{self.rejected} rejected", f"{self.skipped_unsubscribed} skipped (unsubscribed)",
            f"{self.skipped_suppressed} skipped (suppressed)",
        ]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate rows merged")
        head = f"{self.rows} rows {verb + ' ' if verb else ''}imported into {self.list_name!r}".replace("  ", " ")
        return f"{head}: " + ", ".join(parts) + (" (dry run: nothing was written)" if self.dry_run else "")


@dataclass
class _Record:
    line: int
    address: Address
    name: str
    fields: dict[str, str]
    status: str  # subscribed, unconfirmed or unsubscribed (from an exported file)
    times: dict[str, dt.datetime]
    repeat: bool = False  # its address came earlier in the file, in a batch already written


@dataclass
class _Tally:
    """What one batch did; added to the report only once its transaction commits."""
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_unsubscribed: int = 0
    skipped_suppressed: int = 0

    def add_to(self, report: ImportReport) -> None:
        for name in ("added", "updated", "unchanged", "skipped_unsubscribed", "skipped_suppressed"):
            setattr(report, name, getattr(report, name) + getattr(self, name))


@dataclass
class _Plan:
    """The writes one batch needs."""
    new_people: list[_Record] = field(default_factory=list)
    changed_people: list[dict[str, Any]] = field(default_factory=list)
    new_members: list[tuple[int, _Record]] = field(default_factory=list)
    leaving: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Columns:
    header: list[str]
    email: int
    name: int | None
    status: int | None
    times: dict[str, int]
    fields: list[tuple[int, str]]


def _columns(header: list[str], source: CsvSource) -> _Columns:
    names = [field_name(h) for h in header]
    email = next((names.index(c) for c in EMAIL_COLUMNS if c in names), None)
    if email is None:
        raise ImportFailed(f"{source.path}: no email column (columns: {', '.join(h.strip() for h in header)})")
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise ImportFailed(f"{source.path}: column names appear twice: {', '.join(dupes)}")
    reserved = {names[email], NAME_COLUMN, STATUS_COLUMN, *TIME_COLUMNS}
    return _Columns(
        header=header, email=email,
        name=names.index(NAME_COLUMN) if NAME_COLUMN in names else None,
        status=names.index(STATUS_COLUMN) if STATUS_COLUMN in names else None,
        times={c: names.index(c) for c in TIME_COLUMNS if c in names},
        fields=[(i, n) for i, n in enumerate(names) if n and n not in reserved],
    )


class _Rejects:
    """Rejected rows, as they were, with line number and reason; spooled to disk."""

    def __init__(self) -> None:
        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
        self.writer = csv.writer(self.spool)
        self.count = 0

    def add(self, line: int, cells: list[str], reason: str) -> None:
        self.count += 1
        self.writer.writerow([line, reason, *cells])

    def save(self, path: Path, header: list[str]) -> None:
        self.spool.seek(0)
        with atomic_writer(path) as out:
            writer = csv.writer(out)
            writer.writerow(["line", "reason", *header])
            writer.writerows(csv.reader(self.spool))


def import_csv(db: Database, path: Path, list_name: str, *, dry_run: bool = False,
               rejects_path: Path | None = None, on_progress: Callable[[int, int], None] | None = None,
               ) -> ImportReport:
    """Import `path` into the list; raises ImportFailed (nothing changed) or ImportIncomplete."""
    source = inspect_file(path)
    if rejects_path is not None and not os.access(rejects_path.parent or Path("."), os.W_OK):
        # Checked first: the import must not succeed and then fail to report its rejects.
        raise ImportFailed(f"{rejects_path}: cannot write the rejects file there (no such folder, or read-only)")
    run_in_transaction(db, lambda conn: get_list(conn, list_name), read_only=True)  # a typo fails first
    check_structure(source)
    report = ImportReport(list_name=list_name, dry_run=dry_run, warnings=list(source.warnings))
    rejects = _Rejects()
    progress = (lambda done: on_progress(done, source.size)) if on_progress else None
    header = _Import(db, source, list_name, report, rejects, dry_run).run(progress)
    report.rejected = rejects.count
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

    def run(self, progress: Callable[[int], None] | None) -> list[str]:
        try:
            return self._batches(progress)
        except (SubscribersError, SQLAlchemyError, OSError) as exc:
            if not self.rows_written:
                raise  # nothing was committed: the error as it is
            raise ImportIncomplete(
                f"{self.source.path}: the import stopped near line {self.line}: {exc}. "
                f"The first {self.rows_written:,} rows were imported and stay imported; run the same import "
                "again to finish it (rows already imported are left as they are)", self.rows_written) from None

    def _batches(self, progress: Callable[[int], None] | None) -> list[str]:
        records = rows(self.source, progress)
        first = next(records, None)
        if first is None:
            raise ImportFailed(f"{self.source.path}: the file is empty (a header row with an email column is needed)")
        columns = _columns(first[1], self.source)
        batch: dict[str, _Record] = {}
        seen: set[str] = set()
        report = self.report
        for line, cells in records:
            self.line = line
            report.rows += 1
            record = _parse(line, cells, columns, self.rejects)
            if record is None:
                continue
            key = record.address.key
            if key in batch:
                _merge_into(batch[key], record)
                report.duplicates += 1
            elif key in seen:
                # Written in an earlier batch: this batch writes it again as an update of that row.
                report.duplicates += 1
                record.repeat = True
                batch[key] = record
            else:
                seen.add(key)
                batch[key] = record
            if len(batch) >= BATCH:
                self._commit(batch)
                batch = {}
        self._commit(batch)
        return columns.header

    def _commit(self, batch: dict[str, _Record]) -> None:
        if batch:
            tally = run_in_transaction(self.db, lambda conn: self._write(conn, batch), read_only=self.dry_run)
            tally.add_to(self.report)
        if not self.dry_run:
            self.rows_written = self.report.rows

    def _write(self, conn: Connection, batch: dict[str, _Record]) -> _Tally:
        # Looked up again each batch: the list may have been removed meanwhile.
        mailing_list = get_list(conn, self.list_name)
        if self.dry_run:
            # A repeat changes no count; without the first row's write it would be misjudged.
            batch = {key: record for key, record in batch.items() if not record.repeat}
        tally = _Tally()
        plan = _classify(conn, mailing_list, batch, tally)
        if not self.dry_run:
            _apply(conn, mailing_list, plan)
        return tally


def _parse(line: int, cells: list[str], columns: _Columns, rejects: _Rejects) -> _Record | None:
    """One row to a record, or None after rejecting it. Hot: a million calls an import."""
    width = len(columns.header)
    if len(cells) != width:
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            rejects.add(line, cells, f"{len(cells)} values but the header has {width} columns")
            return None
        cells = (cells + [""] * width)[:width]
    address = try_normalise(cells[columns.email])
    if isinstance(address, str):
        rejects.add(line, cells, address)
        return None
    status = cells[columns.status].strip().lower() if columns.status is not None else ""
    if status and status not in STATUSES_IN_FILES:
        rejects.add(line, cells, f"unknown status {status!r} (known: {', '.join(STATUSES_IN_FILES)})")
        return None
    fields = {}
    for i, key in columns.fields:
        if value := cells[i].strip():
            fields[key] = value
    times = _times(cells, columns) if columns.times else {}
    if times is None:
        rejects.add(line, cells, "subscribed_at/unsubscribed_at: not an ISO date and time")
        return None
    name = cells[columns.name].strip() if columns.name is not None else ""
    return _Record(line, address, name or full_name("", fields), fields, status or "subscribed", times)


def _times(cells: list[str], columns: _Columns) -> dict[str, dt.datetime] | None:
    times = {}
    for key, i in columns.times.items():
        if stamp := cells[i].strip():
            try:
                times[key] = as_utc(dt.datetime.fromisoformat(stamp))
            except ValueError:
                return None
    return times


def _merge_into(first: _Record, later: _Record) -> None:
    first.name, first.fields = merged(first.name, first.fields, later.name, later.fields)
    if later.status == "unsubscribed":  # leaving always wins
        first.status = "unsubscribed"


def _classify(conn: Connection, mailing_list: MailingList, batch: dict[str, _Record], tally: _Tally) -> _Plan:
    """What one batch must write, and its counts: three reads (repeats are written, not counted)."""
    plan = _Plan()
    if not batch:
        return plan
    # An empty suppression list (a new installation) needs no look-up, nor hashes. Asked each
    # batch: an address suppressed while the import runs must not be subscribed by it.
    blocked = suppressed_hashes(conn, (r.address.hash for r in batch.values())) if any_suppressed(conn) else set()
    existing = {row.email_key: row for row in conn.execute(
        select(subscribers.c.id, subscribers.c.email_key, subscribers.c.name, subscribers.c.fields)
        .where(in_values(conn, subscribers.c.email_key, list(batch))))}
    statuses = dict(conn.execute(
        select(memberships.c.subscriber_id, memberships.c.status).where(
            memberships.c.list_id == mailing_list.id,
            in_values(conn, memberships.c.subscriber_id, [row.id for row in existing.values()]))).all()
    ) if existing else {}
    for key, record in batch.items():
        row = existing.get(key)
        status = statuses.get(row.id) if row is not None else None
        # A repeat's outcome was counted with its first row: count it in a tally nobody reads.
        counts = _Tally() if record.repeat else tally
        if record.address.hash in blocked:
            counts.skipped_suppressed += 1
        elif status == "unsubscribed":
            counts.skipped_unsubscribed += 1  # never put back: the law, not a preference
        elif row is None:
            plan.new_people.append(record)
            _count_new(counts, record)
        else:
            name, fields = merged(row.name, row.fields, record.name, record.fields)
            changed = (name, fields) != (row.name, row.fields)
            if changed:
                plan.changed_people.append({"b_id": row.id, "name": name, "fields": fields})
            if status is None:
                plan.new_members.append((row.id, record))
                _count_new(counts, record)
            elif record.status == "unsubscribed":
                plan.leaving.append({"b_id": row.id})
                counts.updated += 1
            else:
                counts.updated += changed
                counts.unchanged += not changed
    return plan


def _apply(conn: Connection, mailing_list: MailingList, plan: _Plan) -> None:
    """At most four bulk writes."""
    new_people, new_members, leaving = plan.new_people, list(plan.new_members), plan.leaving
    if new_people:
        bulk_insert(conn, subscribers, [{"email": r.address.email, "email_key": r.address.key,
                                         "name": r.name, "fields": r.fields} for r in new_people],
                    {"created_at": NOW, "updated_at": NOW})
        ids = dict(conn.execute(select(subscribers.c.email_key, subscribers.c.id).where(
            in_values(conn, subscribers.c.email_key, [r.address.key for r in new_people]))).all())
        new_members += [(ids[r.address.key], r) for r in new_people]
    bulk_execute(conn, _UPDATE_PEOPLE, plan.changed_people)
    _insert_memberships(conn, mailing_list, new_members)
    if leaving:
        conn.execute(memberships.update().where(
            memberships.c.list_id == mailing_list.id, memberships.c.subscriber_id == bindparam("b_id"),
        ).values(status="unsubscribed", source="import", unsubscribed_at=_NOW, updated_at=_NOW), leaving)


# Bulk writes take their timestamps from the database clock: binding a Python
# datetime costs SQLAlchemy's SQLite dialect ~3 µs a value, most of an import.
_NOW = func.current_timestamp()
_UPDATE_PEOPLE = subscribers.update().where(subscribers.c.id == bindparam("b_id")).values(updated_at=_NOW)


def _insert_memberships(conn: Connection, mailing_list: MailingList, members: list[tuple[int, _Record]]) -> None:
    by_status: dict[str, list[dict[str, Any]]] = {}
    dated: list[dict[str, Any]] = []
    for subscriber_id, record in members:
        if record.times:
            dated.append(_membership(subscriber_id, record))
        else:
            by_status.setdefault(record.status, []).append({"subscriber_id": subscriber_id})
    for status, group in by_status.items():
        bulk_insert(conn, memberships, group, {
            "list_id": mailing_list.id, "source": "import", "updated_at": NOW, "status": status,
            "subscribed_at": NOW, "confirmed_at": NOW if status == "subscribed" else None,
            "unsubscribed_at": NOW if status == "unsubscribed" else None})
    if dated:
        conn.execute(memberships.insert().values(list_id=mailing_list.id, source="import", updated_at=_NOW), dated)


def _count_new(tally: _Tally, record: _Record) -> None:
    # A row an exported file marks unsubscribed is recorded as such, never added.
    if record.status == "unsubscribed":
        tally.skipped_unsubscribed += 1
    else:
        tally.added += 1


def _membership(subscriber_id: int, record: _Record) -> dict[str, Any]:
    # A re-imported export keeps each person's dates; someone who had left stays left.
    now = utcnow()
    return {
        "subscriber_id": subscriber_id, "status": record.status,
        "subscribed_at": record.times.get("subscribed_at", now),
        "confirmed_at": now if record.status == "subscribed" else None,
        "unsubscribed_at": record.times.get("unsubscribed_at", now) if record.status == "unsubscribed" else None,
    }
