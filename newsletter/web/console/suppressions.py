"""Console pages: the suppression list (design §13): suppressed addresses a page at a time, searched,
one suppression with its history, and lifting one that is not a complaint, with a reason that is kept.

What may never be lifted is decided by the library (subscribers.why_kept), here only shown.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http import BadRequest, call, service_of, status_of
from .guard import Me, audit, form_text, page, see_other
from .view import render, with_notice

MAX_SEARCH = 320  # an address is at most this long
MAX_ID = 2**31 - 1  # ids are INTEGER columns: a larger number is refused here, not by PostgreSQL


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_ID else None


def _cursor(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    if (number := _number(value)) is None:
        raise BadRequest(f"{name} must be a whole number (it comes from the page's links)")
    return number


def _id(request: Request) -> int:
    from subscribers import SubscriberNotFound
    if (number := _number(request.path_params["id"])) is None:
        raise SubscriberNotFound("no such suppression")
    return number


@page("viewer")
async def index(request: Request, me: Me) -> Response:
    from subscribers import suppression_lifts_of, suppression_page
    search = request.query_params.get("q", "").strip()[:MAX_SEARCH]
    before, after = _cursor(request, "before"), _cursor(request, "after")
    db = service_of(request).db
    found = await call(lambda: suppression_page(db, search=search, before=before, after=after))
    lifts, lifted = await call(suppression_lifts_of, db)
    return render(request, me, "suppressions.html", title="Suppressions", page=found, search=search,
                  paged=before is not None or after is not None, lifts=lifts, lifted=lifted)


async def _show(request: Request, me: Me, status: int = 200, **values: str) -> Response:
    from subscribers import get_suppression
    suppression, lifts = await call(get_suppression, service_of(request).db, _id(request))
    return render(request, me, "suppression.html", status, title=f"Suppression of {suppression.shown}",
                  s=suppression, lifts=lifts, **values)


@page("viewer")
async def show(request: Request, me: Me) -> Response:
    return await _show(request, me)


@page("editor")
async def lift(request: Request, me: Me) -> Response:
    from subscribers import SubscribersError, lift_suppression_by_id
    reason = form_text(await request.form(), "reason")
    try:
        done = await call(lift_suppression_by_id, service_of(request).db, _id(request), reason,
                          me.actor)
    except SubscribersError as exc:
        status = status_of(exc) or 400
        if status == 404:
            raise
        return await _show(request, me, status, error=str(exc), reason=reason)
    await audit(request, me, "console.suppressions.lift",
                f"{done.shown}: was {done.suppressed_reason!r}; reason {done.reason!r}")
    return with_notice(see_other("/admin/suppressions"),
                       f"Lifted the suppression of {done.shown}. Their lists are as they were: "
                       "nobody was subscribed again.")


ROUTES = [
    Route("/suppressions", index, methods=["GET", "HEAD"]),
    Route("/suppressions/{id}", show, methods=["GET", "HEAD"]),
    Route("/suppressions/{id}/lift", lift, methods=["POST"]),
]
