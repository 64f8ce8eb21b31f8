"""The signed-in user of a console request (guard.py finds them; every page is rendered for them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Me:
    """The signed-in user of this request."""

    email: str
    role: str
    csrf: str
    token: str  # the session cookie's value: sign-out ends this session only

    @property
    def actor(self) -> str:
        return f"user:{self.email}"

    def may(self, role: str) -> bool:
        from subscribers import may
        return bool(may(self.role, role))
