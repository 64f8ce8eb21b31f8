"""Progress bars for long work (rich), shown only on a terminal."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def byte_progress(label: str, path: Path) -> Iterator[Callable[[int, int], None] | None]:
    """Yields a callback `(done, total)` driving a bar, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@contextmanager
def send_progress() -> Iterator[Callable[[object], None] | None]:
    """A bar of the run's rows done (sent, failed, skipped, unknown) against what it set out to send.

    The total comes from the run itself (its pending rows when it started), so the bar is
    right on a first run, a resume, after a crash and with --retry-unknown alike.
    None when stderr is not a terminal.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  "{task.fields[detail]}", TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task("Sending", total=None, detail="")

        def update(result: object) -> None:
            sent, failed = getattr(result, "sent", 0), getattr(result, "failed", 0)
            unknown = getattr(result, "unknown", 0)
            detail = f"{sent} sent, {failed} failed" + (f", {unknown} unknown" if unknown else "")
            bar.update(task, total=getattr(result, "total", None), completed=getattr(result, "done", 0),
                       detail=detail)
        yield update
