"""The console's Suppressions pages (design §13): suppressed addresses a page at a time, searched; lifting
one that is not a complaint, with a reason that is kept and nobody re-subscribed; roles and CSRF; over real
HTTP on SQLite and PostgreSQL. And the library's rule itself (subscribers.lift_suppression).
"""
from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from sqlalchemy import select

import subscribers as subs
from subscribers.schema import memberships, suppressions
from subscribers.suppression_lifts import suppression_lifts

from .console_support import sign_in
from .test_web import Site, keys, lite, migrated, server, site, status, web

__all__ = ["keys", "lite", "migrated", "server", "site", "web"]  # fixtures, used by name

BOUNCE = "bounce: Permanent/General (status 5.1.1)"
ROW = re.compile(r'<td class="email"><a href="/admin/suppressions/(\d+)">([^<]*)</a></td>')


def visible(html: str) -> str:
    found = re.search(r"<main[^>]*>(.*)</main>", html, re.S)
    assert found, html[:500]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def shown(html: str) -> list[str]:
    """The addresses of the page's table, in order."""
    return [unescape(address) for _, address in ROW.findall(html)]


def suppress(db: Any, email: str, reason: str = BOUNCE, source: str = "ses") -> int:
    with db.begin() as conn:
        subs.suppress_address(conn, subs.normalise(email), reason, source)
        return int(conn.execute(select(suppressions.c.id).where(
            suppressions.c.email_hash == subs.normalise(email).hash)).scalar_one())


def state(db: Any) -> dict[str, Any]:
    with db.begin() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in (suppressions, memberships, suppression_lifts)}


def people(db: Any) -> dict[str, int]:
    """Suppressions of a list's people in each state: left, still subscribed, a complaint, forgotten."""
    subs.create_list(db, "news", "Example News")
    for email in ("left@example.org", "stayed@example.org", "angry@example.org", "gone@example.org"):
        subs.add_subscriber(db, email, "news")
    subs.unsubscribe(db, "left@example.org", "news")
    ids = {"left": suppress(db, "left@example.org"), "stayed": suppress(db, "stayed@example.org"),
           "angry": suppress(db, "angry@example.org", "complaint (abuse)")}
    with db.begin() as conn:  # as SES's complaint does: the person leaves every list too
        subs.suppress_address(conn, subs.normalise("angry@example.org"), "complaint (abuse)", "ses", leave_lists=True)
    subs.forget(db, "gone@example.org")
    with db.begin() as conn:
        ids["gone"] = conn.execute(select(suppressions.c.id).where(suppressions.c.email.is_(None))).scalar_one()
    return ids


# --- seeing ----------------------------------------------------------------------------------------------


def test_the_page_shows_each_suppression_with_its_reason_and_date(site: Site) -> None:
    ids = people(site.db)
    me = sign_in(site, "viewer")
    page = me.get("/admin/suppressions")
    assert page.status == 200
    assert shown(page.text) == ["(forgotten)", "angry@example.org", "stayed@example.org", "left@example.org"]
    text = visible(page.text)
    assert "Suppressed 4" in text and "Lifted 0" in text
    assert f"left@example.org {BOUNCE} ses" in text
    assert "angry@example.org complaint complaint (abuse) ses" in text
    assert "(forgotten) forgotten at the subscriber's request admin" in text
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC", text)  # the date it was suppressed
    assert "No suppression has been lifted." in text

    one = me.get(f"/admin/suppressions/{ids['gone']}")
    assert one.status == 200
    assert "(forgotten): only a hash is kept" in visible(one.text)
    assert subs.normalise("gone@example.org").hash in one.text
    assert "the person asked to be forgotten" in visible(one.text)


def test_paging_newest_first_across_120_suppressions(site: Site) -> None:
    with site.db.begin() as conn:
        for i in range(120):
            subs.suppress_address(conn, subs.normalise(f"person{i:03d}@example.org"), BOUNCE, "ses")
    me = sign_in(site, "viewer")
    seen, url, pages = [], "/admin/suppressions", []
    while url:
        page = me.get(url)
        assert page.status == 200
        pages.append(page.text)
        seen += shown(page.text)
        older = re.search(r'href="(/admin/suppressions\?before=\d+)">Older', page.text)
        url = unescape(older.group(1)) if older else ""
    assert [len(shown(p)) for p in pages] == [50, 50, 20]
    assert seen == [f"person{i:03d}@example.org" for i in range(119, -1, -1)]  # each once, newest first
    assert "Newer" not in pages[0] and "Suppressed 120" in visible(pages[2])

    newer = re.search(r'href="(/admin/suppressions\?after=\d+)">← Newer', pages[2])
    assert newer
    back = me.get(unescape(newer.group(1)))
    assert shown(back.text) == seen[50:100]  # the page before the last, again
    newest = re.search(r'href="(/admin/suppressions\?after=\d+)">← Newer', back.text)
    assert newest and shown(me.get(unescape(newest.group(1))).text) == seen[:50]


