"""What every handler needs, made once per process from Settings."""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from ..config import Settings
from .clients import client_address, networks
from .pages import Pages
from .signups import SignUps, sign_up_and_confirm


class Service:
    """What every handler needs, made once per process."""

    def __init__(self, settings: Settings, db: Any, fetch: Callable[[str], bytes] | None, transport: Any):
        from components import load_theme

        from .. import wiring
        self.settings, self.db = settings, db
        self.tokens = wiring.tokens(settings)
        self.verifier = wiring.verifier(settings, fetch)
        self.policy = wiring.policy(settings)
        self.footer = wiring.footer(settings, settings.theme)
        self.pages = Pages(load_theme(settings.theme), self.footer.organisation, self.footer.postal_address)
        self._transport = transport
        self.trusted_proxies = networks(settings.trusted_proxies)
        self.signups = SignUps(lambda request: sign_up_and_confirm(self, request))

    def client_ip(self, request: Request) -> str:
        """The client's address: the socket peer, or what a trusted proxy says (clients.py)."""
        return client_address(request.client.host if request.client else "", request.headers, self.trusted_proxies)

    def client_key(self, ip: str) -> str:
        """What the rate limit stores for a client: a keyed hash, not the IP (there are few IPv4
        addresses; an unkeyed hash of one is reversed by trying them all)."""
        return hmac.new((self.settings.secret or "").encode(), f"client:{ip}".encode(), hashlib.sha256).hexdigest()

    def transport(self) -> Any:
        """Made on first use: a sign-up confirmation is the only thing this service sends."""
        if self._transport is None:
            from ..wiring import transport
            self._transport = transport(self.settings)
        return self._transport
