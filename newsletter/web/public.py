"""The public site of design §7 (unsubscribe, sign-up, archive, SNS webhook), one handler each."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .http import MAX_FORM, MAX_SNS, body_of, call, form_of, redirect, service_of
from .pages import SECURITY_HEADERS, Link, mask


def _shown(email: str) -> str:
    """An address on a page: masked, its domain as people write it (Unicode, not punycode)."""
    from subscribers import display_address
    return mask(display_address(email))


def _bad_link(request: Request, what: str, reason: str) -> Response:
    return service_of(request).pages.message(
        f"This {what} link does not work", reason,
        "Copy the whole link from the email into your browser's address bar, or use the link in a newer email.",
        status=400)


async def unsubscribe_page(request: Request) -> Response:
    """GET shows a button and changes nothing: mail scanners follow links."""
    from subscribers import InvalidToken, NotAllowed, SubscriberNotFound, list_member
    s = service_of(request)
    try:
        target = s.tokens.read_unsubscribe(request.path_params["token"])
    except InvalidToken as exc:
        return _bad_link(request, "unsubscribe", str(exc))
    if target.is_proof:
        return s.pages.render("unsubscribe.html", title="Unsubscribe (test message)", list_title="this test",
                              masked="a test address", action=request.url.path)
    try:
        member = await call(list_member, s.db, target.subscriber_id, target.list_id)
    except (SubscriberNotFound, NotAllowed):
        return _gone(request)
    if member.status in (None, "unsubscribed"):
        return _left(request, member)
    return s.pages.render("unsubscribe.html", title=f"Unsubscribe from {member.list_title}",
                          list_title=member.list_title, masked=_shown(member.email), action=request.url.path)


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click (body `List-Unsubscribe=One-Click`) or the page's button; idempotent."""
    from mailer import record_unsubscribe
    from subscribers import InvalidToken, NotAllowed, SubscriberNotFound, leave
    s = service_of(request)
    if await body_of(request, MAX_FORM) is None:
        return _too_large()
    try:
        target = s.tokens.read_unsubscribe(request.path_params["token"])
    except InvalidToken as exc:
        return _bad_link(request, "unsubscribe", str(exc))
    if target.is_proof:  # a test-send proof: the link works in form and changes nothing
        return s.pages.message("Unsubscribed (test message)", "This was a proof: nothing was changed.")
    try:
        member, _ = await call(leave, s.db, target.subscriber_id, target.list_id, "link")
    except (SubscriberNotFound, NotAllowed):  # a database outage is not this: 503, so the client retries
        return _gone(request)
    if member.status == "unsubscribed":
        # Every time, not only when `leave` changed something: if recording failed after
        # the person left, the sender's retry must still count it (the event is idempotent).
        await call(record_unsubscribe, s.db, target.subscriber_id, target.list_id, member.email)
    return _left(request, member)


def _left(request: Request, member: Any) -> Response:
    return service_of(request).pages.message(
        "You are unsubscribed", f"{_shown(member.email)} will get no more issues of {member.list_title}.",
        link=Link(f"/subscribe/{member.list_name}", f"Changed your mind? Subscribe to {member.list_title} again"))


def _gone(request: Request) -> Response:
    return service_of(request).pages.message(
        "You are not on this list", "We hold no subscription for this link any more: nothing will be sent to you.")


def _too_large() -> Response:
    return PlainTextResponse("request body too large", status_code=413, headers=SECURITY_HEADERS)


async def subscribe_form(request: Request) -> Response:
    mailing_list = await _list_or_404(request)
    return mailing_list if isinstance(mailing_list, Response) else _form(request, mailing_list)


async def _list_or_404(request: Request) -> Any:
    """The list the path names, or the 404 page to answer with."""
    from subscribers import ListNotFound, get_list
    s = service_of(request)

    def find() -> Any:
        with s.db.begin() as conn:
            return get_list(conn, request.path_params["list"])
    try:
        return await call(find)
    except ListNotFound:
        return s.pages.message("No such newsletter", "There is no newsletter at this address.", status=404)


def _form(request: Request, mailing_list: Any, *, error: str = "", email: str = "", name: str = "",
          status: int = 200) -> Response:
    return service_of(request).pages.render(
        "subscribe.html", status, title=f"Subscribe to {mailing_list.title}", list_title=mailing_list.title,
        double_opt_in=mailing_list.double_opt_in, action=request.url.path, error=error, email=email, name=name)


async def subscribe(request: Request) -> Response:
    """The same answer, after the same work, whether the address was known or not (signups.py).

    Only the attempt is counted here; the sign-up is stored and its confirmation mailed
    by the serve process's sign-up thread after this answer has gone.
    """
    from subscribers import InvalidAddress, allow_attempt, normalise

    from .signups import SignUpRequest
    s = service_of(request)
    mailing_list = await _list_or_404(request)
    if isinstance(mailing_list, Response):
        return mailing_list
    body = await body_of(request, MAX_FORM)
    if body is None:
        return _too_large()
    form = form_of(body)
    if form is None:
        return _form(request, mailing_list, error="The form was not sent as expected; please try again.", status=400)
    email, name = form.get("email", "").strip(), form.get("name", "").strip()
    if form.get("website"):  # the honeypot: only a script fills a field nobody can see
        return _thanks(request, mailing_list, email)
    try:
        address = normalise(email)
    except InvalidAddress as exc:  # e.g. not an address, or one SES cannot send to (a non-ASCII local part)
        return _form(request, mailing_list, error=f"{exc} Please enter a whole email address, like name@example.org.",
                     email=email, name=name, status=400)
    if not await call(allow_attempt, s.db, address, s.client_key(s.client_ip(request))):
        return s.pages.message("Please try again later", "There have been too many sign-ups from here or for this "
                               "address. Please wait an hour and try again.", status=429)
    if not s.signups.submit(SignUpRequest(address.email, mailing_list.name, name)):
        return s.pages.message("Please try again in a few minutes", "We are taking a great many sign-ups just now. "
                               "Please try again shortly.", status=503)
    return _thanks(request, mailing_list, address.email)