def test_search_by_address_or_its_start(site: Site) -> None:
    with site.db.begin() as conn:
        for i in range(30):
            subs.suppress_address(conn, subs.normalise(f"user{i:02d}@example.org"), BOUNCE, "ses")
        subs.suppress_address(conn, subs.normalise("Other.Person@Example.net"), BOUNCE, "ses")
    subs.forget(site.db, "hidden@example.org")
    me = sign_in(site, "viewer")

    assert shown(me.get("/admin/suppressions?q=user1").text) == [f"user{i:02d}@example.org" for i in range(19, 9, -1)]
    assert shown(me.get("/admin/suppressions?q=OTHER.").text) == ["Other.Person@example.net"]
    assert shown(me.get("/admin/suppressions?q=%20other.person%40EXAMPLE.NET%20").text) == ["Other.Person@example.net"]
    assert shown(me.get("/admin/suppressions?q=hidden%40example.org").text) == ["(forgotten)"]  # by its hash
    assert shown(me.get("/admin/suppressions?q=hidden").text) == []  # no address is kept to start with it
    page = me.get("/admin/suppressions?q=user")
    assert len(shown(page.text)) == 30 and 'value="user"' in page.text
    none = me.get("/admin/suppressions?q=%3Cb%3Enobody")
    assert none.status == 200 and "No suppressed address starts with “<b>nobody”." in visible(none.text)
    assert "<b>nobody" not in none.text


@pytest.mark.parametrize("query", ["before=x", "after=-1", "before=99999999999", "before=1e3"])
def test_a_bad_page_link_is_400(lite: Site, query: str) -> None:
    answer = sign_in(lite, "viewer").get(f"/admin/suppressions?{query}")
    assert answer.status == 400 and "must be a whole number" in visible(answer.text)


@pytest.mark.parametrize("path", ["/admin/suppressions/999", "/admin/suppressions/x",
                                  "/admin/suppressions/99999999999"])
def test_an_unknown_suppression_is_404(lite: Site, path: str) -> None:
    me = sign_in(lite, "editor")
    assert me.get(path).status == 404
    assert me.post(f"{path}/lift", {"reason": "x"}).status == 404


# --- lifting ---------------------------------------------------------------------------------------------


def test_lifting_a_bounce_keeps_the_reason_and_subscribes_nobody(site: Site) -> None:
    ids = people(site.db)
    me = sign_in(site, "editor")
    page = me.get(f"/admin/suppressions/{ids['left']}")
    assert f'action="/admin/suppressions/{ids["left"]}/lift"' in page.text
    assert '<label for="reason">Reason</label>' in page.text
    before = state(site.db)

    answer = me.post(f"/admin/suppressions/{ids['left']}/lift", {"reason": "Mailbox was full;\n  works again"})
    assert answer.status == 303 and answer.headers["location"] == "/admin/suppressions"
    after = state(site.db)
    assert [r[0] for r in after["suppressions"]] == [ids["stayed"], ids["angry"], ids["gone"]]
    assert after["memberships"] == before["memberships"]  # nobody's lists changed
    assert status(site.db, "left@example.org", "news") == "unsubscribed"
    assert subs.show(site.db, "left@example.org")["suppressed"] is False
    [kept] = after["suppression_lifts"]
    row = dict(zip([c.name for c in suppression_lifts.columns], kept, strict=True))
    assert row["reason"] == "Mailbox was full; works again" and row["actor"] == f"user:{me.email}"
    assert row["email_hash"] == subs.normalise("left@example.org").hash and row["suppressed_reason"] == BOUNCE
    [entry] = [e for e in subs.audit_entries(site.db) if e.action == "console.suppressions.lift"]
    assert entry.detail == f"left@example.org: was {BOUNCE!r}; reason 'Mailbox was full; works again'"

    text = visible(me.get("/admin/suppressions").text)
    assert "Lifted 1" in text and "Suppressed 3" in text
    assert "left@example.org" in text.split("Lifted")[-1]
    assert f"Mailbox was full; works again {BOUNCE} (ses), since" in text

    # One still subscribed when they bounced stays subscribed: the suppression alone goes.
    assert me.post(f"/admin/suppressions/{ids['stayed']}/lift", {"reason": "fixed"}).status == 303
    assert status(site.db, "stayed@example.org", "news") == "subscribed"
    assert me.post(f"/admin/suppressions/{ids['stayed']}/lift", {"reason": "again"}).status == 404


