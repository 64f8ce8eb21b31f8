"""The console's pages: one Jinja environment, the navigation, the headers every page carries."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .me import Me

# Stricter than the public site's: scripts and styles from this origin only (htmx is vendored, no
# inline script or style attribute anywhere), no framing of the console, and no Referer: console
# URLs carry searches for people's addresses.
ADMIN_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
NOTICE = "newsletter_notice"  # a one-time message for the page after a POST (its outcome)


@dataclass(frozen=True)
class NavLink:
    url: str
    text: str
    role: str


NAV = (
    NavLink("/admin/", "Dashboard", "viewer"),
    NavLink("/admin/lists", "Lists", "viewer"),
    NavLink("/admin/subscribers", "Subscribers", "viewer"),
    NavLink("/admin/import", "Import", "editor"),
    NavLink("/admin/issues", "Issues", "viewer"),
    NavLink("/admin/sends", "Sends", "viewer"),
    NavLink("/admin/suppressions", "Suppressions", "viewer"),
    NavLink("/admin/users", "Users", "admin"),
    NavLink("/admin/audit", "Audit log", "admin"),
)


@functools.cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("newsletter.web", "templates/admin"),
                      autoescape=select_autoescape(["html"]), auto_reload=False)
    env.filters["number"] = lambda n: f"{n:,}" if isinstance(n, int) else ("" if n is None else n)
    env.filters["when"] = when
    env.filters["percent"] = lambda x: "" if x is None else f"{100 * x:.1f} %"
    env.filters["urlpart"] = lambda s: quote(str(s), safe="")
    return env


def when(value: Any) -> str:
    """A time as people read it: 6 Dec 2026, 14:03 UTC (aware times in UTC; naive ones are UTC)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return f"{value.day} {value:%b %Y, %H:%M} UTC"
    return str(value)


def render(request: Request, me: Me | None, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A console page: the template with the user, the navigation their role sees, and any notice."""
    notice = unquote(request.cookies.get(NOTICE, ""))
    nav = [link for link in NAV if me is not None and me.may(link.role)]
    html = environment().get_template(template).render(
        me=me, nav=nav, path=request.url.path, notice=notice, csrf=me.csrf if me else "", **values)
    response = HTMLResponse(html, status_code=status, headers=ADMIN_HEADERS)
    if notice:
        response.delete_cookie(NOTICE, path="/admin")
    return response


def fragment(me: Me, template: str, **values: Any) -> HTMLResponse:
    """A part of a page for htmx to swap in (live progress): no navigation, no notice."""
    html = environment().get_template(template).render(me=me, csrf=me.csrf, **values)
    return HTMLResponse(html, headers=ADMIN_HEADERS)


def problem(request: Request, me: Me | None, title: str, message: str, status: int) -> HTMLResponse:
    return render(request, me, "problem.html", status, title=title, message=message)


def with_notice(response: Response, text: str) -> Response:
    """Show `text` once on the next page (after the redirect that follows a POST)."""
    response.set_cookie(NOTICE, quote(text[:300]), max_age=120, path="/admin", httponly=True, samesite="lax")
    return response
