"""Signing in to the console, sessions, CSRF and roles (design §13), over real HTTP on both databases."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlencode

import pytest

import subscribers as subs

from .console_support import PASSWORD, log_in, sign_in
from .test_web import FORM, Answer, Site, _plug, keys, lite, migrated, server, site, web

__all__ = ["keys", "lite", "migrated", "server", "site", "web"]  # fixtures, used by name


def test_signed_out_pages_redirect_to_the_login_form(lite: Site) -> None:
    assert lite.http.get("/admin/").headers["location"] == "/admin/login"
    answer = lite.http.get("/admin/?since=2")
    assert answer.status == 303
    assert answer.headers["location"] == "/admin/login?next=%2Fadmin%2F%3Fsince%3D2"
    form = lite.http.get("/admin/login")
    assert form.status == 200
    for text in ('<label for="email">Email</label>', '<label for="password">Password</label>', ">Sign in</button>"):
        assert text in form.text


def test_sign_in_sign_out(site: Site) -> None:
    me = sign_in(site, "viewer")
    page = me.get("/admin/")
    assert page.status == 200 and "Dashboard" in page.text and "Sign out" in page.text
    assert me.post("/admin/logout").status == 303
    assert me.get("/admin/").status == 303  # that session is over


def test_a_wrong_password_and_an_unknown_email_get_one_answer(lite: Site) -> None:
    subs.add_user(lite.db, "a@example.org", "admin", PASSWORD)
    wrong = log_in(lite, "a@example.org", "not-the-password")
    unknown = log_in(lite, "nobody@example.org", PASSWORD)
    assert wrong.status == unknown.status == 400
    assert "Wrong email or password." in wrong.text and "Wrong email or password." in unknown.text
    assert "set-cookie" not in {k.lower() for k in wrong.headers.keys()}


@pytest.mark.parametrize("csrf", ["", "forged"])
def test_a_post_without_the_sessions_csrf_token_is_403_and_signs_nobody_out(lite: Site, csrf: str) -> None:
    me = sign_in(lite, "viewer")
    assert me.post("/admin/logout", csrf=csrf).status == 403
    assert me.get("/admin/").status == 200


def test_console_pages_carry_a_strict_policy(lite: Site) -> None:
    me = sign_in(lite, "viewer")
    for answer in (lite.http.get("/admin/login"), me.get("/admin/")):
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert "<script>" not in answer.text and " style=" not in answer.text  # nothing inline


def _cookie_header(answer: Answer) -> str:
    return next(h for h in answer.headers.get_all("set-cookie") or [] if h.startswith("newsletter_session="))


def test_the_session_cookie_is_httponly_lax_and_secure_only_over_https(lite: Site, server: Any, web: Any) -> None:
    subs.add_user(lite.db, "a@example.org", "viewer", PASSWORD)
    plain = _cookie_header(log_in(lite, "a@example.org")).lower()
    assert "httponly" in plain and "samesite=lax" in plain and "secure" not in plain
    secure = _plug(*server, lite.db, lite.settings.database_url, web, base_url="https://news.example.org")
    cookie = _cookie_header(log_in(secure, "a@example.org")).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "; secure" in cookie


def test_ten_failures_lock_the_account_with_429_even_for_the_right_password(lite: Site) -> None:
    subs.add_user(lite.db, "a@example.org", "admin", PASSWORD)
    for _ in range(10):
        assert log_in(lite, "a@example.org", "wrong-password-123").status == 400
    locked = log_in(lite, "a@example.org")
    assert locked.status == 429 and int(locked.headers["retry-after"]) > 0
    assert "try again" in locked.text
    assert not [h for h in locked.headers.get_all("set-cookie") or [] if h.startswith("newsletter_session=")]


def test_removing_a_user_or_their_password_ends_their_sessions(site: Site) -> None:
    gone, reset = sign_in(site, "editor"), sign_in(site, "editor")
    subs.remove_user(site.db, gone.email)
    subs.set_password(site.db, reset.email, "another-password-42")
    assert gone.get("/admin/").status == 303
    assert reset.get("/admin/").status == 303
    assert log_in(site, reset.email, "another-password-42").status == 303


def test_an_idle_session_ends(lite: Site) -> None:
    from sqlalchemy import update

    from subscribers.accounts import user_sessions
    me = sign_in(lite, "viewer")
    hours = lite.settings.session_hours
    with lite.db.begin() as conn:
        conn.execute(update(user_sessions).values(
            last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours, minutes=1)))
    assert me.get("/admin/").status == 303


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "/archive/"])
def test_after_signing_in_only_a_console_page_is_a_destination(lite: Site, target: str) -> None:
    subs.add_user(lite.db, "a@example.org", "viewer", PASSWORD)
    body = urlencode({"email": "a@example.org", "password": PASSWORD, "next": target}).encode()
    answer = lite.http.request("POST", "/admin/login", body, FORM)
    assert answer.status == 303 and answer.headers["location"] == "/admin/"


def test_a_post_from_another_site_is_refused_even_with_the_token(lite: Site) -> None:
    me = sign_in(lite, "viewer")
    body = urlencode({"csrf": me.csrf}).encode()
    answer = lite.http.request("POST", "/admin/logout", body, {
        **FORM, "Cookie": f"newsletter_session={me.cookie}", "Origin": "https://evil.example"})
    assert answer.status == 403
    assert me.get("/admin/").status == 200


def test_a_role_sees_only_the_navigation_it_may_use(lite: Site) -> None:
    links = {role: sign_in(lite, role).get("/admin/").text for role in subs.ROLES}
    for role, page in links.items():
        assert ('href="/admin/users"' in page) == (role == "admin")
        assert ('href="/admin/audit"' in page) == (role == "admin")
        assert ('href="/admin/import"' in page) == (role != "viewer")
        for text in ("Dashboard", "Lists", "Subscribers", "Issues", "Sends", "Suppressions", "Sign out"):
            assert f">{text}<" in page


def test_sign_in_and_out_are_in_the_audit_log(lite: Site) -> None:
    me = sign_in(lite, "viewer")
    me.post("/admin/logout")
    actions = [(e.actor, e.action) for e in subs.audit_entries(lite.db)]
    assert (f"user:{me.email}", "login") in actions and (f"user:{me.email}", "logout") in actions


def _console_routes(site: Site) -> list[tuple[str, set[str]]]:
    """Every console route: its path with sample parameters, and its methods."""
    from starlette.routing import Mount
    app = site.switch.app
    samples = {"name": "news", "id": "1", "ref": "1", "email": "someone@example.org", "slug": "2021-01",
               "token": "x", "file": "2021-01"}
    out = []
    for mount in app.routes:
        if isinstance(mount, Mount) and mount.path == "/admin":
            for route in mount.routes:
                path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: samples.get(m.group(1), "1"), route.path)
                out.append((f"/admin{path}", set(route.methods or ())))
    return out


def test_every_console_route_is_closed_to_strangers(lite: Site) -> None:
    routes = _console_routes(lite)
    assert len(routes) > 40
    for path, methods in routes:
        if path in ("/admin/login",):
            continue
        if "GET" in methods:
            answer = lite.http.get(path)
            assert answer.status == 303 and answer.headers["location"].startswith("/admin/login"), path
        if "POST" in methods:
            answer = lite.http.request("POST", path, b"csrf=x", FORM)
            assert answer.status == 403, path


def test_a_viewer_may_post_nothing_but_sign_out(lite: Site) -> None:
    subs.create_list(lite.db, "news")
    me = sign_in(lite, "viewer")
    for path, methods in _console_routes(lite):
        if "POST" in methods and path not in ("/admin/login", "/admin/logout"):
            answer = me.post(path, {"confirm": "news", "name": "x", "title": "x", "reason": "x"})
            assert answer.status == 403, (path, answer.status)
    assert [row["name"] for row in subs.list_lists(lite.db)] == ["news"]


def test_a_form_that_takes_no_file_refuses_one_and_any_large_body(lite: Site) -> None:
    me = sign_in(lite, "editor")
    sent = me.upload("/admin/lists", {"name": "news", "title": "News"}, "file", "big.csv", b"email\n" * 10)
    assert sent.status == 400 and subs.list_lists(lite.db) == []
    big = me.post("/admin/lists", {"name": "news", "title": "x" * (1024 * 1024)})
    assert big.status == 413 and subs.list_lists(lite.db) == []
    assert me.post("/admin/lists", {"name": "news", "title": "News"}).status == 303  # the form itself works
