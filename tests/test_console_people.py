"""The console's Subscribers pages (design §13) over real HTTP, on SQLite and PostgreSQL: paging by keyset,
search, filters, a person's record with sends and events, add, edit, unsubscribe, forget, bulk actions,
roles, CSRF and escaping."""
from __future__ import annotations

import json
import re
from html import unescape
from typing import Any
from urllib.parse import unquote

import mailer
import subscribers as subs

from .console_support import Signed, sign_in
from .test_web import FIXTURES, Site, keys, lite, migrated, rendered, send_issue, server, site, web

__all__ = ["keys", "lite", "migrated", "rendered", "server", "site", "web"]  # fixtures, used by name

PERSON_LINK = re.compile(r'href="/admin/subscribers/(\d+)"')
HOSTILE = "<script>alert(1)</script>"


def _people(site: Site, n: int = 120) -> None:
    subs.create_list(site.db, "news", "Example News")
    subs.create_list(site.db, "other", "Other News")
    for i in range(n):
        subs.add_subscriber(site.db, f"Person{i:03d}@Example.org", "news", name=f"P {i:03d}")


def _main(answer: Any) -> str:
    """The visible text of <main>, whitespace collapsed (the console's <main> carries an id)."""
    found = re.search(r"<main[^>]*>(.*)</main>", answer.text, re.S)
    assert found, answer.text[:500]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def _notice(answer: Any) -> str:
    """The one-time message a POST leaves for the page it redirects to (a cookie)."""
    for header in answer.headers.get_all("set-cookie") or []:
        found = re.match(r"newsletter_notice=([^;]*)", header)
        if found:
            return unquote(found.group(1).strip('"'))
    return ""


def _ids(html: str) -> list[int]:
    return [int(i) for i in PERSON_LINK.findall(html)]


def _link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a class="btn" href="([^"]+)" rel="{rel}">', html)
    return unescape(found.group(1)) if found else None


def _id(site: Site, email: str) -> int:
    return int(subs.id_of(site.db, email))


def _statuses(site: Site, email: str) -> dict[str, str]:
    return {m["list"]: m["status"] for m in subs.show(site.db, email)["lists"]}


def _audit(site: Site) -> list[Any]:
    return subs.audit_entries(site.db, limit=1000)


def test_a_list_pages_by_keyset_both_ways(site: Site) -> None:
    _people(site)
    editor = sign_in(site, "editor")
    first = editor.get("/admin/subscribers?list=news")
    assert first.status == 200 and "Members of news" in first.text
    page1 = _ids(first.text)
    assert len(page1) == 50 and _link(first.text, "prev") is None
    assert "50 shown, more on the next page" in _main(first)
    after = _link(first.text, "next")
    assert after and "after=" in after and "offset" not in after
    second = editor.get(after)
    page2 = _ids(second.text)
    third = editor.get(_link(second.text, "next") or "")
    page3 = _ids(third.text)
    assert (len(page2), len(page3)) == (50, 20) and _link(third.text, "next") is None
    everyone = page1 + page2 + page3
    assert everyone == sorted(everyone, reverse=True) and len(set(everyone)) == 120  # newest first, each once
    back = editor.get(_link(third.text, "prev") or "")
    assert _ids(back.text) == page2
    start = editor.get(_link(back.text, "prev") or "")
    assert _ids(start.text) == page1 and _link(start.text, "prev") is None
    # The cursor is an id: no address is written into a page link.
    assert "example.org" not in (after + (_link(second.text, "next") or "")).lower()
    assert editor.get("/admin/subscribers?list=news&after=x1").status == 400


def test_search_by_address_prefix_in_any_case_and_an_idn_domain(site: Site) -> None:
    _people(site, 30)
    subs.add_subscriber(site.db, "anna@bücher.de", "other", name="Anna")
    viewer = sign_in(site, "viewer")
    found = viewer.get("/admin/subscribers?q=PERSON01")
    assert found.status == 200
    assert re.findall(r">(Person\d+@example\.org)</a>", found.text) == [f"Person01{i}@example.org" for i in range(10)]
    assert "in address order" in _main(found)
    idn = viewer.get("/admin/subscribers?q=Anna%40B%C3%BCcher")
    assert ">anna@bücher.de</a>" in idn.text and _ids(idn.text) == [_id(site, "anna@bücher.de")]
    none = viewer.get("/admin/subscribers?q=zz&list=news")
    assert none.status == 200 and "No address starts with “zz” on news." in _main(none)
    assert viewer.get("/admin/subscribers?q=" + "a" * 300).status == 400


