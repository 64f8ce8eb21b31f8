class SubscribersError(Exception):
    """Base of every error raised by subscribers/."""