@pytest.mark.parametrize("who", ["angry", "gone"])
def test_a_complaint_or_a_forgotten_person_is_never_lifted(site: Site, who: str) -> None:
    ids = people(site.db)
    me = sign_in(site, "admin")
    page = me.get(f"/admin/suppressions/{ids[who]}")
    assert "/lift" not in page.text and "It stays:" in visible(page.text)
    assert f'href="/admin/suppressions/{ids[who]}#lift">Lift' not in me.get("/admin/suppressions").text
    before = state(site.db)
    answer = me.post(f"/admin/suppressions/{ids[who]}/lift", {"reason": "they asked us to"})
    assert answer.status == 409
    assert "stays suppressed" in visible(answer.text)
    assert state(site.db) == before
    assert not [e for e in subs.audit_entries(site.db) if e.action == "console.suppressions.lift"]


@pytest.mark.parametrize(("reason", "message"), [("", "give the reason"), ("  \n ", "give the reason"),
                                                 ("x" * 1001, "at most 1000 characters")])
def test_a_lift_needs_a_reason(lite: Site, reason: str, message: str) -> None:
    ids = people(lite.db)
    me = sign_in(lite, "editor")
    before = state(lite.db)
    answer = me.post(f"/admin/suppressions/{ids['left']}/lift", {"reason": reason})
    assert answer.status == 400 and message in visible(answer.text)
    assert state(lite.db) == before


def test_the_library_refuses_a_complaint_whatever_its_origin(site: Site) -> None:
    suppress(site.db, "ses@example.org", "complaint", "ses")
    suppress(site.db, "sendy@example.org", "marked as spam in Sendy", "import")
    suppress(site.db, "cleaned@example.org", "cleaned in Mailchimp (bounced)", "import")
    before = state(site.db)
    for email in ("ses@example.org", "SENDY@example.org"):
        with pytest.raises(subs.NotAllowed, match="a complaint is never lifted"):
            subs.lift_suppression(site.db, email, "please", "cli")
    assert state(site.db) == before
    with pytest.raises(subs.SubscriberNotFound, match="nobody@example.org is not suppressed"):
        subs.lift_suppression(site.db, "nobody@example.org", "please", "cli")
    lifted = subs.lift_suppression(site.db, "Cleaned@Example.org", "re-imported by mistake", "cli")
    assert lifted.suppressed_reason == "cleaned in Mailchimp (bounced)" and lifted.actor == "cli"


def test_forget_erases_the_address_from_the_lifts_and_keeps_the_hash(site: Site) -> None:
    suppress(site.db, "jo@example.org")
    subs.lift_suppression(site.db, "jo@example.org", "jo@example.org phoned: the mailbox works again", "cli")
    subs.forget(site.db, "Jo@Example.org")
    [row] = state(site.db)["suppression_lifts"]
    text = " ".join(str(v) for v in row).lower()
    assert "jo@example.org" not in text
    assert subs.normalise("jo@example.org").hash in text and "[forgotten] phoned" in text
    assert "(forgotten)" in visible(sign_in(site, "viewer").get("/admin/suppressions").text).split("Lifted")[-1]


# --- who may ---------------------------------------------------------------------------------------------


def test_a_viewer_sees_no_lift_and_its_post_is_403(site: Site) -> None:
    ids = people(site.db)
    me = sign_in(site, "viewer")
    for path in ("/admin/suppressions", f"/admin/suppressions/{ids['left']}"):
        page = me.get(path)
        assert page.status == 200
        assert "/lift" not in page.text and "Lift…" not in page.text and 'name="reason"' not in page.text
    before = state(site.db)
    assert me.post(f"/admin/suppressions/{ids['left']}/lift", {"reason": "x"}).status == 403
    assert state(site.db) == before


@pytest.mark.parametrize("csrf", ["", "forged"])
def test_a_lift_without_the_csrf_token_is_403_and_changes_nothing(lite: Site, csrf: str) -> None:
    ids = people(lite.db)
    me = sign_in(lite, "admin")
    before = state(lite.db)
    answer = me.post(f"/admin/suppressions/{ids['left']}/lift", {"reason": "x"}, csrf=csrf)
    assert answer.status == 403 and "This form has expired" in answer.text
    assert state(lite.db) == before
