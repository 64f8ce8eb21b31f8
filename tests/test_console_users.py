"""The console's Users and Audit log pages (design §13), admins only, over real HTTP.

`site` (SQLite and PostgreSQL) where the page runs SQL added for it (the last-admin rule, session
counts, the audit log's pages and filters); `lite` for the rest.
"""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest

import subscribers as subs

from .console_support import PASSWORD, Signed, log_in, sign_in
from .test_web import Site, keys, lite, migrated, server, site, web

__all__ = ["keys", "lite", "migrated", "server", "site", "web"]  # fixtures, used by name

NEW_PASSWORD = "another-long-password-7Kp"
SECRET_FIELD = re.compile(r'<input type="text" id="secret"[^>]* value="([^"]+)"')


class _Cells(HTMLParser):
    """The text of each <td> of each table body row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_body = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def table_rows(html: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(html)
    return [[" ".join(cell.split()) for cell in row] for row in parser.rows]


def shown_secret(html: str) -> str:
    found = SECRET_FIELD.search(html)
    assert found, html[:1500]
    return unescape(found.group(1))


def nav_links(html: str) -> list[str]:
    nav = html.split('<nav aria-label="Console">', 1)[1].split("</nav>", 1)[0]
    return re.findall(r">([^<]+)</a>", nav)


def user_path(email: str, action: str = "") -> str:
    return f"/admin/users/{quote(email, safe='')}" + (f"/{action}" if action else "")


def signed_out(who: Signed) -> bool:
    answer = who.get("/admin/")
    return answer.status == 303 and answer.headers["location"].startswith("/admin/login")


def api_lists(s: Site, token: str) -> int:
    return s.http.request("GET", "/api/lists", headers={"Authorization": f"Bearer {token}"}).status


# --- users ------------------------------------------------------------------------------------------------


def test_an_admin_adds_a_user_with_a_typed_password_who_can_then_sign_in(site: Site) -> None:
    admin = sign_in(site, "admin")
    page = admin.get("/admin/users")
    assert page.status == 200 and "<h1>Users</h1>" in page.text and admin.email in page.text
    for label in ('<label for="new-email">Email</label>', '<label for="new-role">Role</label>',
                  '<label for="new-password">Password</label>', f"At least {subs.MIN_PASSWORD} characters"):
        assert label in page.text
    added = admin.post("/admin/users", {"email": "Ada@Example.org", "role": "editor", "password": NEW_PASSWORD})
    assert added.status == 303 and added.headers["location"] == "/admin/users#main"
    assert NEW_PASSWORD not in (added.headers.get("set-cookie") or "")  # the notice names the user only
    assert log_in(site, "ada@example.org", NEW_PASSWORD).status == 303
    rows = table_rows(admin.get("/admin/users").text)
    assert rows[0][0].startswith("ada@example.org") and rows[0][1] == "editor"
    assert rows[0][3] == "1"  # signed in once, just now
    entry = subs.audit_entries(site.db, limit=2)[1]  # before ada's own login
    assert (entry.actor, entry.action, entry.detail) == (f"user:{admin.email}", "users.add", "ada@example.org (editor)")


def test_a_generated_password_is_shown_once_on_the_answer_to_the_post_and_works(lite: Site) -> None:
    admin = sign_in(lite, "admin")
    answer = admin.post("/admin/users", {"email": "bob@example.org", "role": "viewer", "password": ""})
    assert answer.status == 200 and "Shown once" in answer.text
    assert answer.headers["cache-control"] == "no-store" and "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    password = shown_secret(answer.text)
    assert len(password) >= subs.MIN_PASSWORD
    assert log_in(lite, "bob@example.org", password).status == 303
    for path in ("/admin/users", user_path("bob@example.org"), "/admin/audit"):
        assert password not in admin.get(path).text


def test_bad_input_to_the_add_form_is_one_clear_4xx_and_keeps_what_was_typed(lite: Site) -> None:
    admin = sign_in(lite, "admin")
    short = admin.post("/admin/users", {"email": "c@example.org", "role": "viewer", "password": "short"})
    assert short.status == 400 and "at least 12 characters" in short.text
    assert 'value="c@example.org"' in short.text and 'value="short"' not in short.text
    assert admin.post("/admin/users", {"email": "not an address", "role": "viewer", "password": ""}).status == 400
    assert admin.post("/admin/users", {"email": "c@example.org", "role": "root", "password": ""}).status == 400
    again = admin.post("/admin/users", {"email": admin.email.upper(), "role": "viewer", "password": ""})
    assert again.status == 409 and "already a user" in again.text
    assert sorted(u.email for u in subs.list_users(lite.db)) == [admin.email]
    assert admin.get(user_path("nobody@example.org")).status == 404
    assert admin.post(user_path("nobody@example.org", "remove")).status == 404
    assert admin.get("/admin/audit?before=abc").status == 400


def test_a_role_change_takes_effect_on_the_users_next_page(lite: Site) -> None:
    admin, editor = sign_in(lite, "admin"), sign_in(lite, "editor")
    assert "Users" not in nav_links(editor.get("/admin/").text)
    assert editor.get("/admin/users").status == 403
    page = admin.get(user_path(editor.email))
    assert page.status == 200 and '<option value="editor" selected>' in page.text
    answer = admin.post(user_path(editor.email, "role"), {"role": "admin"})
    assert answer.status == 303 and answer.headers["location"] == user_path(editor.email).replace("%40", "@")
    assert {"Users", "Audit log"} <= set(nav_links(editor.get("/admin/").text))
    assert editor.get("/admin/users").status == 200
    assert admin.post(user_path(editor.email, "role"), {"role": "viewer"}).status == 303
    assert "Import" not in nav_links(editor.get("/admin/").text) and editor.get("/admin/users").status == 403
    assert admin.post(user_path(editor.email, "role"), {"role": "root"}).status == 400
    assert subs.get_user(lite.db, editor.email).role == "viewer"
    assert [(e.actor, e.action) for e in subs.audit_entries(lite.db, limit=2)] == [
        (f"user:{admin.email}", "users.role"), (f"user:{admin.email}", "users.role")]


def test_resetting_a_password_ends_that_users_sessions(site: Site) -> None:
    admin, target = sign_in(site, "admin"), sign_in(site, "sender")
    bystander = sign_in(site, "viewer")
    assert admin.post(user_path(target.email, "password"), {"password": "short"}).status == 400
    assert not signed_out(target)
    answer = admin.post(user_path(target.email, "password"), {"password": NEW_PASSWORD})
    assert answer.status == 303
    assert signed_out(target) and not signed_out(bystander) and not signed_out(admin)
    assert log_in(site, target.email, PASSWORD).status == 400
    assert log_in(site, target.email, NEW_PASSWORD).status == 303
    generated = admin.post(user_path(target.email, "password"), {"password": ""})
    assert generated.status == 200 and "1 session ended" in generated.text
    assert log_in(site, target.email, shown_secret(generated.text)).status == 303


def test_removing_a_user_asks_first_then_ends_their_sessions(site: Site) -> None:
    admin, target = sign_in(site, "admin"), sign_in(site, "editor")
    confirm = admin.get(user_path(target.email, "remove"))
    assert confirm.status == 200 and f"Remove {target.email}</button>" in confirm.text
    assert not signed_out(target)  # asking changed nothing
    answer = admin.post(user_path(target.email, "remove"))
    assert answer.status == 303 and answer.headers["location"] == "/admin/users"
    assert signed_out(target) and not signed_out(admin)
    assert target.email not in [u.email for u in subs.list_users(site.db)]
    assert log_in(site, target.email).status == 400
    assert target.email not in admin.get("/admin/users").text.split("Audit log")[-1]


def test_the_last_admin_cannot_remove_or_demote_themselves(site: Site) -> None:
    admin = sign_in(site, "admin")
    demoted = admin.post(user_path(admin.email, "role"), {"role": "editor"})
    assert demoted.status == 409 and "only admin" in demoted.text
    removed = admin.post(user_path(admin.email, "remove"))
    assert removed.status == 409 and "only admin" in removed.text
    assert subs.get_user(site.db, admin.email).role == "admin" and not signed_out(admin)
    assert admin.post(user_path(admin.email, "role"), {"role": "admin"}).status == 303  # no change is fine
    # With a second admin, either may step down; then the other is the last one.
    other = sign_in(site, "admin")
    answer = admin.post(user_path(admin.email, "role"), {"role": "viewer"})
    assert answer.status == 303 and answer.headers["location"] == "/admin/"
    assert admin.get("/admin/users").status == 403
    assert other.post(user_path(other.email, "remove")).status == 409
    assert other.post(user_path(admin.email, "remove")).status == 303


def test_the_library_keeps_an_admin_for_every_caller_but_the_shell(site: Site) -> None:
    subs.add_user(site.db, "a@example.org", "admin", PASSWORD)
    subs.add_user(site.db, "b@example.org", "editor", PASSWORD)
    me = "user:a@example.org"
    with pytest.raises(subs.LastAdmin) as refused:
        subs.set_role(site.db, "a@example.org", "viewer", actor=me)
    assert isinstance(refused.value, subs.NotAllowed) and isinstance(refused.value, subs.AccountsError)
    with pytest.raises(subs.LastAdmin):
        subs.remove_user(site.db, "A@example.org", actor=me)
    assert subs.get_user(site.db, "a@example.org").role == "admin"
    subs.set_role(site.db, "b@example.org", "admin", actor=me)
    subs.set_role(site.db, "a@example.org", "viewer", actor=me)
    with pytest.raises(subs.LastAdmin):
        subs.remove_user(site.db, "b@example.org", actor="user:b@example.org")
    subs.remove_user(site.db, "b@example.org", actor="cli")  # `users rm` from a shell, which can add another
    assert [(u.email, u.role) for u in subs.list_users(site.db)] == [("a@example.org", "viewer")]


# --- API tokens -------------------------------------------------------------------------------------------


def test_a_token_is_shown_once_works_on_the_api_and_stops_when_revoked(lite: Site) -> None:
    admin = sign_in(lite, "admin")
    made = admin.post("/admin/tokens", {"name": "website form", "role": "editor"})
    assert made.status == 200 and "Shown once" in made.text and made.headers["cache-control"] == "no-store"
    token = shown_secret(made.text)
    assert api_lists(lite, token) == 200
    page = admin.get("/admin/users")
    assert token not in page.text
    name, role, _, used, _ = table_rows(page.text)[-1]
    assert name.startswith("website form") and role == "editor" and used != "never"  # used just now
    again = admin.post("/admin/tokens", {"name": "website form", "role": "viewer"})
    assert again.status == 409 and "already a token" in again.text
    assert admin.post("/admin/tokens", {"name": "", "role": "viewer"}).status == 400
    revoked = admin.post("/admin/tokens/revoke", {"name": "website form"})
    assert revoked.status == 303
    assert api_lists(lite, token) == 401
    assert subs.list_tokens(lite.db) == []
    assert admin.post("/admin/tokens/revoke", {"name": "website form"}).status == 400


# --- the audit log ----------------------------------------------------------------------------------------


def test_the_audit_log_shows_each_action_by_the_admin_and_no_secret(lite: Site) -> None:
    admin, target = sign_in(lite, "admin"), sign_in(lite, "viewer")
    admin.post("/admin/users", {"email": "new@example.org", "role": "viewer", "password": NEW_PASSWORD})
    generated = shown_secret(admin.post("/admin/users", {"email": "gen@example.org", "role": "viewer"}).text)
    admin.post(user_path(target.email, "role"), {"role": "editor"})
    admin.post(user_path(target.email, "password"), {"password": NEW_PASSWORD + "x"})
    admin.post(user_path("gen@example.org", "remove"))
    token = shown_secret(admin.post("/admin/tokens", {"name": "ci", "role": "viewer"}).text)
    admin.post("/admin/tokens/revoke", {"name": "ci"})
    page = admin.get("/admin/audit")
    assert page.status == 200 and "<h1>Audit log</h1>" in page.text and "<title>Audit log ·" in page.text
    shown = [row[1:] for row in table_rows(page.text)]
    me = f"user:{admin.email}"
    assert shown[:7] == [
        [me, "tokens.revoke", "ci"], [me, "tokens.create", "ci (viewer)"], [me, "users.rm", "gen@example.org"],
        [me, "users.passwd", target.email], [me, "users.role", f"{target.email}: viewer -> editor"],
        [me, "users.add", "gen@example.org (viewer)"], [me, "users.add", "new@example.org (viewer)"]]
    details = " ".join(e.detail for e in subs.audit_entries(lite.db, limit=1000))
    for secret in (NEW_PASSWORD, generated, token, PASSWORD):
        assert secret not in details and secret not in page.text
    only = admin.get(f"/admin/audit?action=tokens.&actor={quote(me)}")
    assert [row[2] for row in table_rows(only.text)] == ["tokens.revoke", "tokens.create"]
    bare = admin.get(f"/admin/audit?actor={quote(admin.email.upper())}")  # an address alone is a user's
    assert {row[1] for row in table_rows(bare.text)} == {me} and len(table_rows(bare.text)) == 1 + 7  # sign-in, actions


def test_the_audit_log_pages_older_entries_by_id(site: Site) -> None:
    admin = sign_in(site, "admin")
    for n in range(230):
        subs.audit(site.db, "cli" if n % 2 else "token:ci", f"test.{n}", f"entry {n}")
    seen: list[str] = []
    path = "/admin/audit"
    for _ in range(4):
        page = admin.get(path)
        assert page.status == 200
        seen += [row[3] for row in table_rows(page.text)]
        older = re.search(r'href="(/admin/audit\?before=\d+)"[^>]*>Older</a>', page.text)
        if older is None:
            break
        path = unescape(older.group(1))
    expected = [f"entry {n}" for n in reversed(range(230))]
    assert [d for d in seen if d.startswith("entry ")] == expected  # newest first, none twice, none missed
    assert len(seen) == 230 + 2  # and the admin's own sign-in, first to last
    assert older is None
    evens = admin.get("/admin/audit?actor=token%3Aci")
    assert [row[3] for row in table_rows(evens.text)][:3] == ["entry 228", "entry 226", "entry 224"]
    assert len(table_rows(evens.text)) == 100 and "Older" in evens.text
    prefix = admin.get("/admin/audit?action=test.22")
    assert [row[3] for row in table_rows(prefix.text)] == [f"entry {n}" for n in (229, 228, 227, 226, 225, 224,
                                                                                 223, 222, 221, 220, 22)]


def test_a_filtered_audit_page_looks_through_a_bounded_stretch_of_the_log(site: Site) -> None:
    for n in range(30):
        subs.audit(site.db, "user:rare@example.org" if n in (2, 25) else "cli", "x_y" if n == 25 else "xzy", str(n))
    first = subs.audit_page(site.db, actor="user:rare@example.org", window=10)
    assert [e.detail for e in first.entries] == ["25"] and first.older is not None
    second = subs.audit_page(site.db, actor="user:rare@example.org", window=10, before=first.older)
    assert second.entries == [] and second.older is not None
    third = subs.audit_page(site.db, actor="user:rare@example.org", window=10, before=second.older)
    assert [e.detail for e in third.entries] == ["2"] and third.older is None
    # The prefix is a prefix, not a LIKE pattern: "_" matches only itself.
    assert [e.detail for e in subs.audit_page(site.db, action="x_").entries] == ["25"]
    whole = subs.audit_page(site.db, limit=7)
    assert [e.detail for e in whole.entries] == [str(n) for n in range(29, 22, -1)] and whole.older is not None


# --- who may, CSRF, escaping ------------------------------------------------------------------------------

GETS = ["/admin/users", "/admin/audit", "/admin/audit?before=5", user_path("x@example.org"),
        user_path("x@example.org", "remove")]
POSTS = [("/admin/users", {"email": "new@example.org", "role": "admin", "password": ""}),
         ("/admin/tokens", {"name": "mine", "role": "admin"}), ("/admin/tokens/revoke", {"name": "ci"}),
         (user_path("x@example.org", "role"), {"role": "viewer"}),
         (user_path("x@example.org", "password"), {"password": ""}), (user_path("x@example.org", "remove"), {})]


@pytest.mark.parametrize("role", ["viewer", "editor", "sender"])
def test_only_admins_see_or_use_the_users_and_audit_pages(lite: Site, role: str) -> None:
    subs.add_user(lite.db, "x@example.org", "admin", PASSWORD)
    subs.create_token(lite.db, "ci", "viewer")
    who = sign_in(lite, role)
    assert not {"Users", "Audit log"} & set(nav_links(who.get("/admin/").text))
    for path in GETS:
        assert who.get(path).status == 403, path
    for path, fields in POSTS:
        answer = who.post(path, fields)
        assert answer.status == 403 and "Not allowed" in answer.text, path
    assert sorted((u.email, u.role) for u in subs.list_users(lite.db)) == sorted(
        [(who.email, role), ("x@example.org", "admin")])
    assert [t.name for t in subs.list_tokens(lite.db)] == ["ci"]
    assert log_in(lite, "x@example.org").status == 303  # the password was not reset


def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(lite: Site) -> None:
    admin = sign_in(lite, "admin")
    subs.add_user(lite.db, "x@example.org", "viewer", PASSWORD)
    subs.create_token(lite.db, "ci", "viewer")
    before = subs.audit_entries(lite.db, limit=1000)
    for path, fields in POSTS:
        for csrf in ("", "forged"):
            assert admin.post(path, fields, csrf=csrf).status == 403, path
    assert subs.audit_entries(lite.db, limit=1000) == before
    assert subs.get_user(lite.db, "x@example.org").role == "viewer" and len(subs.list_users(lite.db)) == 2
    assert [t.name for t in subs.list_tokens(lite.db)] == ["ci"]


def test_hostile_names_and_log_entries_are_escaped(lite: Site) -> None:
    admin = sign_in(lite, "admin")
    hostile = "<script>alert(1)</script>"
    subs.add_user(lite.db, "o'neil&co@example.org", "viewer", PASSWORD)
    made = admin.post("/admin/tokens", {"name": hostile, "role": "viewer"})
    assert made.status == 200 and hostile not in made.text and "&lt;script&gt;" in made.text
    subs.audit(lite.db, f"user:{hostile}", f"<img src=x onerror=alert(2)>{hostile}", f"\"'>{hostile}")
    for path in ("/admin/users", "/admin/audit", "/admin/audit?actor=" + quote(f"user:{hostile}"),
                 user_path("o'neil&co@example.org"), user_path("o'neil&co@example.org", "remove")):
        page = admin.get(path)
        assert page.status == 200, path
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
    users = admin.get("/admin/users").text
    assert "o&#39;neil&amp;co@example.org" in users and 'href="/admin/users/o%27neil%26co%40example.org"' in users
    audit = admin.get("/admin/audit").text
    assert "&lt;img src=x onerror=alert(2)&gt;" in audit and "&#34;&#39;&gt;&lt;script&gt;" in audit
    removed = admin.post(user_path("o'neil&co@example.org", "remove"))
    assert removed.status == 303 and len(subs.list_users(lite.db)) == 1
