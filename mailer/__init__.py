"""Delivery: personalised MIME, transports, rate limiting, the ledger, SES events (issues 4, 5).

Uses only the public API of components/ and subscribers/.
"""
from .errors import MailerError

__all__ = ["MailerError"]
