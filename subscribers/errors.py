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


class DatabaseError(SubscribersError):
    """The database cannot be reached or migrated."""