def test_filter_by_list_and_status(site: Site) -> None:
    _people(site, 10)
    subs.add_subscriber(site.db, "person004@example.org", "other")
    for i in (2, 6):
        subs.unsubscribe(site.db, f"person00{i}@example.org", "news")
    viewer = sign_in(site, "viewer")
    left = viewer.get("/admin/subscribers?list=news&status=unsubscribed")
    assert _ids(left.text) == [_id(site, f"person00{i}@example.org") for i in (6, 2)]
    other = viewer.get("/admin/subscribers?list=other")
    assert _ids(other.text) == [_id(site, "person004@example.org")]
    assert '<option value="other" selected>' in other.text
    assert viewer.get("/admin/subscribers?list=nope").status == 404
    assert viewer.get("/admin/subscribers?status=gone").status == 400


def test_bulk_unsubscribe_and_add_a_selection(site: Site) -> None:
    _people(site, 6)
    subs.add_subscriber(site.db, "person005@example.org", "other")
    subs.unsubscribe(site.db, "person005@example.org", "other")
    editor = sign_in(site, "editor")
    page = editor.get("/admin/subscribers?list=news")
    assert 'data-select-all="ids"' in page.text and "Unsubscribe selected" in page.text
    chosen = [_id(site, f"person00{i}@example.org") for i in (1, 3, 5)]
    back = "/admin/subscribers?list=news"
    answer = editor.post("/admin/subscribers/bulk", [("action", "unsubscribe"), ("list", "news"), ("back", back),
                                                     *(("ids", str(i)) for i in chosen)])
    assert answer.status == 303 and answer.headers["location"] == back
    assert [_statuses(site, f"person00{i}@example.org")["news"] for i in range(6)] == [
        "subscribed", "unsubscribed", "subscribed", "unsubscribed", "subscribed", "unsubscribed"]
    assert _notice(answer) == "Unsubscribed 3 of 3 selected from news."
    entry = _audit(site)[0]
    assert entry.action == "console.subscribers.bulk_unsubscribe" and entry.actor == f"user:{editor.email}"
    # Adding to another list refuses whoever left it (person005 left "other").
    added = editor.post("/admin/subscribers/bulk", [("action", "add"), ("list", "other"), ("back", back),
                                                    *(("ids", str(i)) for i in chosen)])
    assert added.status == 303
    assert _statuses(site, "person001@example.org")["other"] == "subscribed"
    assert _statuses(site, "person005@example.org")["other"] == "unsubscribed"
    assert _notice(added).startswith("Added 2 of 3 selected to other; 1 refused")
    assert _audit(site)[0].action == "console.subscribers.bulk_add"
    nothing = editor.post("/admin/subscribers/bulk", {"action": "unsubscribe", "list": "news"})
    assert nothing.status == 400 and "nothing was selected" in nothing.text


def test_add_a_subscriber_and_the_refusal_of_one_who_left(site: Site) -> None:
    _people(site, 2)
    editor = sign_in(site, "editor")
    form = editor.get("/admin/subscribers/new?list=other")
    assert form.status == 200 and '<option value="other" selected>' in form.text
    for label in ('<label for="a-email">Email</label>', '<label for="a-name">Name</label>',
                  '<label for="a-list">List</label>'):
        assert label in form.text
    answer = editor.post("/admin/subscribers/new", {"email": "New.Person@Example.org", "name": "New Person",
                                                    "list": "news", "fields": "City=Preston"})
    assert answer.status == 303
    person = _id(site, "new.person@example.org")
    assert answer.headers["location"] == f"/admin/subscribers/{person}"
    record = subs.show(site.db, "new.person@example.org")
    assert (record["name"], record["fields"], _statuses(site, "new.person@example.org")) == (
        "New Person", {"city": "Preston"}, {"news": "subscribed"})
    assert _audit(site)[0].action == "console.subscribers.add"
    subs.unsubscribe(site.db, "person001@example.org", "news")
    refused = editor.post("/admin/subscribers/new", {"email": "PERSON001@example.org", "list": "news"})
    assert refused.status == 409 and "unsubscribed from &#39;news&#39;" in refused.text
    assert 'value="PERSON001@example.org"' in refused.text  # the form again, as typed
    assert _statuses(site, "person001@example.org") == {"news": "unsubscribed"}
    assert "refused" in _audit(site)[0].detail
    assert editor.post("/admin/subscribers/new", {"email": "not an address", "list": "news"}).status == 400
    assert editor.post("/admin/subscribers/new", {"email": "x@example.org", "list": "nope"}).status == 404


