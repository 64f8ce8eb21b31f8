"""The console's Subscribers pages (design §13): browse and search people, one person's whole record,
add, edit, unsubscribe, forget, and bulk actions on a selection.

Thin: every rule is the library's (subscribers.browse pages by keyset and never counts a list;
add_subscriber refuses whoever left or is suppressed; forget erases). A person's URL carries their
id, never their address; no page is a personal-data export for a viewer.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http import BadRequest, call, service_of
from .guard import Me, audit, form_text, page, safe_next, see_other
from .view import ADMIN_HEADERS, render, with_notice

HOME = "/admin/subscribers"
MAX_SEARCH = 254  # an address is at most this long
MAX_FIELDS_TEXT = 64 * 1024
MAX_ID = 2**62


def _db(request: Request) -> Any:
    return service_of(request).db


def _cursor(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest(f"that {what} link is not one this console made; start again from the first page")
    return int(value)


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    search = q.get("q", "").strip()
    if len(search) > MAX_SEARCH:
        raise BadRequest(f"a search is at most {MAX_SEARCH} characters (the longest address)")
    return {"list": q.get("list", "").strip(), "status": q.get("status", "").strip(), "q": search}


def _link(filters: dict[str, str], **cursor: int) -> str:
    """A page link: the filters that are set, and the cursor (a person's id)."""
    values = {k: v for k, v in filters.items() if v}
    values.update({k: str(v) for k, v in cursor.items()})
    return f"{HOME}?{urlencode(values)}" if values else HOME


def _browse(db: Any, filters: dict[str, str], after: int | None, before: int | None) -> dict[str, Any]:
    from subscribers import find_people, list_names
    found = find_people(db, list_name=filters["list"] or None, status=filters["status"] or None, search=filters["q"],
                   after=after, before=before)
    return {"found": found, "lists": list_names(db)}


@page("viewer")
async def people(request: Request, me: Me) -> Response:
    from subscribers.schema import STATUSES
    filters = _filters(request)
    after = _cursor(request.query_params.get("after"), "Next")
    before = _cursor(request.query_params.get("before"), "Previous")
    data = await call(_browse, _db(request), filters, after, before)
    found = data["found"]
    return render(request, me, "people.html", title="Subscribers", filters=filters, statuses=STATUSES,
                  people=found.people, by_address=found.by_address, lists=data["lists"],
                  first_page=after is None and before is None, first_url=_link(filters),
                  next_url=_link(filters, after=found.after) if found.after else "",
                  previous_url=_link(filters, before=found.before) if found.before else "",
                  here=request.url.path + (f"?{request.url.query}" if request.url.query else ""))


# --- adding someone -------------------------------------------------------------------------------------------


async def _new_form(request: Request, me: Me, status: int = 200, error: str = "", **typed: str) -> Response:
    from subscribers import list_names
    lists = await call(list_names, _db(request))
    values = {"email": "", "name": "", "list": request.query_params.get("list", ""), "fields": "", **typed}
    return render(request, me, "person_new.html", status, title="Add a subscriber", lists=lists, error=error,
                  **values)


@page("editor")
async def new_person(request: Request, me: Me) -> Response:
    return await _new_form(request, me)


@page("editor")
async def add_person(request: Request, me: Me) -> Response:
    """subscribers.add_subscriber, as `subscribers add`: never someone who left the list or is suppressed."""
    from subscribers import add_subscriber, id_of, parse_fields

    from ..http import status_of
    form = await request.form()
    typed = {k: form_text(form, k) for k in ("email", "name", "list")}
    typed["fields"] = form_text(form, "fields")[:MAX_FIELDS_TEXT]
    detail = f"{typed['email']} -> {typed['list']}"
    try:
        fields = parse_fields(typed["fields"])
        outcome = await call(add_subscriber, _db(request), typed["email"], typed["list"], typed["name"], fields)
    except Exception as exc:  # noqa: BLE001 - domain errors show on the form; anything else re-raised
        status = status_of(exc)
        if status is None:
            raise
        await audit(request, me, "console.subscribers.add", f"{detail}: refused: {exc}")
        return await _new_form(request, me, status, str(exc), **typed)
    await audit(request, me, "console.subscribers.add", f"{detail}: {outcome}")
    person = await call(id_of, _db(request), typed["email"])
    said = {"added": "Added", "updated": "Updated", "unchanged": "Already subscribed:"}.get(outcome, outcome)
    return with_notice(see_other(f"{HOME}/{person}"), f"{said} {typed['email']} ({typed['list']}).")


# --- a selection ------------------------------------------------------------------------------------------------


def _selected(form: Any) -> list[int]:
    values = [v for v in form.getlist("ids") if isinstance(v, str)]
    if not values:
        raise BadRequest("nothing was selected: tick the people first")
    if not all(v.isdigit() and len(v) <= 18 for v in values):
        raise BadRequest("that selection is not one this console made")
    return [int(v) for v in values]


def _add_each(db: Any, ids: list[int], list_name: str) -> dict[str, int]:
    """Each through add_subscriber, so its refusal holds for each (whoever left stays left)."""
    from subscribers import NotAllowed, add_subscriber, emails_of, get_list
    with db.begin(read_only=True) as conn:
        get_list(conn, list_name)  # an unknown list is one 404, not a refusal per person
    tally = {"added": 0, "updated": 0, "unchanged": 0, "refused": 0}
    for email in emails_of(db, ids).values():
        try:
            tally[add_subscriber(db, email, list_name)] += 1
        except NotAllowed:
            tally["refused"] += 1
    return tally


@page("editor")
async def bulk(request: Request, me: Me) -> Response:
    """"Unsubscribe selected" from a list, or "Add selected" to one."""
    from subscribers import unsubscribe_people
    form = await request.form()
    action, list_name = form_text(form, "action"), form_text(form, "list")
    back = safe_next(form_text(form, "back"))
    back = back if back.startswith(HOME) else HOME
    if not list_name:
        raise BadRequest("choose the list the selected people are to leave or join")
    ids = _selected(form)
    named = ",".join(str(i) for i in sorted(set(ids)))
    if action == "unsubscribe":
        changed = await call(unsubscribe_people, _db(request), ids, list_name)
        await audit(request, me, "console.subscribers.bulk_unsubscribe",
                    f"{list_name}: {changed} of {len(set(ids))} unsubscribed (subscribers #{named})")
        return with_notice(see_other(back), f"Unsubscribed {changed} of {len(set(ids))} selected from {list_name}.")
    if action == "add":
        tally = await call(_add_each, _db(request), ids, list_name)
        await audit(request, me, "console.subscribers.bulk_add",
                    f"{list_name}: {json.dumps(tally, sort_keys=True)} (subscribers #{named})")
        refused = f"; {tally['refused']} refused (they left {list_name} or are suppressed)" if tally["refused"] else ""
        return with_notice(see_other(back), f"Added {tally['added']} of {len(set(ids))} selected to "
                                            f"{list_name}{refused}.")
    raise BadRequest("unknown action")


# --- one person ---------------------------------------------------------------------------------------------------


def _record(db: Any, person_id: int) -> dict[str, Any]:
    """Everything held about the person: subscribers.show (as `subscribers show`), their SES events, their sends."""
    from mailer import deliveries_of, events_of
    from subscribers import display_address, email_of, list_names, show
    email = email_of(db, person_id)
    record = show(db, email)
    return {"record": record, "shown": display_address(record["email"]), "events": events_of(db, email),
            "deliveries": deliveries_of(db, person_id), "lists": list_names(db)}


def _person_id(request: Request) -> int:
    from subscribers import SubscriberNotFound
    person_id = int(request.path_params["id"])
    if person_id > MAX_ID:  # beyond any id the databases hand out (and SQLite's integers)
        raise SubscriberNotFound(f"no subscriber #{person_id}")
    return person_id


async def _show_person(request: Request, me: Me, status: int = 200, **form: str) -> Response:
    person_id = _person_id(request)
    data = await call(_record, _db(request), person_id)
    record = data["record"]
    values = {"edit_error": "", "name": record["name"],
              "fields": "\n".join(f"{k}={v}" for k, v in sorted(record["fields"].items())), **form}
    return render(request, me, "person.html", status, title=data["shown"], person_id=person_id, **data, **values)


@page("viewer")
async def person(request: Request, me: Me) -> Response:
    return await _show_person(request, me)


@page("editor")
async def export_record(request: Request, me: Me) -> Response:
    """The person's whole record as JSON (GDPR access): a personal-data export, so not for viewers."""
    data = await call(_record, _db(request), _person_id(request))
    await audit(request, me, "console.subscribers.export", data["record"]["email"])
    body = {**data["record"], "events": data["events"],
            "deliveries": [{**d, "sent_at": d["sent_at"] and d["sent_at"].isoformat(),
                            "updated_at": d["updated_at"].isoformat()} for d in data["deliveries"]]}
    headers = {**ADMIN_HEADERS,
               "Content-Disposition": f'attachment; filename="subscriber-{_person_id(request)}.json"'}
    return Response(json.dumps(body, indent=2, ensure_ascii=False), media_type="application/json",
                    headers=headers)


@page("editor")
async def edit(request: Request, me: Me) -> Response:
    from subscribers import SubscribersError, edit_subscriber, email_of, parse_fields
    person_id = _person_id(request)
    form = await request.form()
    name, text = form_text(form, "name"), form_text(form, "fields")[:MAX_FIELDS_TEXT]
    email = await call(email_of, _db(request), person_id)
    try:
        fields = parse_fields(text)
        outcome = await call(edit_subscriber, _db(request), person_id, name, fields)
    except SubscribersError as exc:
        return await _show_person(request, me, 400, edit_error=str(exc), name=name, fields=text)
    await audit(request, me, "console.subscribers.edit",
                f"{email}: {outcome} (name, fields: {', '.join(sorted(fields)) or 'none'})")
    return with_notice(see_other(f"{HOME}/{person_id}"),
                       "Saved the name and fields." if outcome == "updated" else "Nothing to change.")


@page("editor")
async def leave_list(request: Request, me: Me) -> Response:
    from subscribers import email_of, unsubscribe
    person_id = _person_id(request)
    list_name = form_text(await request.form(), "list")
    if not list_name:
        raise BadRequest("which list? (the form names it)")
    email = await call(email_of, _db(request), person_id)
    changed = await call(unsubscribe, _db(request), email, list_name)
    await audit(request, me, "console.subscribers.unsubscribe",
                f"{email} from {list_name}: {'unsubscribed' if changed else 'unchanged'}")
    return with_notice(see_other(f"{HOME}/{person_id}"),
                       f"Unsubscribed from {list_name}." if changed else f"Already unsubscribed from {list_name}.")


async def _forget_form(request: Request, me: Me, status: int = 200, error: str = "") -> Response:
    from subscribers import display_address, email_of
    person_id = _person_id(request)
    email = await call(email_of, _db(request), person_id)
    shown = display_address(email)
    return render(request, me, "person_forget.html", status, title=f"Forget {shown}", person_id=person_id,
                  shown=shown, error=error)


@page("editor")
async def confirm_forget(request: Request, me: Me) -> Response:
    return await _forget_form(request, me)


def _forget(db: Any, email: str) -> None:
    """As `subscribers forget`: the subscribers' tables, then the mailer's (events, ledger links and errors)."""
    from mailer.history import forget_person
    forget_person(db, email)


@page("editor")
async def forget_person(request: Request, me: Me) -> Response:
    from subscribers import InvalidAddress, email_of, normalise
    person_id = _person_id(request)
    typed = form_text(await request.form(), "confirm")
    email = await call(email_of, _db(request), person_id)
    try:
        same = bool(typed) and normalise(typed, held=True).key == normalise(email, held=True).key
    except InvalidAddress:
        same = False
    if not same:
        return await _forget_form(request, me, 400, "Type the address exactly as shown to confirm. Nothing was erased.")
    await call(_forget, _db(request), email)
    # By id only: forget has just erased the address from the audit log, and this line must not put it back.
    await audit(request, me, "console.subscribers.forget", f"subscriber #{person_id}: forgotten")
    return with_notice(see_other(HOME), "Forgotten: only a hash of the address is kept, in the suppression list, "
                                        "so it is never mailed again.")


ROUTES = [
    Route("/subscribers", people, methods=["GET", "HEAD"]),
    Route("/subscribers/new", new_person, methods=["GET", "HEAD"]),
    Route("/subscribers/new", add_person, methods=["POST"]),
    Route("/subscribers/bulk", bulk, methods=["POST"]),
    Route("/subscribers/{id:int}", person, methods=["GET", "HEAD"]),
    Route("/subscribers/{id:int}/record.json", export_record, methods=["GET", "HEAD"]),
    Route("/subscribers/{id:int}/edit", edit, methods=["POST"]),
    Route("/subscribers/{id:int}/unsubscribe", leave_list, methods=["POST"]),
    Route("/subscribers/{id:int}/forget", confirm_forget, methods=["GET", "HEAD"]),
    Route("/subscribers/{id:int}/forget", forget_person, methods=["POST"]),
]
