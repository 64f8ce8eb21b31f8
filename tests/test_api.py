"""The JSON API of design §13 over real HTTP (uvicorn), on SQLite and PostgreSQL."""
from __future__ import annotations

import json
from typing import Any

import pytest

import mailer
import subscribers as subs
from subscribers.accounts import audit_log

from .test_web import ISSUE, Answer, Site, keys, lite, migrated, rendered, send_issue, server, site, web

__all__ = ["keys", "lite", "migrated", "rendered", "server", "site", "web"]  # fixtures, used by name


def call(s: Site, method: str, path: str, token: str | None = None, body: Any = None,
         raw: bytes | None = None) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return s.http.request(method, path, data, headers)


def payload(answer: Answer) -> Any:
    assert (answer.headers.get("content-type") or "").startswith("application/json"), answer.text[:300]
    return json.loads(answer.body)


@pytest.fixture
def tokens(site: Site) -> dict[str, str]:
    subs.create_list(site.db, "news", "The News")
    return {role: subs.create_token(site.db, f"t-{role}", role) for role in subs.ROLES}


def audit_rows(s: Site) -> list[tuple[str, str, str]]:
    with s.db.begin() as conn:
        return [(r.actor, r.action, r.detail) for r in conn.execute(audit_log.select().order_by(audit_log.c.id))]


def test_no_token_or_a_wrong_one_is_401_and_changes_nothing(site: Site, tokens: dict[str, str]) -> None:
    for token in (None, "not-a-token", ""):
        answer = call(site, "GET", "/api/lists", token)
        assert answer.status == 401
        assert "Bearer" in (answer.headers.get("www-authenticate") or "")
        assert "error" in payload(answer)
    answer = call(site, "POST", "/api/lists/news/subscribers", None, {"email": "a@example.org"})
    assert answer.status == 401
    assert subs.list_lists(site.db)[0]["subscribed"] == 0
    # Another scheme carrying a real token is no bearer token.
    answer = site.http.request("GET", "/api/lists", headers={"Authorization": f"Basic {tokens['admin']}"})
    assert answer.status == 401


def test_lists_for_any_role(site: Site, tokens: dict[str, str]) -> None:
    subs.add_subscriber(site.db, "a@example.org", "news")
    answer = call(site, "GET", "/api/lists", tokens["viewer"])
    assert answer.status == 200
    assert payload(answer) == subs.list_lists(site.db)
    one = payload(call(site, "GET", "/api/lists/news", tokens["viewer"]))
    assert one["name"] == "news" and one["title"] == "The News" and one["subscribed"] == 1
    missing = call(site, "GET", "/api/lists/nope", tokens["viewer"])
    assert missing.status == 404 and "nope" in payload(missing)["error"]


def test_a_viewer_may_not_write(site: Site, tokens: dict[str, str]) -> None:
    subs.add_subscriber(site.db, "a@example.org", "news")
    answer = call(site, "POST", "/api/lists/news/subscribers", tokens["viewer"], {"email": "b@example.org"})
    assert answer.status == 403 and "editor" in payload(answer)["error"]
    answer = call(site, "DELETE", "/api/lists/news/subscribers/a@example.org", tokens["viewer"])
    assert answer.status == 403
    assert subs.list_lists(site.db)[0]["subscribed"] == 1
    assert not [row for row in audit_rows(site) if row[1].startswith("api.")]


@pytest.mark.parametrize("role", ["editor", "sender", "admin"])
def test_editors_and_above_add_and_unsubscribe(lite: Site, role: str) -> None:
    subs.create_list(lite.db, "news")
    token = subs.create_token(lite.db, "w", role)
    answer = call(lite, "POST", "/api/lists/news/subscribers", token,
                  {"email": " Ada@Example.ORG ", "name": "Ada", "fields": {"city": "Preston"}})
    assert answer.status == 201, answer.text
    assert payload(answer) == {"email": "Ada@example.org", "list": "news", "outcome": "added"}
    record = subs.show(lite.db, "ada@example.org")
    assert record["name"] == "Ada" and record["fields"] == {"city": "Preston"}
    assert [m["status"] for m in record["lists"]] == ["subscribed"]
    again = call(lite, "POST", "/api/lists/news/subscribers", token, {"email": "ada@example.org"})
    assert again.status == 200 and payload(again)["outcome"] == "unchanged"
    gone = call(lite, "DELETE", "/api/lists/news/subscribers/ada@example.org", token)
    assert gone.status == 200 and payload(gone)["unsubscribed"] is True
    assert [m["status"] for m in subs.show(lite.db, "ada@example.org")["lists"]] == ["unsubscribed"]
    again = call(lite, "DELETE", "/api/lists/news/subscribers/ada@example.org", token)
    assert again.status == 200 and payload(again)["unsubscribed"] is False  # idempotent


