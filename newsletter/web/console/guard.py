"""Who is signed in to the console, and what they may do (design §13).

Every console handler is wrapped by `page(role)`: it finds the session of the
cookie (server-side, in the database), sends whoever has none to the login form
(303), refuses a POST whose CSRF token is not the session's (403, nothing
changed), refuses what the role may not do (403), and turns domain errors into a
page with the right status. Handlers receive `Me`: the user, the session's CSRF
token, and `audit()` for the log every console action is kept in.
"""
from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..http import call, service_of, status_of
from .me import Me
from .view import ADMIN_HEADERS, problem

COOKIE = "newsletter_session"
MAX_UPLOAD = 64 * 1024 * 1024  # a CSV of about a million addresses
MAX_FORM_BODY = 1024 * 1024  # any other form: a bulk selection of a page of people is a few KB
Handler = Callable[[Request, Me], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


async def audit(request: Request, me: Me, action: str, detail: str = "") -> None:
    from subscribers import audit as record
    await call(record, service_of(request).db, me.actor, action, detail)


async def signed_in(request: Request) -> Me | None:
    from subscribers import session_of
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    s = service_of(request)
    session = await call(session_of, s.db, token, hours=s.settings.session_hours)
    if session is None:
        return None
    return Me(session.user.email, session.user.role, session.csrf, token)


async def csrf_ok(request: Request, me: Me, files: int = 0) -> bool:
    """The token of a form field `csrf` or of the `X-CSRF-Token` header (htmx) is the session's.
    `files`: how many file parts the form may hold (Starlette spools them to disk while parsing)."""
    sent = request.headers.get("x-csrf-token", "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            return False
        form = await request.form(max_files=files, max_fields=2000)
        value = form.get("csrf")
        sent = value if isinstance(value, str) else ""
    return bool(sent) and hmac.compare_digest(sent.encode(), me.csrf.encode())


def same_origin(request: Request) -> bool:
    """A browser's POST names its page's origin; one from another site is refused before anything else.

    No Origin header (curl, an old browser) or `null` (what browsers send under the console's
    Referrer-Policy: no-referrer) leaves the CSRF token to decide."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}", service_of(request).settings.base_url.rstrip("/"))


def page(role: str = "viewer", *, upload: bool = False) -> Callable[[Handler], Endpoint]:
    """The route needs a signed-in user of at least `role`, and a POST the session's CSRF token.
    `upload`: its form carries one file (up to MAX_UPLOAD); any other form holds no file and at most
    MAX_FORM_BODY, so no signed-in user can fill the disk through a form that takes none."""
    def wrap(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            me = await signed_in(request)
            if me is None:
                if request.method in ("GET", "HEAD"):
                    return to_login(request)
                return problem(request, None, "Signed out", "Your session has ended. Sign in again.", status=403)
            if request.method == "POST":
                refused = await _refused_post(request, me, upload)
                if refused is not None:
                    return refused
            if not me.may(role):
                return problem(request, me, "Not allowed",
                               f"Your role ({me.role}) may not do this; it needs {role} or above.", status=403)
            try:
                return await handler(request, me)
            except Exception as exc:  # noqa: BLE001 - domain errors become pages; anything else re-raised
                status = status_of(exc)
                if status is None:
                    raise
                return problem(request, me, _titles.get(status, "That did not work"), _shown(exc, status),
                               status=status)
        return endpoint
    return wrap


async def _refused_post(request: Request, me: Me, upload: bool) -> Response | None:
    """A POST too large, unreadable, from another site or without the session's CSRF token; None if fine."""
    from starlette.exceptions import HTTPException
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > (MAX_UPLOAD if upload else MAX_FORM_BODY):
        return problem(request, me, "Too large", "This form holds more than the console takes.", status=413)
    try:
        fine = same_origin(request) and await csrf_ok(request, me, files=1 if upload else 0)
    except HTTPException:  # Starlette's form parser: too many fields or files, a broken multipart body
        return problem(request, me, "This form could not be read", "Go back, reload the page and try again.",
                       status=400)
    if fine:
        return None
    return problem(request, me, "This form has expired", "The page was out of date or did not come from this "
                   "console. Go back, reload the page and try again.", status=403)


_titles = {400: "That did not work", 404: "Not found", 409: "Not possible", 503: "Please try again shortly"}


def _shown(exc: Exception, status: int) -> str:
    from ...config import hide_passwords
    if status == 503:
        return "The database is busy or unavailable. Please try again in a moment."
    return hide_passwords(str(exc))


def to_login(request: Request) -> Response:
    """303 to the login form, remembering where to come back to (a path of the console only)."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/admin/login" if back in ("/admin", "/admin/") else f"/admin/login?next={quote(back, safe='')}"
    return RedirectResponse(url, status_code=303, headers=ADMIN_HEADERS)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path, never another site (`//evil.example`, `/\\evil`)."""
    if not value or not value.startswith("/admin/") or value.startswith(("//", "/\\")) or "\\" in value:
        return "/admin/"
    return value


def see_other(url: str) -> Response:
    """After a POST: 303 to the page that shows its outcome (reloading it repeats nothing)."""
    return RedirectResponse(url, status_code=303, headers=ADMIN_HEADERS)


def cookie_secure(request: Request) -> bool:
    return bool(service_of(request).settings.base_url.startswith("https://"))


def form_text(form: Any, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value.strip() if isinstance(value, str) else default
