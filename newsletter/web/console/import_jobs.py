"""The console's imports while they run: uploaded files, background threads, progress, reports.

An upload is copied into a folder private to this serve process (mode 0700, made
by mkdtemp), under a random name: never a path from the user. A dry run and the
import that may follow it read that same copy; the real import deletes it when it
ends, and whatever is left (a dry run nobody imported, a rejects file) goes an
hour after its import ended.

State lives in this process's memory: the upload and the rejects file are files of
this process's temporary folder, so the progress and report sit beside them. With
several serve processes, an import is seen by the process that ran it (a console
behind a load balancer needs sticky sessions for this page).

Each import is one thread running subscribers.import_csv, which commits a batch at
a time: a server stopped mid-import leaves the committed batches, and running the
same import again finishes it (the import converges).
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("newsletter.web.imports")

KEEP_SECONDS = 3600  # an upload not imported, and every rejects file, are deleted an hour after
MAX_RUNNING = 2  # imports at once in one process: each holds a CPU (and SQLite has one writer)
REJECTS_SHOWN = 10  # the first rejected rows a page shows; the download has them all
CHUNK = 1 << 20
PREFIX = "newsletter-imports-"  # then the process id: a folder whose process is gone may be deleted


class Busy(Exception):
    """Too many imports running in this process: try again when one has finished."""


@dataclass(frozen=True)
class Upload:
    path: Path
    name: str  # as the browser named it: shown (escaped), never used as a path
    size: int
    lines: int  # physical lines, header included: the basis of the progress's row estimate

    @property
    def rows(self) -> int:
        """About how many records the file holds (a quoted value may span lines; exact at the end)."""
        return max(self.lines - 1, 0)

    @property
    def shown_size(self) -> str:
        if self.size < 1024:
            return f"{self.size} bytes"
        return f"{self.size / 1024:,.1f} KB" if self.size < 1024 * 1024 else f"{self.size / (1024 * 1024):,.1f} MB"


@dataclass
class Job:
    """One dry run or import: what it reads, where it is, and what came of it."""

    id: str
    upload: Upload
    list_name: str
    format: str
    dry_run: bool
    actor: str  # who started it, as the audit log names people (user:EMAIL)
    started_at: dt.datetime
    rejects_path: Path
    state: str = "checking"  # -> running -> finished | failed
    done_bytes: int = 0
    report: Any = None  # subscribers.ImportReport once finished
    error: str = ""
    error_status: int = 400
    rows_written: int = 0  # an import that stopped part-way: the rows that stay imported
    first_rejects: list[list[str]] = field(default_factory=list)
    imported_as: str = ""  # a dry run: the import of the same file that followed it
    ended_at: float | None = None  # time.monotonic(), for expiry
    read_rows: bool = False  # the file's checks passed: rows were read (and, unless a dry run, written)
    begun: threading.Event = field(default_factory=threading.Event)  # rows are being read, or it has ended
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def kind(self) -> str:
        return "Dry run" if self.dry_run else "Import"

    @property
    def finished(self) -> bool:
        return self.state in ("finished", "failed")

    @property
    def fraction(self) -> float:
        if self.state == "finished":
            return 1.0
        return min(self.done_bytes / self.upload.size, 1.0) if self.upload.size else 0.0

    @property
    def rows_done(self) -> int:
        """About how many rows are read, from the bytes read (import_csv reports bytes)."""
        return round(self.upload.rows * self.fraction)

    @property
    def has_rejects(self) -> bool:
        return self.report is not None and self.report.rejected > 0 and self.rejects_path.exists()

    def progress(self, done: int, total: int) -> None:
        """import_csv's on_progress: bytes read of the file, once its checks have passed."""
        self.done_bytes = done
        if self.state == "checking":
            self.state, self.read_rows = "running", True
            self.begun.set()

    def wait_begun(self, grace: float) -> None:
        """Until the file's checks passed (or it failed); then up to `grace` seconds more for the end."""
        self.begun.wait()
        if grace:
            self.ended.wait(grace)


