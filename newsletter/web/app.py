"""The web service (design §7): unsubscribe, sign-up with double opt-in, archive, SNS webhook.

Handlers are thin: parse, call the library in a worker thread (the database
calls block), and map domain errors to statuses here and only here. Nothing
lives in process memory but caches, so several processes can serve one
PostgreSQL database behind a load balancer.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from .http import service_of
from .pages import SECURITY_HEADERS, Link
from .service import Service

log = logging.getLogger("newsletter.web")


def create_app(settings: Settings, *, db: Any = None, fetch: Callable[[str], bytes] | None = None,
               transport: Any = None) -> Starlette:
    """The app; `db`, `fetch` (SNS certificates) and `transport` may be injected (tests)."""
    from ..config import secret_problem
    from ..errors import ConfigError
    from ..sending import require
    from ..wiring import database
    from .api import api
    from .console import console
    from .public import ROUTES
    require(settings, "secret", purpose="serve")  # it signs and checks every link
    problem = secret_problem(settings.secret)
    if problem:
        raise ConfigError(problem)
    db = db or database(settings)
    from subscribers import DatabaseError
    app = App(routes=[*(Route(path, endpoint, methods=methods) for path, endpoint, methods in ROUTES), api(),
                      *console()],
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
