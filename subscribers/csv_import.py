"""`subscribers import`: a CSV file into a list, streamed, in short transactions.

The file's header decides how it is read (formats.py: a plain CSV, or the
export of Mailchimp, listmonk, Sendy or Substack; `auto` recognises them),
and every format's rows take this one path. The file is first read whole as
CSV (malformed records and a bad header stop the import before anything is
written), then parsed and written in batches of BATCH rows, each its own
transaction (one query per batch for each of suppression, existing
subscribers and memberships): a million rows take seconds, memory stays
flat, and other writers (a send, the event poller, an unsubscribe) get the
database between batches instead of waiting for the whole file. A busy
database is waited out (run_in_transaction).

A failure part-way (ImportIncomplete) leaves the batches already committed;
running the same import again finishes it, since an import converges: rows
already imported count as unchanged. `--dry-run` classifies each batch in a
read-only transaction and writes nothing; its counts are exact, because a
row's outcome depends only on its own address's records, which earlier
batches of the same file do not touch (a later duplicate only merges into
the first row and is counted as a duplicate).

Nobody who unsubscribed or is suppressed is ever put back on the list, and
nobody a file says left or was removed there is subscribed here: they are
recorded as unsubscribed from the list (and suppressed, when the tool
bounced them or they reported spam), whichever order the files come in.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.exc import SQLAlchemyError

from .addresses import Address, try_normalise
from .csv_files import CsvSource, atomic_writer, check_structure, inspect_file, restore, rows, safe_row
from .db import NOW, Database, bulk_execute, bulk_insert, in_values, run_in_transaction, utcnow
from .errors import ImportFailed, ImportIncomplete, SubscribersError
from .formats import SKIPPED, SUBSCRIBED, SUPPRESSED, UNSUBSCRIBED, Header, Options, Reader, Reject, choose
from .lists import MailingList, get_list
from .membership import refusals
from .people import merged
from .schema import memberships, subscribers
from .suppression import suppress_many

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


@dataclass
class _Record:
    line: int
    address: Address
    name: str
    fields: dict[str, Any]
    status: str  # formats.py: subscribed, unconfirmed, unsubscribed, suppressed or skipped
    reason: str
    times: dict[str, dt.datetime]
    repeat: bool = False  # its address came earlier in the file, in a batch already written

    @property
    def membership(self) -> str:
        """The status its membership is written with: a suppressed person has left the list too."""
        return UNSUBSCRIBED if self.status == SUPPRESSED else self.status

    @property
    def leaving(self) -> bool:
        return self.status in (UNSUBSCRIBED, SUPPRESSED)


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


@dataclass
class _Plan:
    """The writes one batch needs."""
    new_people: list[_Record] = field(default_factory=list)
    changed_people: list[dict[str, Any]] = field(default_factory=list)
    new_members: list[tuple[int, _Record]] = field(default_factory=list)
    leaving: list[dict[str, Any]] = field(default_factory=list)
    suppress: list[_Record] = field(default_factory=list)


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
        seen: set[str] = set()
        report = self.report
        for line, cells in records:
            self.line = line
            report.rows += 1
            record = _parse(line, cells, len(header), read, self.rejects)
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
        return header

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


def _parse(line: int, cells: list[str], width: int, read: Reader, rejects: _Rejects) -> _Record | None:
    """One row to a record, or None after rejecting it. Hot: a million calls an import."""
    if len(cells) != width:
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            rejects.add(line, cells, "too many values", f"{len(cells)} values but the header has {width} columns")
            return None
        cells = (cells + [""] * width)[:width]
    # What our own exports and rejects files neutralised (csv_files.neutralise) comes back as it was.
    row = read([restore(c) for c in cells] if any(c[:1] == "'" for c in cells) else cells)
    if isinstance(row, Reject):
        rejects.add(line, cells, row.kind, row.message)
        return None
    if not row.email.strip():
        rejects.add(line, cells, "no email", "the email address is empty")
        return None
    address = try_normalise(row.email)
    if isinstance(address, str):
        rejects.add(line, cells, "unusable address" if "cannot be used" in address else "invalid address", address)
        return None
    return _Record(line, address, row.name, row.fields, row.status, row.reason, row.times)


# Which status a person ends with when a file names them twice: whoever left or was removed stays so.
_WEIGHT = {SKIPPED: 0, "unconfirmed": 1, SUBSCRIBED: 1, UNSUBSCRIBED: 2, SUPPRESSED: 3}


def _merge_into(first: _Record, later: _Record) -> None:
    first.name, first.fields = merged(first.name, first.fields, later.name, later.fields)
    if _WEIGHT[later.status] > _WEIGHT[first.status]:
        first.status, first.reason = later.status, later.reason
        first.times = later.times or first.times


def _classify(conn: Connection, mailing_list: MailingList, batch: dict[str, _Record], tally: _Tally) -> _Plan:
    """What one batch must write, and its counts: four reads (repeats are written, not counted)."""
    plan = _Plan()
    if not batch:
        return plan
    # Asked each batch: an address suppressed, or someone unsubscribing, while the import runs
    # must not be subscribed by it.
    refused = refusals(conn, mailing_list, (r.address for r in batch.values()))
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
        refusal = refused.get(key)
        # A repeat's outcome was counted with its first row: count it in a tally nobody reads.
        counts = _Tally() if record.repeat else tally
        if refusal is not None and refusal.kind == "suppressed":
            counts.reasons[BLOCKED, refusal.reason] += 1  # never put back, nor a forgotten record re-made
        elif record.status == SKIPPED:
            counts.reasons[NOT_IMPORTED, record.reason] += 1
        elif refusal is not None:
            # Left this list: never put back (the law, not a preference). Removed there too: suppressed as well.
            if record.status == SUPPRESSED:
                plan.suppress.append(record)
                counts.reasons[BLOCKED, record.reason] += 1
            else:
                counts.reasons[LEFT, refusal.reason] += 1
        else:
            _classify_one(plan, counts, record, row, statuses.get(row.id) if row is not None else None)
    return plan


def _classify_one(plan: _Plan, counts: _Tally, record: _Record, row: Any, status: str | None) -> None:
    """A row the guard lets through: someone new, new to the list, or on it and not unsubscribed."""
    if record.status == SUPPRESSED:
        plan.suppress.append(record)
    if row is None:
        plan.new_people.append(record)
        _count_new(counts, record)
        return
    name, fields = merged(row.name, row.fields, record.name, record.fields)
    changed = (name, fields) != (row.name, row.fields)
    if changed:
        plan.changed_people.append({"b_id": row.id, "name": name, "fields": fields})
    if status is None:
        plan.new_members.append((row.id, record))
        _count_new(counts, record)
    elif record.leaving:
        plan.leaving.append({"b_id": row.id})
        _count_new(counts, record)
    else:
        counts.updated += changed
        counts.unchanged += not changed


def _count_new(tally: _Tally, record: _Record) -> None:
    # A row a file marks as having left is recorded as such, never added.
    if record.status == SUPPRESSED:
        tally.reasons[BLOCKED, record.reason] += 1
    elif record.status == UNSUBSCRIBED:
        tally.reasons[LEFT, record.reason or _LEFT_IN_FILE] += 1
    else:
        tally.added += 1


def _apply(conn: Connection, mailing_list: MailingList, plan: _Plan) -> None:
    """At most five bulk writes."""
    new_people, new_members, leaving = plan.new_people, list(plan.new_members), plan.leaving
    suppress_many(conn, [(r.address, r.reason) for r in plan.suppress], "import")
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
        ).values(status=UNSUBSCRIBED, source="import", unsubscribed_at=_NOW, updated_at=_NOW), leaving)


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
            by_status.setdefault(record.membership, []).append({"subscriber_id": subscriber_id})
    for status, group in by_status.items():
        bulk_insert(conn, memberships, group, {
            "list_id": mailing_list.id, "source": "import", "updated_at": NOW, "status": status,
            "subscribed_at": NOW, "confirmed_at": NOW if status == SUBSCRIBED else None,
            "unsubscribed_at": NOW if status == UNSUBSCRIBED else None})
    if dated:
        conn.execute(memberships.insert().values(list_id=mailing_list.id, source="import", updated_at=_NOW), dated)


def _membership(subscriber_id: int, record: _Record) -> dict[str, Any]:
    # A re-imported export keeps each person's dates; someone who had left stays left.
    now, status = utcnow(), record.membership
    return {
        "subscriber_id": subscriber_id, "status": status,
        "subscribed_at": record.times.get("subscribed_at", now),
        "confirmed_at": now if status == SUBSCRIBED else None,
        "unsubscribed_at": record.times.get("unsubscribed_at", now) if status == UNSUBSCRIBED else None,
    }