class ImportJobs:
    """Every import of this process, by id; the private folder their files live in."""

    def __init__(self, db: Any, audit: Callable[[Any, str, str, str], None],
                 clock: Callable[[], float] = time.monotonic):
        self.db, self.audit, self.clock = db, audit, clock
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.folder = _private_folder()
        # Gone with the app, or at the process's exit, whatever is left in it.
        weakref.finalize(self, shutil.rmtree, self.folder, True)

    # --- uploads ---

    def stage(self, stream: IO[bytes], name: str) -> Upload:
        """Copy an uploaded file into the private folder, counting its lines on the way."""
        path = self.folder / f"upload-{secrets.token_urlsafe(12)}.csv"
        size = lines = 0
        last = b"\n"
        with open(path, "wb") as out:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                out.write(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        return Upload(path, _shown_name(name), size, lines + (last != b"\n"))

    # --- jobs ---

    def start(self, upload: Upload, list_name: str, format: str, dry_run: bool, actor: str) -> Job:
        """A thread running the import; Busy when MAX_RUNNING already run."""
        self.sweep()
        with self.lock:
            if sum(not job.finished for job in self.jobs.values()) >= MAX_RUNNING:
                raise Busy(f"{MAX_RUNNING} imports are running in this server already; "
                           "start this one when one of them has finished")
            job_id = secrets.token_urlsafe(12)
            job = Job(job_id, upload, list_name, format, dry_run, actor, dt.datetime.now(dt.UTC),
                      self.folder / f"rejects-{job_id}.csv")
            self.jobs[job_id] = job
        if not dry_run:
            self.audit(self.db, actor, "console.import.run", f"{_what(job)}: started")
        threading.Thread(target=self._run, args=(job,), name=f"import-{job_id[:6]}", daemon=True).start()
        return job

    def import_after(self, dry: Job, actor: str) -> Job:
        """The real import of a dry run's file; the same one again when it was already started."""
        with self.lock:
            if dry.imported_as:
                return self.jobs.get(dry.imported_as) or dry
            dry.imported_as = "starting"  # a second click meanwhile waits for this one
        try:
            job = self.start(dry.upload, dry.list_name, dry.format, False, actor)
        except BaseException:
            dry.imported_as = ""
            raise
        dry.imported_as = job.id
        return job

    def get(self, job_id: str) -> Job | None:
        self.sweep()
        return self.jobs.get(job_id)

    def recent(self) -> list[Job]:
        self.sweep()
        return sorted(self.jobs.values(), key=lambda job: job.started_at, reverse=True)

    def forget(self, job: Job) -> None:
        """A job refused before it read a row (a bad file): nothing to keep."""
        with self.lock:
            self.jobs.pop(job.id, None)
        _remove(job.upload.path, job.rejects_path)

    def sweep(self) -> None:
        """Delete what ended more than KEEP_SECONDS ago: uploads nobody imported, rejects files."""
        now = self.clock()
        with self.lock:
            old = [job for job in self.jobs.values() if job.ended_at is not None and now - job.ended_at > KEEP_SECONDS]
            for job in old:
                del self.jobs[job.id]
        for job in old:
            # A dry run's upload, once imported, is the import's: that one deleted it when it ended.
            _remove(job.rejects_path, *([] if job.imported_as else [job.upload.path]))

    # --- the thread ---

    def _run(self, job: Job) -> None:
        from subscribers import ImportIncomplete, SubscribersError, import_csv
        try:
            job.report = import_csv(self.db, job.upload.path, job.list_name, format=job.format,
                                    dry_run=job.dry_run, rejects_path=job.rejects_path, on_progress=job.progress)
            job.first_rejects = _first_rejects(job.rejects_path) if job.report.rejected else []
            job.state = "finished"
        except SubscribersError as exc:
            self._failed(job, exc)
            job.rows_written = exc.rows_written if isinstance(exc, ImportIncomplete) else 0
        except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback; the page says it failed
            log.exception("import %s failed", job.id)
            job.error, job.error_status = f"the import failed unexpectedly ({type(exc).__name__})", 500
            job.state = "failed"
        finally:
            job.ended_at = self.clock()
            if not job.dry_run or job.state == "failed":  # nothing more will read it
                _remove(job.upload.path)
            self._audit_end(job)
            job.ended.set()
            job.begun.set()

    def _failed(self, job: Job, exc: Exception) -> None:
        from ..http import status_of
        # The library names the file by its path, which is this process's private copy: say the user's name.
        job.state, job.error = "failed", str(exc).replace(str(job.upload.path), job.upload.name)
        job.error_status = status_of(exc) or 400

    def _audit_end(self, job: Job) -> None:
        action = "console.import.dry_run" if job.dry_run else "console.import.run"
        outcome = _counts(job.report) if job.report is not None else f"failed: {job.error}"
        try:
            self.audit(self.db, job.actor, action, f"{_what(job)}: {outcome}")
        except Exception:  # noqa: BLE001 - the import's outcome stands; the log line says the audit failed
            log.exception("could not audit import %s", job.id)


def _what(job: Job) -> str:
    # The file's name and the list; never an address (the file's content stays out of the log).
    return f"file {job.upload.name!r} into list {job.list_name} (format {job.format})"


def _counts(report: Any) -> str:
    return (f"{report.rows} rows: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.rejected} rejected, {report.skipped_unsubscribed} not re-subscribed (unsubscribed), "
            f"{report.skipped_suppressed} skipped (suppressed), {report.skipped_other} skipped (other), "
            f"{report.duplicates} duplicates")


def _first_rejects(path: Path) -> list[list[str]]:
    """The first rejected rows of the rejects file: line, reason, then the row's own cells."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return [row for row in islice(csv.reader(handle), 1, REJECTS_SHOWN + 1) if len(row) >= 2]
    except (OSError, csv.Error):
        return []


def _shown_name(name: str) -> str:
    """The browser's file name, for display: no control characters, not endless."""
    cleaned = "".join(c for c in name if c.isprintable()).strip()
    return (cleaned or "upload.csv")[:200]


def _private_folder() -> Path:
    """A new folder only this user may read, named after this process. Folders of processes that are
    gone are deleted first: a server stopped by SIGTERM ends without running its exit handlers
    (uvicorn re-raises the signal once it has shut down), and would leave its uploads behind."""
    for old in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = old.name[len(PREFIX):].split("-", 1)[0]
        try:
            mine = old.is_dir() and old.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
