class MailerError(Exception):
    """Base of every error raised by mailer/."""
