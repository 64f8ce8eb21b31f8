"""The console's Lists pages (design §13): every list with its counts, creating one, a list's page
(title, welcome issue), removing it after its name is typed; roles, CSRF and escaping; over real HTTP.
"""
from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import select

import mailer
import subscribers as subs
from subscribers.schema import lists, memberships

from .conftest import ROOT
from .console_support import Signed, sign_in
from .test_web import Answer, Site, keys, lite, migrated, server, site, web

__all__ = ["keys", "lite", "migrated", "server", "site", "web"]  # fixtures, used by name

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def _in_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console offers issues/*.yaml where `serve` runs: here, the project's own issues."""
    monkeypatch.chdir(ROOT)


def visible(html: str) -> str:
    """The text of <main>, tags removed, whitespace collapsed."""
    found = re.search(r"<main[^>]*>(.*)</main>", html, re.S)
    assert found, html[:500]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def post_forms(html: str) -> list[str]:
    """The actions of the page's POST forms, but the navigation's "Sign out"."""
    return [a for a in re.findall(r'<form method="post" action="([^"]+)"', html) if a != "/admin/logout"]


def notice(answer: Answer) -> str:
    """The one-time message the page after a POST shows (a cookie on the redirect)."""
    for header in answer.headers.get_all("set-cookie") or []:
        if found := re.match(r"newsletter_notice=([^;]*)", header):
            return unquote(found.group(1))
    raise AssertionError("no notice")


def audited(db: Any, action: str) -> list[subs.AuditEntry]:
    return [e for e in subs.audit_entries(db) if e.action == action]


def state(db: Any) -> dict[str, Any]:
    """Everything these pages can change."""
    with db.begin() as conn:
        rows = [tuple(r) for r in conn.execute(select(lists).order_by(lists.c.id))]
        members = [tuple(r) for r in conn.execute(select(memberships).order_by(*memberships.primary_key.columns))]
    return {"lists": rows, "members": members, "welcome": mailer.welcome_of(db, "news"),
            "audit": [(e.action, e.detail) for e in subs.audit_entries(db) if e.action.startswith("console.lists")]}


def news(db: Any) -> None:
    """A list with one person in each state."""
    subs.create_list(db, "news", "Example News", double_opt_in=True)
    subs.create_list(db, "events", "Events")
    subs.add_subscriber(db, "a@example.org", "news")
    subs.add_subscriber(db, "b@example.org", "news")
    subs.request_subscription(db, "c@example.org", "news")  # unconfirmed: the list is double opt-in
    subs.add_subscriber(db, "d@example.org", "news")
    subs.unsubscribe(db, "d@example.org", "news")
    subs.add_subscriber(db, "e@example.org", "news")
    with db.begin() as conn:
        subs.suppress_address(conn, subs.normalise("e@example.org"), "bounce: Permanent/General", "ses")


# --- seeing ----------------------------------------------------------------------------------------------


def test_the_lists_page_shows_every_list_with_its_counts(site: Site) -> None:
    news(site.db)
    me = sign_in(site, "viewer")
    page = me.get("/admin/lists")
    assert page.status == 200
    text = visible(page.text)
    row = re.search(r"news Example News double (\d+) (\d+) (\d+) (\d+)", text)
    assert row and row.groups() == ("2", "1", "1", "1"), text  # subscribed, unconfirmed, unsubscribed, suppressed
    assert re.search(r"events Events single 0 0 0 0", text), text
    assert 'href="/admin/lists/news"' in page.text and 'href="/admin/lists/events"' in page.text
    assert 'href="/admin/lists" aria-current="page">Lists</a>' in page.text  # the navigation says where we are


def test_a_lists_page_shows_its_facts_counts_welcome_and_links(site: Site) -> None:
    news(site.db)
    page = sign_in(site, "viewer").get("/admin/lists/news")
    assert page.status == 200
    text = visible(page.text)
    for fact in ("Subscribed 2", "Unconfirmed 1", "Unsubscribed 1", "Suppressed 1", "Title Example News",
                 "Opt-in Double", "Welcome issue none"):
        assert fact in text, (fact, text)
    assert 'href="/admin/subscribers?list=news"' in page.text
    assert 'href="/subscribe/news"' in page.text


def test_an_unknown_list_is_404_for_its_page_and_its_forms(lite: Site) -> None:
    me = sign_in(lite, "editor")
    for answer in (me.get("/admin/lists/nope"), me.get("/admin/lists/nope/remove"),
                   me.post("/admin/lists/nope/title", {"title": "X"}),
                   me.post("/admin/lists/nope/welcome", {"issue": ""}),
                   me.post("/admin/lists/nope/remove", {"confirm": "nope"})):
        assert answer.status == 404, answer.text[:300]
        assert "no list named 'nope'" in visible(answer.text)


# --- creating --------------------------------------------------------------------------------------------


def test_an_editor_creates_a_list_and_it_is_audited(site: Site) -> None:
    me = sign_in(site, "editor")
    form = me.get("/admin/lists")
    for label in ('<label for="name">Name</label>', '<label for="title">Title</label>', "Double opt-in"):
        assert label in form.text
    answer = me.post("/admin/lists", {"name": "news", "title": "LVRN News", "double_opt_in": "on"})
    assert answer.status == 303 and answer.headers["location"] == "/admin/lists/news"
    made = next(row for row in subs.list_lists(site.db) if row["name"] == "news")
    assert made["title"] == "LVRN News" and made["double_opt_in"] is True
    [entry] = audited(site.db, "console.lists.create")
    assert entry.actor == f"user:{me.email}" and entry.detail.startswith("news (title 'LVRN News', double opt-in yes")
    assert notice(answer) == "Created the list news."

    assert me.post("/admin/lists", {"name": "plain"}).status == 303  # no title: the name; single opt-in
    plain = next(row for row in subs.list_lists(site.db) if row["name"] == "plain")
    assert plain["title"] == "plain" and plain["double_opt_in"] is False


@pytest.mark.parametrize(("fields", "status", "message"), [
    ({"name": "Bad Name!", "title": "Kept"}, 400, "'Bad Name!' is not a valid list name"),
    ({"name": "", "title": "Kept"}, 400, "'' is not a valid list name"),
    ({"name": "news", "title": "Kept"}, 409, "a list named 'news' already exists"),
    ({"name": "long", "title": "x" * 201}, 400, "a list's title is at most 200 characters"),
])
def test_a_list_that_cannot_be_made_re_renders_the_form_with_why(site: Site, fields: dict[str, str], status: int,
                                                                 message: str) -> None:
    subs.create_list(site.db, "news", "Example News")
    me = sign_in(site, "editor")
    before = state(site.db)
    answer = me.post("/admin/lists", fields)
    assert answer.status == status
    assert message in visible(answer.text)
    assert f'name="name" value="{fields["name"]}"' in answer.text  # what was typed stays in the form
    assert state(site.db) == before


# --- changing --------------------------------------------------------------------------------------------


def test_retitling_a_list_keeps_its_name_and_is_audited(site: Site) -> None:
    news(site.db)
    me = sign_in(site, "editor")
    answer = me.post("/admin/lists/news/title", {"title": "  LVRN Monthly  "})
    assert answer.status == 303 and answer.headers["location"] == "/admin/lists/news"
    assert [r["title"] for r in subs.list_lists(site.db) if r["name"] == "news"] == ["LVRN Monthly"]
    [entry] = audited(site.db, "console.lists.retitle")
    assert entry.detail == "news: 'Example News' -> 'LVRN Monthly'"
    assert "Title LVRN Monthly" in visible(me.get("/admin/lists/news").text)

    before = state(site.db)
    empty = me.post("/admin/lists/news/title", {"title": "   "})
    assert empty.status == 400 and "Give the list a title" in visible(empty.text)
    long = me.post("/admin/lists/news/title", {"title": "y" * 201})
    assert long.status == 400 and "at most 200 characters" in visible(long.text)
    assert state(site.db) == before


def test_a_hostile_title_is_shown_as_text(lite: Site) -> None:
    me = sign_in(lite, "editor")
    assert me.post("/admin/lists", {"name": "news", "title": HOSTILE}).status == 303
    for path in ("/admin/lists", "/admin/lists/news", "/admin/lists/news/remove", "/admin/"):
        page = me.get(path)
        assert page.status == 200, path
        assert HOSTILE not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
    failed = me.post("/admin/lists", {"name": HOSTILE, "title": HOSTILE})
    assert failed.status == 400 and HOSTILE not in failed.text


def test_the_welcome_issue_is_chosen_from_the_issue_files_and_turned_off(lite: Site) -> None:
    news(lite.db)
    me = sign_in(lite, "editor")
    page = me.get("/admin/lists/news")
    assert '<option value="issues/2021-01.yaml">issues/2021-01.yaml</option>' in page.text
    assert '<option value="">No welcome issue</option>' in page.text
    answer = me.post("/admin/lists/news/welcome", {"issue": "issues/2021-01.yaml"})
    assert answer.status == 303, visible(answer.text)
    assert mailer.welcome_of(lite.db, "news") == "2021-01"
    assert audited(lite.db, "console.lists.welcome")[0].detail == "news: welcome issue 2021-01 (issues/2021-01.yaml)"
    page = me.get("/admin/lists/news")
    assert "Welcome issue 2021-01" in visible(page.text)
    assert '<option value="issues/2021-01.yaml" selected>' in page.text

    assert me.post("/admin/lists/news/welcome", {"issue": ""}).status == 303
    assert mailer.welcome_of(lite.db, "news") is None
    assert audited(lite.db, "console.lists.welcome")[0].detail == "news: welcome turned off"


@pytest.mark.parametrize("issue", ["../pyproject.toml", "/etc/passwd", "issues/nope.yaml",
                                   "issues/../issues/2021-01.yaml", str(ROOT / "issues" / "2021-01.yaml")])
def test_only_an_offered_issue_file_can_be_the_welcome(lite: Site, issue: str) -> None:
    news(lite.db)
    me = sign_in(lite, "editor")
    before = state(lite.db)
    answer = me.post("/admin/lists/news/welcome", {"issue": issue})
    assert answer.status == 400
    assert "Choose one of the issue files in issues/" in visible(answer.text)
    assert state(lite.db) == before


# --- removing --------------------------------------------------------------------------------------------


def test_removing_a_list_asks_for_its_name_then_removes_it(site: Site) -> None:
    news(site.db)
    me = sign_in(site, "editor")
    assert 'href="/admin/lists/news/remove"' in me.get("/admin/lists/news").text
    confirm = me.get("/admin/lists/news/remove")
    assert confirm.status == 200
    assert 'data-must-equal="news" data-enables="remove-button"' in confirm.text
    assert 'id="remove-button"' in confirm.text
    assert "keeps the 1 who unsubscribed" in visible(confirm.text)

    before = state(site.db)
    for typed in ("", "News", "events", "news "[:-1] + "x"):
        wrong = me.post("/admin/lists/news/remove", {"confirm": typed})
        assert wrong.status == 400
        assert "Type the list's name, news, to remove it. Nothing was removed." in visible(wrong.text)
    assert state(site.db) == before

    done = me.post("/admin/lists/news/remove", {"confirm": "news"})
    assert done.status == 303 and done.headers["location"] == "/admin/lists"
    assert [r["name"] for r in subs.list_lists(site.db)] == ["events"]
    [entry] = audited(site.db, "console.lists.remove")
    assert entry.detail == "news: 4 memberships removed, 1 unsubscribed kept"
    assert notice(done).startswith("Removed the list news: 4 memberships removed; the 1 who unsubscribed stay")
    assert me.get("/admin/lists/news").status == 404


# --- who may ---------------------------------------------------------------------------------------------


def _every_post() -> list[tuple[str, dict[str, str]]]:
    return [("/admin/lists", {"name": "new", "title": "New"}), ("/admin/lists/news/title", {"title": "Changed"}),
            ("/admin/lists/news/welcome", {"issue": "issues/2021-01.yaml"}),
            ("/admin/lists/news/remove", {"confirm": "news"})]


def test_a_viewer_sees_no_forms_and_every_post_is_403(site: Site) -> None:
    news(site.db)
    me = sign_in(site, "viewer")
    for path in ("/admin/lists", "/admin/lists/news"):
        page = me.get(path)
        assert page.status == 200 and post_forms(page.text) == [], path
        assert "Create list" not in page.text and "Remove list" not in page.text and "Save title" not in page.text
    assert me.get("/admin/lists/news/remove").status == 403
    before = state(site.db)
    for path, fields in _every_post():
        assert me.post(path, fields).status == 403, path
    assert state(site.db) == before


@pytest.mark.parametrize("csrf", ["", "forged"])
def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(lite: Site, csrf: str) -> None:
    news(lite.db)
    me: Signed = sign_in(lite, "admin")
    before = state(lite.db)
    for path, fields in _every_post():
        answer = me.post(path, fields, csrf=csrf)
        assert answer.status == 403, path
        assert "This form has expired" in answer.text
    assert state(lite.db) == before


def test_an_editor_sees_every_form(lite: Site) -> None:
    news(lite.db)
    me = sign_in(lite, "editor")
    assert post_forms(me.get("/admin/lists").text) == ["/admin/lists"]
    assert post_forms(me.get("/admin/lists/news").text) == ["/admin/lists/news/title", "/admin/lists/news/welcome"]
    assert post_forms(me.get("/admin/lists/news/remove").text) == ["/admin/lists/news/remove"]
