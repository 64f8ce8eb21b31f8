"""Console pages for admins: users and API tokens, and the audit log (design §13).

Every change goes through the library function the CLI uses (`users ...`, `tokens ...`), which
records itself in the audit log with the console user as actor; nothing here writes a second
record. A password or token made here is shown once, on the page the POST itself answers (never
in a URL, a cookie or the log), with the console's `Cache-Control: no-store`.
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http import BadRequest, call, service_of
from .guard import Me, form_text, page, see_other
from .view import problem, render, with_notice

AUDIT_PAGE = 100


def _db(request: Request) -> Any:
    return service_of(request).db


def _users_page(db: Any, hours: float) -> dict[str, Any]:
    from subscribers import list_tokens, list_users, session_counts
    return {"users": list_users(db), "sessions": session_counts(db, hours=hours), "tokens": list_tokens(db)}


async def _show_users(request: Request, me: Me, status: int = 200, **form: Any) -> Response:
    from subscribers import MIN_PASSWORD, ROLES
    s = service_of(request)
    found = await call(_users_page, s.db, s.settings.session_hours)
    values = {"user_error": "", "token_error": "", "email": "", "role": "viewer", "token_name": "",
              "token_role": "viewer", **form}
    return render(request, me, "users.html", status, title="Users", roles=ROLES, min_password=MIN_PASSWORD,
                  **found, **values)


def _shown_once(request: Request, me: Me, what: str, **values: Any) -> Response:
    """The page that shows a new password or token, answered straight from the POST (not after a redirect)."""
    return render(request, me, "user_secret.html", title=f"New {what}", what=what, **values)


def _password_or_new(form: Any) -> tuple[str, bool]:
    """(password, generated): the one typed, or a new random one when the field is left empty."""
    from subscribers import generate_password
    typed = form.get("password", "")
    typed = typed if isinstance(typed, str) else ""
    return (typed, False) if typed else (generate_password(), True)


async def _user(request: Request, me: Me) -> Any:
    """The user of the path; None (and the caller answers 404) when there is no such user."""
    from subscribers import UserNotFound, get_user
    try:
        return await call(get_user, _db(request), request.path_params["email"])
    except UserNotFound:
        return None


def _no_user(request: Request, me: Me) -> Response:
    return problem(request, me, "Not found", f"There is no user {request.path_params['email']}.", status=404)


# --- users ------------------------------------------------------------------------------------------------


@page("admin")
async def users_page(request: Request, me: Me) -> Response:
    return await _show_users(request, me)


@page("admin")
async def add_user(request: Request, me: Me) -> Response:
    from subscribers import AccountsError, InvalidAddress, UserExists, add_user
    form = await request.form()
    email, role = form_text(form, "email"), form_text(form, "role")
    password, generated = _password_or_new(form)
    try:
        user = await call(add_user, _db(request), email, role, password, actor=me.actor)
    except (AccountsError, InvalidAddress) as exc:
        # The form again with what was typed, except the password.
        return await _show_users(request, me, 409 if isinstance(exc, UserExists) else 400,
                                 user_error=str(exc), email=email, role=role)
    if generated:
        return _shown_once(request, me, "password", user=user, secret=password)
    # (#main: the form's #add-user would carry over to the redirect and scroll past the notice.)
    return with_notice(see_other("/admin/users#main"), f"Added {user.email} ({user.role}).")


@page("admin")
async def user_page(request: Request, me: Me) -> Response:
    user = await _user(request, me)
    if user is None:
        return _no_user(request, me)
    return await _show_user(request, me, user)


async def _show_user(request: Request, me: Me, user: Any, status: int = 200, **errors: str) -> Response:
    from subscribers import MIN_PASSWORD, ROLES, session_counts
    s = service_of(request)
    sessions = await call(session_counts, s.db, hours=s.settings.session_hours)
    return render(request, me, "user_detail.html", status, title=user.email, user=user, roles=ROLES,
                  min_password=MIN_PASSWORD, sessions=sessions.get(user.email, 0), is_me=user.email == me.email,
                  role_error=errors.get("role_error", ""), password_error=errors.get("password_error", ""))


@page("admin")
async def change_role(request: Request, me: Me) -> Response:
    from subscribers import AccountsError, LastAdmin, set_role
    user = await _user(request, me)
    if user is None:
        return _no_user(request, me)
    role = form_text(await request.form(), "role")
    try:
        changed = await call(set_role, _db(request), user.email, role, actor=me.actor)
    except AccountsError as exc:
        return await _show_user(request, me, user, 409 if isinstance(exc, LastAdmin) else 400, role_error=str(exc))
    # Who made themselves less than admin may no longer see the users pages: send them to the dashboard.
    back = "/admin/" if changed.email == me.email and role != "admin" else _url(changed.email)
    return with_notice(see_other(back), f"{changed.email} is now {changed.role}.")


@page("admin")
async def reset_password(request: Request, me: Me) -> Response:
    from subscribers import AccountsError, set_password
    user = await _user(request, me)
    if user is None:
        return _no_user(request, me)
    password, generated = _password_or_new(await request.form())
    try:
        ended = await call(set_password, _db(request), user.email, password, actor=me.actor)
    except AccountsError as exc:
        return await _show_user(request, me, user, 400, password_error=str(exc))
    if generated:
        return _shown_once(request, me, "password", user=user, secret=password, ended=ended)
    return with_notice(see_other(_url(user.email)),
                       f"Changed the password of {user.email}; {_sessions(ended)} ended.")


@page("admin")
async def confirm_removal(request: Request, me: Me) -> Response:
    user = await _user(request, me)
    if user is None:
        return _no_user(request, me)
    return render(request, me, "user_remove.html", title=f"Remove {user.email}", user=user,
                  is_me=user.email == me.email, error="")


@page("admin")
async def remove(request: Request, me: Me) -> Response:
    from subscribers import LastAdmin, remove_user
    user = await _user(request, me)
    if user is None:
        return _no_user(request, me)
    try:
        ended = await call(remove_user, _db(request), user.email, actor=me.actor)
    except LastAdmin as exc:
        return render(request, me, "user_remove.html", 409, title=f"Remove {user.email}", user=user,
                      is_me=user.email == me.email, error=str(exc))
    return with_notice(see_other("/admin/users"), f"Removed {user.email}; {_sessions(ended)} ended.")


def _url(email: str) -> str:
    from urllib.parse import quote
    return f"/admin/users/{quote(email, safe='@')}"


def _sessions(n: int) -> str:
    return "1 session" if n == 1 else f"{n} sessions"


# --- API tokens -------------------------------------------------------------------------------------------


@page("admin")
async def create_token(request: Request, me: Me) -> Response:
    from subscribers import AccountsError, TokenExists, create_token
    form = await request.form()
    name, role = form_text(form, "name"), form_text(form, "role")
    try:
        token = await call(create_token, _db(request), name, role, actor=me.actor)
    except AccountsError as exc:
        return await _show_users(request, me, 409 if isinstance(exc, TokenExists) else 400,
                                 token_error=str(exc), token_name=name, token_role=role)
    return _shown_once(request, me, "API token", name=name, role=role, secret=token)


@page("admin")
async def revoke_token(request: Request, me: Me) -> Response:
    from subscribers import revoke_token
    name = form_text(await request.form(), "name")
    await call(revoke_token, _db(request), name, actor=me.actor)
    return with_notice(see_other("/admin/users#tokens"), f"Revoked the token {name}; it no longer works.")


# --- the audit log ----------------------------------------------------------------------------------------


@page("admin")
async def audit_log(request: Request, me: Me) -> Response:
    from subscribers import audit_page
    query = request.query_params
    before, actor, action = _before(query.get("before", "")), _actor(query.get("actor", "")), \
        query.get("action", "").strip()
    found = await call(audit_page, _db(request), limit=AUDIT_PAGE, before=before, actor=actor, action=action)
    return render(request, me, "audit.html", title="Audit log", page=found, before=before, actor=actor,
                  action=action, filtered=bool(actor or action))


def _actor(text: str) -> str:
    """Who, as the log names them: a bare address is a console user's (stored in lower case)."""
    text = text.strip()
    return f"user:{text.lower()}" if text and ":" not in text and text != "cli" else text


def _before(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise BadRequest("“before” must be the id of an audit entry (a whole number).")
    return int(text)


ROUTES = [
    Route("/users", users_page, methods=["GET", "HEAD"]),
    Route("/users", add_user, methods=["POST"]),
    Route("/tokens", create_token, methods=["POST"]),
    Route("/tokens/revoke", revoke_token, methods=["POST"]),
    # An address may hold a "/" (a/b@example.org): the action routes come before the page's catch-all.
    Route("/users/{email:path}/role", change_role, methods=["POST"]),
    Route("/users/{email:path}/password", reset_password, methods=["POST"]),
    Route("/users/{email:path}/remove", confirm_removal, methods=["GET", "HEAD"]),
    Route("/users/{email:path}/remove", remove, methods=["POST"]),
    Route("/users/{email:path}", user_page, methods=["GET", "HEAD"]),
    Route("/audit", audit_log, methods=["GET", "HEAD"]),
]