def test_never_resubscribes_who_left_or_is_suppressed(site: Site, tokens: dict[str, str]) -> None:
    token = tokens["editor"]
    subs.add_subscriber(site.db, "left@example.org", "news")
    subs.unsubscribe(site.db, "left@example.org", "news")
    answer = call(site, "POST", "/api/lists/news/subscribers", token, {"email": "left@example.org"})
    assert answer.status == 409
    assert "unsubscribed" in payload(answer)["error"]
    with site.db.begin() as conn:
        subs.suppress_address(conn, subs.normalise("bounced@example.org"), "hard bounce", "bounce")
    answer = call(site, "POST", "/api/lists/news/subscribers", token, {"email": "bounced@example.org"})
    assert answer.status == 409 and "suppressed" in payload(answer)["error"]
    record = subs.show(site.db, "left@example.org")
    assert [m["status"] for m in record["lists"]] == ["unsubscribed"]
    assert subs.list_lists(site.db)[0]["subscribed"] == 0
    # Refusals are in the audit log too, with who asked.
    refused = [row for row in audit_rows(site) if row[1] == "api.subscribers.add"]
    assert len(refused) == 2 and all(row[0] == "token:t-editor" and "refused" in row[2] for row in refused)


@pytest.mark.parametrize("body, needle", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"name": "x"}).encode(), '"email"'),
    (json.dumps({"email": "a@example.org", "fields": {"x": 1}}).encode(), '"fields"'),
    (json.dumps({"email": "a@example.org", "colour": "red"}).encode(), "colour"),
    (json.dumps({"email": "not an address"}).encode(), "not a valid email address"),
    (b"{" + b" " * (70 * 1024) + b"}", "larger than"),
])
def test_bad_bodies_are_400_and_change_nothing(lite: Site, body: bytes, needle: str) -> None:
    subs.create_list(lite.db, "news")
    token = subs.create_token(lite.db, "e", "editor")
    answer = call(lite, "POST", "/api/lists/news/subscribers", token, raw=body)
    assert answer.status == 400
    assert needle in payload(answer)["error"]
    assert subs.list_lists(lite.db)[0]["subscribed"] == 0


def test_unknown_list_subscriber_and_route_are_404(site: Site, tokens: dict[str, str]) -> None:
    token = tokens["editor"]
    answer = call(site, "POST", "/api/lists/nope/subscribers", token, {"email": "a@example.org"})
    assert answer.status == 404 and "nope" in payload(answer)["error"]
    answer = call(site, "DELETE", "/api/lists/news/subscribers/nobody@example.org", token)
    assert answer.status == 404 and "nobody@example.org" in payload(answer)["error"]
    for path in ("/api/nothing", "/api/sends/abc", "/api/sends/999"):
        answer = call(site, "GET", path, token)
        assert answer.status == 404, path
        assert "error" in payload(answer)


def test_revoked_token_stops_working(lite: Site) -> None:
    subs.create_list(lite.db, "news")
    token = subs.create_token(lite.db, "gone", "admin")
    assert call(lite, "GET", "/api/lists", token).status == 200
    subs.revoke_token(lite.db, "gone")
    assert call(lite, "GET", "/api/lists", token).status == 401


def test_writes_are_audited_with_the_token_name(site: Site, tokens: dict[str, str]) -> None:
    call(site, "POST", "/api/lists/news/subscribers", tokens["sender"], {"email": "a@example.org"})
    call(site, "DELETE", "/api/lists/news/subscribers/a@example.org", tokens["admin"])
    rows = [row for row in audit_rows(site) if row[1].startswith("api.")]
    assert rows == [("token:t-sender", "api.subscribers.add", "a@example.org -> news: added"),
                    ("token:t-admin", "api.subscribers.unsubscribe", "a@example.org from news: unsubscribed")]


def test_sends_and_one_send_are_the_report_objects(site: Site, tokens: dict[str, str], rendered: Any) -> None:
    for address in ("reader@example.org", "friend@example.org"):
        subs.add_subscriber(site.db, address, "news")
    send_issue(site, rendered)
    answer = call(site, "GET", "/api/sends", tokens["viewer"])
    assert answer.status == 200
    listed = payload(answer)
    [report] = [dict(r) for r in mailer.report(site.db, ISSUE)]
    assert len(listed) == 1
    assert {k: v for k, v in listed[0].items() if k != "at"} == report
    assert report["sent"] == report["recipients"] == 2
    one = call(site, "GET", f"/api/sends/{report['id']}", tokens["viewer"])
    assert one.status == 200 and payload(one) == listed[0]


def test_a_wrong_method_is_a_json_405_naming_the_right_ones(lite: Site) -> None:
    subs.create_list(lite.db, "news")
    token = subs.create_token(lite.db, "a", "admin")
    answer = call(lite, "PUT", "/api/lists/news/subscribers", token, {"email": "a@example.org"})
    assert answer.status == 405 and answer.headers.get("allow") == "POST"
    assert "POST" in payload(answer)["error"]
    assert call(lite, "DELETE", "/api/lists/news", token).status == 405
    assert subs.list_lists(lite.db)[0]["name"] == "news"
