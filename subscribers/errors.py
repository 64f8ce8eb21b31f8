"""The one exception family of the subscribers package.

The edge (newsletter/) maps these to exit codes and HTTP statuses.
"""


class SubscribersError(Exception):
    """Base of every error raised by subscribers/."""


class InvalidAddress(SubscribersError):
    """An email address that email-validator refuses."""


class ListNotFound(SubscribersError):
    """No mailing list of that name."""


class ListExists(SubscribersError):
    """A list of that name already exists."""


class SubscriberNotFound(SubscribersError):
    """No subscriber with that address."""


class NotAllowed(SubscribersError):
    """The address left or is suppressed: it may not be (re-)subscribed."""


class ImportFailed(SubscribersError):
    """A CSV file that cannot be imported at all (nothing was changed)."""


class ImportIncomplete(SubscribersError):
    """An import that stopped part-way: the batches before `rows_written` rows are committed.

    Running the same import again finishes it (rows already imported are left as they are).
    """

    def __init__(self, message: str, rows_written: int):
        super().__init__(message)
        self.rows_written = rows_written


class DatabaseError(SubscribersError):
    """The database cannot be reached or migrated, stayed busy too long, or failed a statement."""