def _thanks(request: Request, mailing_list: Any, email: str) -> Response:
    shown = _shown(email) if "@" in email else "your address"
    lines: tuple[str, ...]
    if mailing_list.double_opt_in:
        lines = (f"Please check your inbox: unless {shown} is already subscribed, we have sent it a link to "
                 f"confirm. {mailing_list.title} starts when you follow it.",)
    else:
        lines = (f"{shown} is on the list for {mailing_list.title}.",
                 "If this address unsubscribed before, we have sent it a link to confirm first.")
    return service_of(request).pages.message("Thank you", *lines)


async def confirm(request: Request) -> Response:
    from subscribers import InvalidToken, NotAllowed, SubscriberNotFound, confirm_subscription
    s = service_of(request)
    if request.method != "GET":  # Starlette answers HEAD with GET's handler; a link checker's HEAD must not confirm
        return PlainTextResponse("use GET", status_code=405, headers={**SECURITY_HEADERS, "Allow": "GET"})
    try:
        target, issued = s.tokens.read_confirm_issued(request.path_params["token"])
    except InvalidToken as exc:
        return _bad_link(request, "confirmation", str(exc))
    try:
        member = await call(confirm_subscription, s.db, target.subscriber_id, target.list_id, issued)
    except (SubscriberNotFound, NotAllowed) as exc:
        return s.pages.message("This link no longer works", str(exc), "Please sign up again.", status=400)
    from mailer import welcome_newcomer
    await call(welcome_newcomer, s.db, member.list_id, member.subscriber_id)  # the list's welcome issue, once ever
    return s.pages.message("You are subscribed", f"{_shown(member.email)} will get {member.list_title}. Welcome!",
                           link=Link("/archive/", "Read past issues in the archive"))


async def archive_index(request: Request) -> Response:
    from mailer import archived_issues
    s = service_of(request)
    return s.pages.render("archive.html", title="Past issues", issues=await call(archived_issues, s.db))


async def archive_page(request: Request) -> Response:
    from mailer import archived_page
    s = service_of(request)
    page = await call(archived_page, s.db, request.path_params["slug"])
    if page is None:
        return s.pages.message("No such issue", "There is no issue at this address.", status=404,
                               link=Link("/archive/", "See all past issues"))
    return Response(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


async def archive_redirect(request: Request) -> Response:
    return redirect(f"/archive/{request.path_params['slug']}/")


async def archive_asset(request: Request) -> Response:
    from mailer import archived_asset
    s = service_of(request)
    found = await call(archived_asset, s.db, request.path_params["slug"], request.path_params["name"])
    if found is None:
        return PlainTextResponse("not found", status_code=404, headers=SECURITY_HEADERS)
    content_type, data = found
    # Published images never change under their name: let browsers and proxies keep them.
    return Response(data, media_type=content_type,
                    headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"})


async def ses_webhook(request: Request) -> Response:
    """SNS: verified or refused (403, nothing changed); a database failure is 500 so SNS retries."""
    from mailer import SnsRefused, handle_sns
    s = service_of(request)
    body = await body_of(request, MAX_SNS)
    if body is None:
        return _too_large()
    try:
        outcome = await call(handle_sns, s.db, s.verifier, body, request.headers.get("x-amz-sns-message-type"),
                             s.policy)
    except SnsRefused as exc:
        return PlainTextResponse(f"refused: {exc}", status_code=403, headers=SECURITY_HEADERS)
    return PlainTextResponse(outcome.kind, headers=SECURITY_HEADERS)


async def healthz(request: Request) -> Response:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from subscribers import DatabaseError
    s = service_of(request)

    def ping() -> None:
        with s.db.begin() as conn:
            conn.execute(text("SELECT 1"))
    try:
        await call(ping)
    except (SQLAlchemyError, DatabaseError):
        return PlainTextResponse("database unreachable", status_code=503, headers=SECURITY_HEADERS)
    return PlainTextResponse("ok", headers=SECURITY_HEADERS)


ROUTES = [
    ("/u/{token}", unsubscribe_page, ["GET", "HEAD"]),
    ("/u/{token}", unsubscribe, ["POST"]),
    ("/subscribe/{list}", subscribe_form, ["GET", "HEAD"]),
    ("/subscribe/{list}", subscribe, ["POST"]),
    ("/confirm/{token}", confirm, ["GET"]),
    ("/archive/", archive_index, ["GET", "HEAD"]),
    ("/archive/{slug}", archive_redirect, ["GET", "HEAD"]),
    ("/archive/{slug}/", archive_page, ["GET", "HEAD"]),
    ("/archive/{slug}/{name:path}", archive_asset, ["GET", "HEAD"]),
    ("/webhooks/ses", ses_webhook, ["POST"]),
    ("/healthz", healthz, ["GET", "HEAD"]),
]
