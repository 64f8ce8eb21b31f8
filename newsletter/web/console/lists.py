"""Console pages: the lists (design §13): every list with its counts, creating one, a list's page
(its title, its welcome issue) and removing it after its name is typed.

A list's name cannot be changed here, only its title: sends, their reports and `SLUG/LIST`
references name the list they went to, and sign-up forms on other sites post to /subscribe/NAME.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http import call, service_of, status_of
from .guard import Me, audit, form_text, page, see_other
from .issue_files import FOLDER, issue_files
from .view import render, with_notice


def _url(name: str) -> str:
    return f"/admin/lists/{quote(name, safe='')}"


def welcome_choices() -> list[str]:
    """The issue files a welcome can be chosen from (the Issues page's), as paths relative to where `serve`
    runs, as `lists set --welcome` takes them."""
    return [path.as_posix() for path in issue_files(Path(FOLDER)).values()]


# --- every list, and creating one -------------------------------------------------------------------------


async def _index(request: Request, me: Me, status: int = 200, error: str = "",
                 form: dict[str, Any] | None = None) -> Response:
    from subscribers import list_lists
    lists = await call(list_lists, service_of(request).db)
    return render(request, me, "lists.html", status, title="Lists", lists=lists, error=error,
                  form=form or {"name": "", "title": "", "double_opt_in": False})


@page("viewer")
async def index(request: Request, me: Me) -> Response:
    return await _index(request, me)


@page("editor")
async def create(request: Request, me: Me) -> Response:
    from subscribers import SubscribersError, create_list
    form = await request.form()
    values = {"name": form_text(form, "name"), "title": form_text(form, "title"),
              "double_opt_in": form.get("double_opt_in") is not None}
    try:
        made = await call(create_list, service_of(request).db, values["name"], values["title"],
                          values["double_opt_in"])
    except SubscribersError as exc:
        return await _index(request, me, status_of(exc) or 400, str(exc), values)
    await audit(request, me, "console.lists.create",
                f"{made.name} (title {made.title!r}, double opt-in {'yes' if made.double_opt_in else 'no'})")
    return with_notice(see_other(_url(made.name)), f"Created the list {made.name}.")


# --- one list ---------------------------------------------------------------------------------------------


def _facts(db: Any, name: str) -> dict[str, Any]:
    """The list (404 when there is none of that name), its counts and its welcome issue."""
    from mailer import welcome_of
    from subscribers import ListNotFound, get_list, list_lists
    with db.begin(read_only=True) as conn:
        get_list(conn, name)
    found = next((row for row in list_lists(db) if row["name"] == name), None)
    if found is None:  # removed in between
        raise ListNotFound(f"no list named {name!r}")
    return {"list": found, "welcome": welcome_of(db, name)}


async def _show(request: Request, me: Me, name: str, status: int = 200, **errors: str) -> Response:
    facts = await call(_facts, service_of(request).db, name)
    return render(request, me, "list.html", status, title=f"List {name}", issues=welcome_choices(), **facts, **errors)


@page("viewer")
async def show(request: Request, me: Me) -> Response:
    return await _show(request, me, request.path_params["name"])


@page("editor")
async def retitle(request: Request, me: Me) -> Response:
    from subscribers import SubscribersError, get_list, set_title
    name, db = request.path_params["name"], service_of(request).db
    title = form_text(await request.form(), "title")
    if not title:
        return await _show(request, me, name, 400, title_error="Give the list a title: it is what readers see.")

    def change() -> tuple[str, str]:
        with db.begin(read_only=True) as conn:
            before = get_list(conn, name).title
        return before, set_title(db, name, title).title
    try:
        before, after = await call(change)
    except SubscribersError as exc:
        if (status := status_of(exc)) == 404:
            raise
        return await _show(request, me, name, status or 400, title_error=str(exc))
    await audit(request, me, "console.lists.retitle", f"{name}: {before!r} -> {after!r}")
    return with_notice(see_other(_url(name)), f"The list {name} is now titled {after!r}.")


@page("editor")
async def welcome(request: Request, me: Me) -> Response:
    """Set the list's welcome issue (`lists set NAME --welcome FILE`), or turn it off (`--no-welcome`)."""
    name, s = request.path_params["name"], service_of(request)
    chosen = form_text(await request.form(), "issue")
    if chosen and chosen not in welcome_choices():
        return await _show(request, me, name, 400,
                           welcome_error=f"Choose one of the issue files in {FOLDER}/ from the list.")
    try:
        done = await call(_set_welcome, s.db, s.settings, name, chosen)
    except Exception as exc:  # noqa: BLE001 - a domain error is shown beside the form; others re-raised
        status = status_of(exc)
        if status is None or status == 404:
            raise
        return await _show(request, me, name, status, welcome_error=str(exc))
    await audit(request, me, "console.lists.welcome", f"{name}: {done}")
    return with_notice(see_other(_url(name)), f"List {name}: {done}.")


def _set_welcome(db: Any, settings: Any, name: str, chosen: str) -> str:
    """What the CLI's `lists set` does, through the same library calls; says what was done."""
    from mailer import clear_welcome, set_welcome
    from subscribers import get_list

    from ...sending import checked_render
    with db.begin(read_only=True) as conn:
        get_list(conn, name)  # an unknown list is 404 before an issue is built
    if not chosen:
        return "welcome turned off" if clear_welcome(db, name) else "no welcome issue (there was none)"
    path = Path(chosen)
    rendered = checked_render(path, settings, False)
    set_welcome(db, name, rendered, str(path.resolve()))
    return f"welcome issue {rendered.slug} ({chosen})"


# --- removing a list --------------------------------------------------------------------------------------


@page("editor")
async def confirm_remove(request: Request, me: Me) -> Response:
    facts = await call(_facts, service_of(request).db, request.path_params["name"])
    return render(request, me, "list_remove.html", title=f"Remove the list {facts['list']['name']}", **facts)


@page("editor")
async def remove(request: Request, me: Me) -> Response:
    from mailer.welcome import remove_list
    name, db = request.path_params["name"], service_of(request).db
    typed = form_text(await request.form(), "confirm")
    if typed != name:
        facts = await call(_facts, db, name)
        return render(request, me, "list_remove.html", 400, title=f"Remove the list {name}", typed=typed,
                      error=f"Type the list's name, {name}, to remove it. Nothing was removed.", **facts)
    removed, kept = await call(remove_list, db, name)
    await audit(request, me, "console.lists.remove",
                f"{name}: {removed} memberships removed, {kept} unsubscribed kept")
    return with_notice(see_other("/admin/lists"),
                       f"Removed the list {name}: {removed:,} memberships removed; the {kept:,} who "
                       "unsubscribed stay unsubscribed if a list of that name is created again.")


ROUTES = [
    Route("/lists", index, methods=["GET", "HEAD"]),
    Route("/lists", create, methods=["POST"]),
    Route("/lists/{name}", show, methods=["GET", "HEAD"]),
    Route("/lists/{name}/title", retitle, methods=["POST"]),
    Route("/lists/{name}/welcome", welcome, methods=["POST"]),
    Route("/lists/{name}/remove", confirm_remove, methods=["GET", "HEAD"]),
    Route("/lists/{name}/remove", remove, methods=["POST"]),
]
