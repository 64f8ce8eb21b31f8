"""Errors of the edge itself (configuration, command use)."""


class NewsletterError(Exception):
    """Base of errors raised by newsletter/ itself."""


class ConfigError(NewsletterError):
    """The configuration file or environment is wrong."""
