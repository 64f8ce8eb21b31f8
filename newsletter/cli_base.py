"""What every `newsletter` command shares: the per-invocation state (Obj) and the error edge.

The command modules (cli_*.py) import it; cli.py imports them to register their commands. Nothing
here imports cli.py, so the registration points one way.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _domain_errors() -> tuple[type[BaseException], ...]:
    # Imported here, not at the top: `newsletter --help` must not pay for them.
    from components.errors import ComponentError
    from mailer.errors import MailerError
    from subscribers.errors import SubscribersError

    from .errors import NewsletterError
    return (ComponentError, SubscribersError, MailerError, NewsletterError)


def edge(func: F) -> F:
    """Map every domain error to a ClickException (exit 1, message, no traceback)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .config import hide_passwords
        try:
            return func(*args, **kwargs)
        except _domain_errors() as exc:
            raise click.ClickException(hide_passwords(str(exc))) from None
        except OSError as exc:
            raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None
    return wrapper  # type: ignore[return-value]


class Obj:
    """Per-invocation state: the config file, loaded into Settings once on first use."""

    def __init__(self, config: Path | None):
        self.config = config
        self._settings: Any = None
        self._db: Any = None

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from .config import load_settings
            self._settings = load_settings(self.config)
        return self._settings

    @property
    def db(self) -> Any:
        """The database, migrated on first use (design §8)."""
        if self._db is None:
            from .wiring import database
            self._db = database(self.settings)
        return self._db
