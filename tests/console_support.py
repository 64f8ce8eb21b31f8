"""Signing in to the console over real HTTP, for the console's tests (design §13).

`sign_in(site, role)` makes a user of that role, posts the login form as a browser
would, keeps the session cookie, and reads the CSRF token from a page; `Signed`
then GETs and POSTs (urlencoded forms, or multipart with a file) with both.
"""
from __future__ import annotations

import re
import secrets
import uuid
from html import unescape
from typing import Any
from urllib.parse import urlencode

import subscribers as subs

from .test_web import FORM, Answer, Site

PASSWORD = "console-test-password-9Qx"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Signed:
    """A signed-in browser: its session cookie and CSRF token, over the site's HTTP client."""

    def __init__(self, site: Site, email: str, cookie: str, csrf: str):
        self.site, self.email, self.cookie, self.csrf = site, email, cookie, csrf

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Cookie": f"newsletter_session={self.cookie}", **(extra or {})}

    def get(self, path: str) -> Answer:
        return self.site.http.request("GET", path, headers=self._headers())

    def post(self, path: str, fields: dict[str, Any] | list[tuple[str, str]] | None = None, *,
             csrf: str | None = None) -> Answer:
        """A form POST; the session's CSRF token unless `csrf` is given ('' sends none)."""
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields or [])
        token = self.csrf if csrf is None else csrf
        if token:
            pairs.append(("csrf", token))
        return self.site.http.request("POST", path, urlencode(pairs).encode(), self._headers(FORM))

    def upload(self, path: str, fields: dict[str, str], file_field: str, filename: str, data: bytes, *,
               csrf: str | None = None) -> Answer:
        """A multipart/form-data POST with one file, as a browser sends an <input type=file>."""
        boundary = uuid.uuid4().hex
        token = self.csrf if csrf is None else csrf
        parts = [*fields.items(), *([("csrf", token)] if token else [])]
        body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                        for k, v in parts)
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                 f"Content-Type: text/csv\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return self.site.http.request("POST", path, body,
                                      self._headers({"Content-Type": f"multipart/form-data; boundary={boundary}"}))


def session_cookie(answer: Answer) -> str:
    for header in answer.headers.get_all("set-cookie") or []:
        found = re.match(r"newsletter_session=([^;]*)", header)
        if found and found.group(1):
            return found.group(1)
    raise AssertionError(f"no session cookie in the answer ({answer.status}): {answer.text[:300]}")


def log_in(site: Site, email: str, password: str = PASSWORD) -> Answer:
    body = urlencode({"email": email, "password": password}).encode()
    return site.http.request("POST", "/admin/login", body, FORM)


def sign_in(site: Site, role: str, email: str | None = None) -> Signed:
    """A new user of `role`, signed in."""
    email = email or f"{role}-{secrets.token_hex(3)}@example.org"
    subs.add_user(site.db, email, role, PASSWORD)
    answer = log_in(site, email)
    assert answer.status == 303, answer.text[:500]
    cookie = session_cookie(answer)
    page = site.http.request("GET", "/admin/", headers={"Cookie": f"newsletter_session={cookie}"})
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return Signed(site, email, cookie, unescape(found.group(1)))
