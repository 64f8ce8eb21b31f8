"""Request helpers every handler shares: the service, bounded bodies, forms, threads, redirects."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse

from .pages import SECURITY_HEADERS
from .service import Service

MAX_FORM = 16 * 1024  # a sign-up form is a few hundred bytes
MAX_SNS = 256 * 1024  # SNS messages are at most 256 KB


class BadRequest(Exception):
    """A request the handler cannot use (400)."""


class NotFound(LookupError):
    """What the path names is not there (404): for things outside the database, such as an issue file."""


def status_of(exc: Exception) -> int | None:
    """The HTTP status of a domain error; None for one that is not the client's (a bug: 500)."""
    from components.errors import ComponentError
    from mailer.errors import MailerError
    from mailer.jobs import SendNotFound
    from subscribers import (
        DatabaseError,
        InvalidAddress,
        ListExists,
        ListNotFound,
        NotAllowed,
        SubscriberNotFound,
        SubscribersError,
    )

    from ..errors import NewsletterError
    for kinds, status in (((ListNotFound, SubscriberNotFound, SendNotFound, NotFound), 404),
                          ((NotAllowed, ListExists), 409),
                          ((InvalidAddress, BadRequest), 400), ((DatabaseError,), 503),
                          ((SubscribersError, MailerError, ComponentError, NewsletterError), 400)):
        if isinstance(exc, kinds):
            return status
    return None


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


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=308, headers=SECURITY_HEADERS)


