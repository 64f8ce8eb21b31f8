"""Signing in to the console, sessions, CSRF and roles (design §13), over real HTTP on both databases."""
from __future__ import annotations

import pytest

import subscribers as subs

from .console_support import PASSWORD, log_in, sign_in
from .test_web import Site, keys, lite, migrated, server, site, web

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
