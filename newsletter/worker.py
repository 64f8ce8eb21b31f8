"""The worker's process wiring: configuration in, a due send built and made ready (prepare),
mailer.worker's loop, Ctrl-C and SIGTERM out."""
from __future__ import annotations

import functools
import signal
import threading
from pathlib import Path
from typing import Any

import click

from .config import Settings
from .errors import NewsletterError


def run_worker(settings: Settings, db: Any, *, once: bool) -> None:
    from mailer.worker import run_due, run_forever

    _one_worker_on_sqlite(db)
    ready = functools.partial(prepare, settings)
    started = functools.partial(_say_start)
    if once:
        for ran in run_due(db, ready, on_start=started):
            _say(ran)
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # finish the message in flight, then stop
        signal.signal(sig, lambda *_: stop.set())
    click.echo("Worker running (Ctrl-C to stop).", err=True)
    run_forever(db, ready, stop, on_start=started)


def prepare(settings: Settings, due: Any) -> Any:
    """Build a due send's issue from its file and say how to deliver it, as `send` would."""
    from mailer.welcome import WELCOME
    from mailer.worker import Prepared

    from .jobs import load_segment
    from .queueing import accepted_render
    from .sending import checked_base_url, require
    from .wiring import delivery
    if not due.issue_path:
        raise NewsletterError(f"send {due.id} has no issue file recorded: run `newsletter send FILE --list "
                              f"{due.list_name}` to resume it")
    require(settings, "from_address", "secret")
    checked_base_url(settings, False)
    rendered = accepted_render(settings, Path(due.issue_path), due.content_hash)
    segment = load_segment(due.segment) if due.segment and due.segment != WELCOME else None
    return Prepared(rendered, delivery(settings, due.list_name), segment)


def _say_start(due: Any) -> None:
    name = "/".join(x for x in (due.issue, due.list_name, due.segment) if x)
    click.echo(f"send {due.id} ({name}): starting", err=True)


def _say(ran: Any) -> None:
    counts = (f": {ran.result.sent} sent, {ran.result.failed} failed, {ran.result.unknown} unknown"
              if ran.result else "")
    click.echo(f"send {ran.send_id}: {ran.outcome}{counts}{'; ' + ran.message if ran.message else ''}")


def worker_thread(settings: Settings, db: Any, stop: threading.Event) -> threading.Thread:
    """One worker in a thread of this process (`serve --with-worker`), until `stop`."""
    from mailer.worker import run_forever

    _one_worker_on_sqlite(db)
    thread = threading.Thread(target=run_forever, args=(db, functools.partial(prepare, settings), stop),
                              kwargs={"on_start": _say_start}, name="worker", daemon=True)
    thread.start()
    return thread


_LOCKS: list[Any] = []  # held open for the life of the process


def _one_worker_on_sqlite(db: Any) -> None:
    """On SQLite one worker runs at a time (design §12): a lock file beside the database says who.

    PostgreSQL needs none: workers share sends there through the ledger's SKIP LOCKED claims.
    """
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    import fcntl
    handle = Path(f"{url.database}.worker.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise NewsletterError(f"another worker already runs on {url.database} (on SQLite one worker runs at "
                              "a time; several need PostgreSQL)") from None
    _LOCKS.append(handle)
