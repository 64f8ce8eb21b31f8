"""The one exception family of the mailer package (mapped to exit codes in newsletter/)."""


class MailerError(Exception):
    """Base of every error raised by mailer/."""


class TransportError(MailerError):
    """A transport could not send one message.

    `retryable`: the answer proves the message was NOT accepted (throttling, a
    connection that never opened): worth another try later.
    `ambiguous`: the request may have been accepted (a 5xx after it was sent, a
    timeout or reset while waiting for the answer): never resent by itself; the
    ledger row stays `sending` (unknown) until an SES event settles it.
    `fatal`: the account cannot send at all (paused, suspended): stop the send.
    Otherwise the message was refused for good: fail that recipient only.
    """

    def __init__(self, message: str, *, retryable: bool = False, fatal: bool = False, ambiguous: bool = False,
                 code: str = ""):
        super().__init__(message)
        self.retryable, self.fatal, self.ambiguous, self.code = retryable, fatal, ambiguous, code


class SendStopped(MailerError):
    """The send stopped before the end (quota, pause, Ctrl-C); running it again resumes."""


class QueueError(MailerError):
    """SQS could not be read or written (the events wait in the queue)."""


class ContentChanged(MailerError):
    """A send would resume with content other than what it started with."""


class ArchiveConflict(MailerError):
    """The archive already holds other content under this issue's slug."""
