"""The web service (design §7): unsubscribe, sign-up with double opt-in, archive, SNS webhook.

Handlers are thin: parse, call the library in a worker thread (the database
calls block), and map domain errors to statuses here and only here. Nothing
lives in process memory but caches, so several processes can serve one
PostgreSQL database behind a load balancer.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from .clients import client_address, networks
from .pages import SECURITY_HEADERS, Link, Pages
from .signups import SignUps, sign_up_and_confirm

log = logging.getLogger("newsletter.web")

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
            from ..sending import transport
            self._transport = transport(self.settings)
        return self._transport


def create_app(settings: Settings, *, db: Any = None, fetch: Callable[[str], bytes] | None = None,
               transport: Any = None) -> Starlette:
    """The app; `db`, `fetch` (SNS certificates) and `transport` may be injected (tests)."""
    import mailer
    from subscribers import open_database

    from ..config import secret_problem
    from ..errors import ConfigError
    from ..sending import require
    from .api import api
    from .routes import ROUTES
    require(settings, "secret", purpose="serve")  # it signs and checks every link
    problem = secret_problem(settings.secret)
    if problem:
        raise ConfigError(problem)
    db = db or open_database(settings.database_url, extra_migrations=(mailer.MIGRATIONS,))
    from subscribers import DatabaseError
    app = App(routes=[*(Route(path, endpoint, methods=methods) for path, endpoint, methods in ROUTES), api()],
              exception_handlers={404: _not_found, 405: _not_allowed, DatabaseError: _unavailable,
                                  ClientDisconnect: _client_gone, 500: _server_error},
              lifespan=_lifespan)
    app.state.service = Service(settings, db, fetch, transport)
    return app


class App(Starlette):
    """Starlette, with the security headers on every answer, error pages included."""

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware, which answers a 500 beyond the reach of any
        # middleware added with add_middleware.
        return SecurityHeaders(super().build_middleware_stack())


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP answer that does not set its own value."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)
        await self.app(scope, receive, with_headers)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """The sign-up thread runs as long as the server; at shutdown it finishes what is queued."""
    signups = app.state.service.signups
    signups.start()
    try:
        yield
    finally:
        await run_in_threadpool(signups.stop)


def app_from_environment() -> Starlette:
    """For `uvicorn --factory newsletter.web.app:app_from_environment --no-proxy-headers` (several workers).

    --no-proxy-headers: uvicorn would otherwise put X-Forwarded-For from loopback in place of the
    socket peer before the app sees it; the app trusts only NEWSLETTER_TRUSTED_PROXIES (clients.py).
    """
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


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away mid-request (an aborted upload): its business, one line in the log."""
    log.warning("client disconnected before the request body ended: %s %s", request.method, request.url.path)
    return Response(status_code=400)  # nobody is left to read it


async def _server_error(request: Request, exc: Exception) -> Response:
    """A bug: Starlette still logs its traceback; the reader gets a page that gives nothing away."""
    try:
        return service_of(request).pages.message(
            "Something went wrong", "We could not finish this. Please try again in a few minutes.", status=500)
    except Exception:  # noqa: BLE001 - the error page itself must not fail
        return PlainTextResponse("internal server error", status_code=500)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=308, headers=SECURITY_HEADERS)


