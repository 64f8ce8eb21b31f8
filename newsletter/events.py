"""Console output around SES event handling (`events poll`); the policy is made in wiring.py."""
from __future__ import annotations

from typing import Any

import click


def say_batch(applied: Any) -> None:
    """One line per address suppressed and per message kept unapplied, as they happen."""
    for address in applied.suppressed:
        click.echo(f"suppressed {address}", err=True)
    for error in applied.errors:
        click.echo(f"unreadable message kept: {error}", err=True)


def say_wait(error: Exception, seconds: float) -> None:
    """The database failed a batch: it stays in the queue, and the poller tries again."""
    click.echo(f"database unavailable ({error}); the batch stays in the queue, retrying in {seconds:g} s", err=True)
