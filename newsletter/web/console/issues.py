"""Console pages: the issue files, their check results and previews, test sends, and "Send" (design §13).

A send started here is never sent in the request: it becomes a scheduled send (for now or
for a time) that a worker runs, through the same calls as `send --at` (newsletter.queueing).
The email preview is served with its own headers: framed by the console only, sandboxed,
no script, its styles inline.
"""
from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..http import NotFound, call, service_of, status_of
from .guard import Me, audit, form_text, page, see_other
from .issue_files import checked, find_issue, folder, issue_files, preview
from .view import render, with_notice

# The email, in a frame of the console only: inline styles, images from anywhere an email may
# load them, no script, no plugin, no form; `sandbox` gives it an opaque origin besides.
PREVIEW_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; img-src 'self' data: https:; style-src 'unsafe-inline'; "
                                "frame-ancestors 'self'; sandbox"),
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
MAX_PROOFS = 20  # addresses per test send
_ADDRESSES = re.compile(r"[\s,;]+")


def _path_of(request: Request) -> Path:
    """The issue file the path names; NotFound (the guard's 404 page) when issues/ holds none of that name."""
    path = find_issue(request.path_params["slug"])
    if path is None:
        raise NotFound("There is no such issue file in issues/.")
    return path


# --- the list and one issue ------------------------------------------------------------------------------


def _overview(settings: Any, db: Any) -> dict[str, Any]:
    from mailer.issue_sends import sends_by_issue
    files = issue_files()
    return {"issues": [checked(path, settings) for path in files.values()], "sends": sends_by_issue(db),
            "folder": str(folder())}


@page("viewer")
async def issues(request: Request, me: Me) -> Response:
    s = service_of(request)
    overview = await call(_overview, s.settings, s.db)
    return render(request, me, "issues.html", title="Issues", **overview)


def _details(settings: Any, db: Any, path: Path) -> dict[str, Any]:
    from mailer import list_segments
    from mailer.issue_sends import sends_by_issue
    from subscribers import list_lists
    return {"issue": checked(path, settings), "sends": sends_by_issue(db).get(path.stem, []),
            "lists": list_lists(db), "segments": [e for e in list_segments(Path("segments")) if e.problem is None],
            "timezone": settings.timezone}


async def _issue_page(request: Request, me: Me, path: Path, status: int = 200, **extra: Any) -> Response:
    s = service_of(request)
    details = await call(_details, s.settings, s.db, path)
    values = {"proof_error": [], "proof_to": "", "send_error": "", **details, **extra}
    return render(request, me, "issue.html", status, title=details["issue"].subject or path.stem, **values)


@page("viewer")
async def issue(request: Request, me: Me) -> Response:
    path = _path_of(request)
    return await _issue_page(request, me, path)


@page("viewer")
async def email_html(request: Request, me: Me) -> Response:
    """The email as a reader sees it, for the page's preview frames (and nothing else may frame it)."""
    from components import ComponentError
    path = _path_of(request)
    try:
        html = await call(preview, path, service_of(request).settings)
    except ComponentError as exc:
        from html import escape
        html, status = (f"<!doctype html><meta charset=utf-8><title>Does not build</title>"
                        f"<p>This issue does not build: {escape(str(exc))}</p>"), 422
    else:
        status = 200
    return HTMLResponse(html, status_code=status, headers=PREVIEW_HEADERS)


# --- test send ---------------------------------------------------------------------------------------


@page("sender")
async def test_send(request: Request, me: Me) -> Response:
    """Proofs to a few addresses, as `test-send` mails them; refused on check errors unless "Send anyway"."""
    from components import ComponentError
    from subscribers import SubscribersError

    from ...errors import NewsletterError
    from ...queueing import send_test
    path = _path_of(request)
    form = await request.form()
    typed, force = form_text(form, "to"), form_text(form, "force") == "yes"
    addresses = [a for a in _ADDRESSES.split(typed) if a]
    problem = ("Give one or more addresses to send the proof to." if not addresses else
               f"At most {MAX_PROOFS} addresses at a time." if len(addresses) > MAX_PROOFS else None)
    if problem:
        return await _issue_page(request, me, path, 400, proof_error=[problem], proof_to=typed)
    s = service_of(request)
    try:
        proofs = await call(send_test, s.settings, s.transport(), path, addresses, force)
    except (NewsletterError, SubscribersError, ComponentError) as exc:
        return await _issue_page(request, me, path, 400, proof_error=str(exc).splitlines(), proof_to=typed)
    to = ", ".join(address for address, _ in proofs.sent)
    await audit(request, me, "console.issues.test_send", f"issue={path.stem} to={to} force={force}")
    warning = f" Warning: {proofs.warning}." if proofs.warning else ""
    return with_notice(see_other(f"/admin/issues/{path.stem}"), f"Proof of {path.stem} sent to {to}.{warning}")


# --- send: a confirmation, then a scheduled send for a worker -----------------------------------------


