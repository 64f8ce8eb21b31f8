"""Audience and storage: lists, subscribers, suppression, CSV import/export (issue 3).

Imports no other project package.
"""
from .errors import SubscribersError

__all__ = ["SubscribersError"]