def test_a_persons_page_has_their_record_sends_and_events(site: Site, rendered: Any) -> None:
    subs.create_list(site.db, "news", "Example News")
    subs.add_subscriber(site.db, "recipient@example.com", "news", name="Rec", fields={"city": "Preston"})
    send_issue(site, rendered)
    bounce = (FIXTURES / "event-bounce.json").read_text("utf-8")  # a permanent bounce of recipient@example.com
    mailer.take(site.db, [bounce], mailer.Policy(), "test")
    viewer = sign_in(site, "viewer")
    person = _id(site, "recipient@example.com")
    page = viewer.get(f"/admin/subscribers/{person}")
    assert page.status == 200
    text = _main(page)
    for shown in ("recipient@example.com", "Rec", "city", "Preston", "Suppressed:", "news", "2021-01", "bounce",
                  "hard: Permanent/General", "550 5.1.1 user unknown"):
        assert shown in text, shown
    delivery = mailer.deliveries_of(site.db, person)[0]
    assert delivery["state"] == "sent" and f"<code>{delivery['message_id']}</code>" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert viewer.get("/admin/subscribers/999999").status == 404
    assert viewer.get("/admin/subscribers/99999999999999999999").status == 404


def test_edit_name_and_fields(site: Site) -> None:
    _people(site, 1)
    editor = sign_in(site, "editor")
    person = _id(site, "person000@example.org")
    answer = editor.post(f"/admin/subscribers/{person}/edit", {"name": "Ann Smith",
                                                               "fields": "Home Town=Leyland\nteam = youth\n"})
    assert answer.status == 303
    record = subs.show(site.db, "person000@example.org")
    assert (record["name"], record["fields"]) == ("Ann Smith", {"home_town": "Leyland", "team": "youth"})
    assert _audit(site)[0].action == "console.subscribers.edit"
    bad = editor.post(f"/admin/subscribers/{person}/edit", {"name": "X", "fields": "no equals sign"})
    assert bad.status == 400 and "line 1: &#39;no equals sign&#39; is not KEY=VALUE" in bad.text
    assert subs.show(site.db, "person000@example.org")["name"] == "Ann Smith"  # unchanged


def test_unsubscribe_from_one_list(site: Site) -> None:
    _people(site, 1)
    subs.add_subscriber(site.db, "person000@example.org", "other")
    editor = sign_in(site, "editor")
    person = _id(site, "person000@example.org")
    answer = editor.post(f"/admin/subscribers/{person}/unsubscribe", {"list": "news"})
    assert answer.status == 303
    assert _statuses(site, "person000@example.org") == {"news": "unsubscribed", "other": "subscribed"}
    entry = _audit(site)[0]
    assert (entry.action, entry.detail) == ("console.subscribers.unsubscribe",
                                            "Person000@example.org from news: unsubscribed")
    assert _notice(answer) == "Unsubscribed from news."


def test_forget_after_typing_the_address(site: Site) -> None:
    _people(site, 2)
    editor = sign_in(site, "editor")
    person = _id(site, "person001@example.org")
    editor.post(f"/admin/subscribers/{person}/edit", {"name": "Ann", "fields": ""})  # an audit row naming them
    confirm = editor.get(f"/admin/subscribers/{person}/forget")
    assert confirm.status == 200 and 'data-must-equal="Person001@example.org"' in confirm.text
    wrong = editor.post(f"/admin/subscribers/{person}/forget", {"confirm": "person000@example.org"})
    assert wrong.status == 400 and subs.show(site.db, "person001@example.org")["name"] == "Ann"
    answer = editor.post(f"/admin/subscribers/{person}/forget", {"confirm": "PERSON001@example.org"})
    assert answer.status == 303 and answer.headers["location"] == "/admin/subscribers"
    assert _notice(answer).startswith("Forgotten") and "person001" not in _notice(answer).lower()
    listed = editor.get("/admin/subscribers")
    assert "person001" not in listed.text.lower() and "person000" in listed.text.lower()
    assert editor.get(f"/admin/subscribers/{person}").status == 404
    entries = _audit(site)
    assert entries[0].action == "console.subscribers.forget" and entries[0].detail == f"subscriber #{person}: forgotten"
    assert not any("person001" in e.detail.lower() for e in entries)


