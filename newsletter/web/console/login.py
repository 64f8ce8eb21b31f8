"""Signing in and out of the console (design §13)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..http import call, service_of
from .guard import COOKIE, Me, cookie_secure, form_text, page, safe_next, same_origin, signed_in
from .view import ADMIN_HEADERS, render

MAX_LOGIN_FORM = 8 * 1024


async def login_form(request: Request) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303, headers=ADMIN_HEADERS)
    return render(request, None, "login.html", title="Sign in", email="", error="",
                  next=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    """The same answer for a wrong email and a wrong password; 429 while locked (subscribers.login)."""
    from subscribers import LoginFailed, LoginLocked
    from subscribers import login as check
    s = service_of(request)
    if not same_origin(request):
        return render(request, None, "login.html", 403, title="Sign in", email="",
                      error="This form did not come from this console.", next="/admin/")
    if int(request.headers.get("content-length") or 0) > MAX_LOGIN_FORM:
        return render(request, None, "login.html", 413, title="Sign in", email="", error="That form is too large.",
                      next="/admin/")
    form = await request.form(max_files=0, max_fields=10)
    email, password = form_text(form, "email"), form.get("password", "")
    after = safe_next(form_text(form, "next"))
    client = s.client_key(s.client_ip(request))
    try:
        session = await call(check, s.db, email, password if isinstance(password, str) else "", client)
    except LoginLocked as exc:
        response = render(request, None, "login.html", 429, title="Sign in", email=email, error=str(exc), next=after)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except LoginFailed:
        return render(request, None, "login.html", 400, title="Sign in", email=email,
                      error="Wrong email or password.", next=after)
    signed = RedirectResponse(after, status_code=303, headers=ADMIN_HEADERS)
    signed.set_cookie(COOKIE, session.token or "", httponly=True, samesite="lax", secure=cookie_secure(request),
                        path="/")
    return signed


@page("viewer")
async def logout(request: Request, me: Me) -> Response:
    from subscribers import audit, end_session
    s = service_of(request)
    await call(end_session, s.db, me.token)
    await call(audit, s.db, me.actor, "logout", "")
    response = RedirectResponse("/admin/login", status_code=303, headers=ADMIN_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(request))
    return response


ROUTES = [
    Route("/login", login_form, methods=["GET", "HEAD"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
