"""The one exception family of the mailer package (mapped to exit codes in newsletter/)."""


class MailerError(Exception):
    """Base of every error raised by mailer/."""


class TransportError(MailerError):
    """A transport could not send one message.

    `retryable`: throttling or a server error, worth another try later.
    `fatal`: the account cannot send at all (paused, suspended): stop the send.
    Otherwise the message was refused for good: fail that recipient only.
    """

    def __init__(self, message: str, *, retryable: bool = False, fatal: bool = False, code: str = ""):
        super().__init__(message)
        self.retryable, self.fatal, self.code = retryable, fatal, code


class SendStopped(MailerError):
    """The send stopped before the end (quota, pause, Ctrl-C); running it again resumes."""


class QueueError(MailerError):
    """SQS could not be read or written (the events wait in the queue)."""
