"""The web service (design §7): unsubscribe, sign-up with double opt-in, archive, SNS webhook.

Handlers are thin: parse, call the library in a worker thread (the database
calls block), and map domain errors to statuses here and only here. Nothing
lives in process memory but caches, so several processes can serve one
PostgreSQL database behind a load balancer.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..config import Settings
from .pages import SECURITY_HEADERS, Link, Pages

MAX_FORM = 16 * 1024  # a sign-up form is a few hundred bytes
MAX_SNS = 256 * 1024  # SNS messages are at most 256 KB


class Service:
    """What every handler needs, made once per process."""

    def __init__(self, settings: Settings, db: Any, fetch: Callable[[str], bytes] | None, transport: Any):
        import mailer
        from components import load_theme
        from subscribers import Tokens

        from ..build import footer_for
        from ..events import policy_of
        self.settings, self.db = settings, db
        self.tokens = Tokens(settings.secret or "")
        self.verifier = mailer.SnsVerifier(settings.sns_topic_arns, fetch)
        self.policy = policy_of(settings)
        self.footer = footer_for(settings.theme, settings)
        self.pages = Pages(load_theme(settings.theme), self.footer.organisation, self.footer.postal_address)
        self._transport = transport

    def client_key(self, ip: str) -> str:
        """What the rate limit stores for a client: a keyed hash, not the IP (there are few IPv4
        addresses; an unkeyed hash of one is reversed by trying them all)."""
        return hmac.new((self.settings.secret or "").encode(), f"client:{ip}".encode(), hashlib.sha256).hexdigest()

    def transport(self) -> Any:
        """Made on first use: a sign-up confirmation is the only thing this service sends."""
        if self._transport is None:
            from ..sending import transport
            self._transport = transport(self.settings)
        return self._transport


def create_app(settings: Settings, *, db: Any = None, fetch: Callable[[str], bytes] | None = None,
               transport: Any = None) -> Starlette:
    """The app; `db`, `fetch` (SNS certificates) and `transport` may be injected (tests)."""
    import mailer
    from subscribers import open_database

    from ..sending import require
    from .routes import ROUTES
    require(settings, "secret", purpose="serve")  # it signs and checks every link
    db = db or open_database(settings.database_url, extra_migrations=(mailer.MIGRATIONS,))
    from subscribers import DatabaseError
    app = Starlette(routes=[Route(path, endpoint, methods=methods) for path, endpoint, methods in ROUTES],
                    exception_handlers={404: _not_found, 405: _not_allowed, DatabaseError: _unavailable})
    app.state.service = Service(settings, db, fetch, transport)
    return app


def app_from_environment() -> Starlette:
    """For `uvicorn --factory newsletter.web.app:app_from_environment` (several workers)."""
    from ..config import load_settings
    return create_app(load_settings())


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def body_of(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` (read no further than that)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def form_of(body: bytes) -> dict[str, str] | None:
    """A urlencoded form, first value per field (undecodable bytes replaced); None when it has too many fields."""
    try:
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    except ValueError:
        return None
    return {key: values[0] for key, values in parsed.items()}


async def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(func, *args, **kwargs)


async def _not_found(request: Request, exc: Exception) -> Response:
    return service_of(request).pages.message("Page not found", "There is nothing at this address.", status=404,
                                             link=Link("/archive/", "See the newsletter archive"))


async def _unavailable(request: Request, exc: Exception) -> Response:
    """The database is down: 503, so a mail client's one-click POST and SNS retry later."""
    return service_of(request).pages.message(
        "Please try again in a few minutes", "We could not finish this just now. Please try again shortly.",
        status=503)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("method not allowed", status_code=405, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=308, headers=SECURITY_HEADERS)