def test_a_viewer_sees_no_forms_and_may_post_nothing(site: Site) -> None:
    _people(site, 3)
    viewer = sign_in(site, "viewer")
    person = _id(site, "person001@example.org")
    listing = viewer.get("/admin/subscribers?list=news")
    assert listing.status == 200 and len(_ids(listing.text)) == 3
    assert 'name="ids"' not in listing.text and "Unsubscribe selected" not in listing.text
    assert "Add subscriber" not in listing.text
    page = viewer.get(f"/admin/subscribers/{person}")
    assert page.status == 200 and "Person001@example.org" in page.text
    assert 'method="post" action="/admin/subscribers' not in page.text
    assert "record.json" not in page.text and "Forget" not in page.text
    for path in (f"/admin/subscribers/{person}/record.json", f"/admin/subscribers/{person}/forget",
                 "/admin/subscribers/new"):
        assert viewer.get(path).status == 403, path
    before = subs.show(site.db, "person001@example.org")
    for path, fields in ((f"/admin/subscribers/{person}/edit", {"name": "X", "fields": ""}),
                         (f"/admin/subscribers/{person}/unsubscribe", {"list": "news"}),
                         (f"/admin/subscribers/{person}/forget", {"confirm": "person001@example.org"}),
                         ("/admin/subscribers/bulk", {"action": "unsubscribe", "list": "news", "ids": str(person)}),
                         ("/admin/subscribers/new", {"email": "v@example.org", "list": "news"})):
        assert viewer.post(path, fields).status == 403, path
    assert subs.show(site.db, "person001@example.org") == before
    assert not any(e.action.startswith("console.subscribers") for e in _audit(site))


def test_an_editor_exports_the_record(site: Site) -> None:
    _people(site, 1)
    editor = sign_in(site, "editor")
    person = _id(site, "person000@example.org")
    answer = editor.get(f"/admin/subscribers/{person}/record.json")
    assert answer.status == 200 and "attachment" in answer.headers["content-disposition"]
    body = json.loads(answer.body)
    assert (body["email"], body["lists"][0]["status"], body["deliveries"]) == (
        "Person000@example.org", "subscribed", [])
    assert _audit(site)[0].action == "console.subscribers.export"


def test_posts_without_the_csrf_token_change_nothing(site: Site) -> None:
    _people(site, 2)
    editor = sign_in(site, "editor")
    person = _id(site, "person001@example.org")
    before = subs.show(site.db, "person001@example.org")
    for csrf in ("", "forged"):
        assert editor.post(f"/admin/subscribers/{person}/unsubscribe", {"list": "news"}, csrf=csrf).status == 403
        assert editor.post(f"/admin/subscribers/{person}/forget", {"confirm": "person001@example.org"},
                           csrf=csrf).status == 403
        assert editor.post("/admin/subscribers/bulk", {"action": "unsubscribe", "list": "news", "ids": str(person)},
                           csrf=csrf).status == 403
        assert editor.post("/admin/subscribers/new", {"email": "c@example.org", "list": "news"},
                           csrf=csrf).status == 403
    assert subs.show(site.db, "person001@example.org") == before
    assert subs.find_people(site.db, search="c@").people == []


def test_hostile_values_are_escaped(site: Site) -> None:
    subs.create_list(site.db, "news", HOSTILE)
    subs.add_subscriber(site.db, "h@example.org", "news", name=HOSTILE, fields={"x": HOSTILE})
    editor: Signed = sign_in(site, "editor")
    for path in ("/admin/subscribers", "/admin/subscribers?list=news",
                 f"/admin/subscribers/{_id(site, 'h@example.org')}", f"/admin/subscribers?q={HOSTILE[:5]}"):
        page = editor.get(path)
        assert page.status == 200, path
        assert "<script>alert" not in page.text, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in editor.get("/admin/subscribers").text