def _choice(request: Request, form: Any = None) -> dict[str, Any]:
    """What the send form asked for (the query string of step 1, the form of step 2)."""
    source = form if form is not None else request.query_params
    when = form_text(source, "when") or "now"
    return {"list": form_text(source, "list"), "segment": form_text(source, "segment") or None,
            "when": when, "at": form_text(source, "at") if when == "later" else "",
            "expires": form_text(source, "expires") or None, "force": form_text(source, "force") == "yes"}


def _confirmation(settings: Any, db: Any, sender: Any, path: Path, choice: dict[str, Any]) -> dict[str, Any]:
    """Everything step 1 shows: the refusals `send` would make, else the recipients and the time it takes."""
    from ...errors import NewsletterError
    from ...queueing import plan_issue, send_estimate, unusable_base_url, window
    if choice["when"] == "later" and not choice["at"]:
        raise NewsletterError("Choose the date and time to send it at, or send it now.")
    when, until = window(settings, choice["at"] or None, choice["expires"])
    shown = {"when_local": when.astimezone(zoneinfo.ZoneInfo(settings.timezone)), "when_utc": when,
             "until_utc": until, "timezone": settings.timezone, "base_url_problem": unusable_base_url(settings)}
    try:
        planned = plan_issue(settings, db, path, choice["list"], choice["segment"], choice["force"])
    except NewsletterError as exc:  # check errors (refused unless "Send anyway")
        return {**shown, "refused": str(exc).splitlines(), "plan": None}
    plan = planned.plan
    return {**shown, "refused": [], "plan": plan, "subject": planned.rendered.subject,
            "estimate": send_estimate(settings, sender, plan.to_send)}


async def _confirm_page(request: Request, me: Me, path: Path, choice: dict[str, Any], status: int = 200,
                        error: str = "") -> Response:
    from mailer import SegmentError
    from subscribers import ListNotFound

    from ...errors import NewsletterError
    s = service_of(request)
    if not choice["list"]:
        return await _issue_page(request, me, path, 400, send_error="Choose a list to send to.")
    try:
        shown = await call(_confirmation, s.settings, s.db, s.transport(), path, choice)
    except (NewsletterError, SegmentError, ListNotFound) as exc:
        return await _issue_page(request, me, path, 404 if isinstance(exc, ListNotFound) else 400,
                                 send_error=str(exc))
    refused = bool(shown["refused"] or shown["base_url_problem"])
    return render(request, me, "issue_send.html", 400 if refused and status == 200 else status,
                  title=f"Send {path.stem}", slug=path.stem, choice=choice, error=error, **shown)


@page("sender")
async def confirm_send(request: Request, me: Me) -> Response:
    """Step 1: who would get it, when, how long it takes; the list's name is typed to go on."""
    path = _path_of(request)
    return await _confirm_page(request, me, path, _choice(request))


@page("sender")
async def send(request: Request, me: Me) -> Response:
    """Step 2: the typed name matches the list: schedule the send (for now or later) for a worker."""
    from mailer import MailerError

    from ...errors import NewsletterError
    from ...queueing import queue_send
    path = _path_of(request)
    form = await request.form()
    choice = _choice(request, form)
    if choice["when"] == "later" and not choice["at"]:  # not "now": step 1 says what is missing
        return await _confirm_page(request, me, path, choice)
    if not choice["list"] or form_text(form, "confirm") != choice["list"]:
        return await _confirm_page(request, me, path, choice, 400,
                                   error=f"Type the list's name, {choice['list']}, exactly to send. Nothing was sent.")
    s = service_of(request)
    try:
        done, planned = await call(queue_send, s.settings, s.db, path, choice["list"], choice["segment"],
                                   choice["at"] or None, choice["expires"], choice["force"])
    except (NewsletterError, MailerError) as exc:  # refused (check errors, archive holds other content): say why
        return await _confirm_page(request, me, path, choice, 400 if status_of(exc) == 400 else 409,
                                   error=f"{exc} Nothing was sent.")
    await audit(request, me, "console.issues.send",
                f"issue={path.stem} list={choice['list']} segment={choice['segment'] or ''} "
                f"at={done.at.isoformat()} expires={done.expires_at.isoformat() if done.expires_at else ''} "
                f"recipients={planned.plan.to_send} force={choice['force']} send={done.send_id}")
    if choice["when"] == "later":
        local = done.at.astimezone(zoneinfo.ZoneInfo(s.settings.timezone))
        notice = (f"Send {done.send_id} of {path.stem} to {choice['list']} is scheduled for "
                  f"{local:%d %b %Y, %H:%M} ({s.settings.timezone}): a worker starts it then.")
    else:
        notice = f"Send {done.send_id} of {path.stem} to {choice['list']} is queued: a worker starts it shortly."
    return with_notice(see_other(f"/admin/sends/{done.send_id}"), notice)


ROUTES = [
    Route("/issues", issues, methods=["GET", "HEAD"]),
    Route("/issues/{slug}", issue, methods=["GET", "HEAD"]),
    Route("/issues/{slug}/email.html", email_html, methods=["GET", "HEAD"]),
    Route("/issues/{slug}/test-send", test_send, methods=["POST"]),
    Route("/issues/{slug}/send", confirm_send, methods=["GET", "HEAD"]),
    Route("/issues/{slug}/send", send, methods=["POST"]),
]
