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
def send_progress(total: int) -> Iterator[Callable[[object], None] | None]:
    """A bar of sent/failed with rate and time left; None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  "{task.fields[detail]}", TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task("Sending", total=total, detail="")

        def update(result: object) -> None:
            sent, failed = getattr(result, "sent", 0), getattr(result, "failed", 0)
            skipped = getattr(result, "skipped", 0)
            bar.update(task, completed=sent + failed + skipped, detail=f"{sent} sent, {failed} failed")
        yield update
