"""The console's Issues pages (design §13): check results, previews, test sends and "Send", over real HTTP.

The serve process reads issues/ of its working folder, so each test works in a folder of its
own holding a copy of the example issue (with its images) and one with a check error.
Sends started here must be left to a worker: the tests check nothing is mailed in the
request, then run the worker once to see it pick the send up.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import shutil
from html import unescape
from pathlib import Path
from urllib.parse import urlencode

import pytest

import subscribers as subs
from mailer.jobs import list_sends
from mailer.worker import run_due
from newsletter.worker import prepare

from .conftest import ISSUES
from .console_support import Signed, sign_in
from .test_web import Answer, Site, keys, lite, migrated, server, site, web

__all__ = ["keys", "lite", "migrated", "server", "site", "web"]  # fixtures, used by name

ISSUE = "2021-01"
GREETING = 'Dear {{ first_name | default("friend") }},'
PREVIEW_CSP = ("default-src 'none'; img-src 'self' data: https:; style-src 'unsafe-inline'; "
               "frame-ancestors 'self'; sandbox")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The serve process's working folder: issues/ with the example and `typo` (a check error)."""
    issues = tmp_path / "issues"
    issues.mkdir()
    shutil.copy(ISSUES / f"{ISSUE}.yaml", issues / f"{ISSUE}.yaml")
    shutil.copytree(ISSUES / ISSUE, issues / ISSUE)
    text = (ISSUES / f"{ISSUE}.yaml").read_text("utf-8")
    assert GREETING in text
    (issues / "typo.yaml").write_text(text.replace(GREETING, "Dear {{ firstname }},"), "utf-8")
    shutil.copytree(ISSUES / ISSUE, issues / "typo")
    (tmp_path / "newsletter.toml").write_text('secret = "not-for-you"\n', "utf-8")
    (tmp_path / "outside.yaml").write_text(text, "utf-8")
    monkeypatch.chdir(tmp_path)
    return issues


def members(site: Site, list_name: str = "news", n: int = 3) -> None:
    subs.create_list(site.db, list_name, "News")
    for k in range(n):
        subs.add_subscriber(site.db, f"reader{k}@example.org", list_name)
    subs.add_subscriber(site.db, "left@example.org", list_name)
    subs.unsubscribe(site.db, "left@example.org", list_name)


def text(answer: Answer) -> str:
    """The visible text of a console page's <main>, whitespace collapsed."""
    found = re.search(r"<main[^>]*>(.*)</main>", answer.text, re.S)
    assert found, answer.text[:500]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def actions(site: Site) -> list[tuple[str, str]]:
    return [(e.action, e.detail) for e in subs.audit_entries(site.db)]


# --- the list, one issue, the preview ------------------------------------------------------------------


def test_the_list_shows_every_issue_with_its_check_counts(lite: Site, folder: Path) -> None:
    page = sign_in(lite, "viewer").get("/admin/issues")
    assert page.status == 200
    rows = dict(re.findall(r'<a href="/admin/issues/([^"]+)">.*?</td>\s*<td[^>]*>.*?</td>\s*<td>(.*?)</td>', page.text,
                           re.S))
    assert set(rows) == {ISSUE, "typo"}
    assert "level-error" not in rows[ISSUE] and "2 warnings" in rows[ISSUE]  # base URL not https, placeholder footer
    assert "1 error" in rows["typo"] and "level-error" in rows["typo"]
    assert page.text.count("Not sent") == 2
    assert "outside" not in page.text


def test_an_issue_page_shows_its_findings_and_two_sandboxed_previews(lite: Site, folder: Path) -> None:
    page = sign_in(lite, "viewer").get("/admin/issues/typo")
    assert page.status == 200
    assert "firstname" in page.text and "level-error" in page.text
    frames = re.findall(r'<figure class="preview (preview-desktop|preview-phone)">.*?<iframe ([^>]*)>', page.text, re.S)
    assert [kind for kind, _ in frames] == ["preview-desktop", "preview-phone"]
    for _, attributes in frames:
        assert 'src="/admin/issues/typo/email.html"' in attributes and 'sandbox=""' in attributes
    assert "Test send" not in page.text and "/typo/send" not in page.text  # a viewer is offered neither


def test_the_preview_is_the_email_with_its_own_headers_and_inlined_images(lite: Site, folder: Path) -> None:
    me = sign_in(lite, "viewer")
    answer = me.get(f"/admin/issues/{ISSUE}/email.html")
    assert answer.status == 200 and answer.is_html
    assert answer.headers["content-security-policy"] == PREVIEW_CSP
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"
    assert "A fresh start in the park" in answer.text
    assert "<script" not in answer.text.lower()
    assert "data:image/png;base64," in answer.text
    assert f"/archive/{ISSUE}/images/" not in answer.text  # not published yet: nothing would answer there
    assert "{{" not in answer.text  # merge fields show sample values
    assert lite.http.get(f"/admin/issues/{ISSUE}/email.html").status == 303  # signed out: to the login form


def test_the_preview_follows_an_edit_of_the_file(lite: Site, folder: Path) -> None:
    me = sign_in(lite, "viewer")
    assert "A fresh start in the park" in me.get(f"/admin/issues/{ISSUE}/email.html").text
    path = folder / f"{ISSUE}.yaml"
    path.write_text(path.read_text("utf-8").replace("A fresh start in the park", "A new start"), "utf-8")
    shown = me.get(f"/admin/issues/{ISSUE}/email.html").text
    assert "A new start" in shown and "A fresh start in the park" not in shown


@pytest.mark.parametrize("path", ["/admin/issues/..%2Fnewsletter.toml", "/admin/issues/%2e%2e",
                                  "/admin/issues/..%2Foutside", "/admin/issues/%2Fetc%2Fpasswd",
                                  "/admin/issues/%2e%2e/email.html", "/admin/issues/..%2Foutside/email.html",
                                  f"/admin/issues/{ISSUE}.yaml", f"/admin/issues/{ISSUE}%00",
                                  "/admin/issues/outside/email.html", "/admin/issues/..%5Coutside/email.html"])
def test_a_name_that_is_not_an_issue_file_is_404(lite: Site, folder: Path, path: str) -> None:
    answer = sign_in(lite, "admin").get(path)
    assert answer.status == 404
    assert "not-for-you" not in answer.text and "January" not in answer.text


def test_hostile_text_in_an_issue_is_escaped(lite: Site, folder: Path) -> None:
    text = (folder / f"{ISSUE}.yaml").read_text("utf-8")
    hostile = text.replace('subject: "{{ first_name | default(\\"Friends\\") }}, your January news is here"',
                           'subject: "<script>alert(1)</script>"')
    assert hostile != text
    (folder / "hostile.yaml").write_text(hostile, "utf-8")
    shutil.copytree(folder / ISSUE, folder / "hostile")
    me = sign_in(lite, "viewer")
    for path in ("/admin/issues", "/admin/issues/hostile"):
        page = me.get(path)
        assert page.status == 200
        assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# --- test send -------------------------------------------------------------------------------------------


def test_a_sender_mails_proofs_and_it_is_audited(lite: Site, folder: Path) -> None:
    me = sign_in(lite, "sender")
    answer = me.post(f"/admin/issues/{ISSUE}/test-send", {"to": "proof@example.org, Second@Example.org"})
    assert answer.status == 303 and answer.headers["location"] == f"/admin/issues/{ISSUE}"
    assert sorted(to for _, to, _ in lite.mail.sent) == ["Second@example.org", "proof@example.org"]
    message = lite.mail.messages("proof@example.org")[0]
    assert "January news" in message["subject"]
    assert ("console.issues.test_send", f"issue={ISSUE} to=proof@example.org, Second@example.org force=False") \
        in actions(lite)


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_test_send_needs_a_sender(lite: Site, folder: Path, role: str) -> None:
    me = sign_in(lite, role)
    assert me.post(f"/admin/issues/{ISSUE}/test-send", {"to": "proof@example.org"}).status == 403
    assert lite.mail.sent == []
    assert "Test send" not in me.get(f"/admin/issues/{ISSUE}").text


def test_a_test_send_without_the_csrf_token_is_403(lite: Site, folder: Path) -> None:
    me = sign_in(lite, "sender")
    assert me.post(f"/admin/issues/{ISSUE}/test-send", {"to": "proof@example.org"}, csrf="").status == 403
    assert lite.mail.sent == []


def test_a_test_send_of_an_issue_with_check_errors_needs_send_anyway(lite: Site, folder: Path) -> None:
    me = sign_in(lite, "sender")
    refused = me.post("/admin/issues/typo/test-send", {"to": "proof@example.org"})
    assert refused.status == 400 and "check errors" in refused.text and "firstname" in text(refused)
    assert lite.mail.sent == []
    assert me.post("/admin/issues/typo/test-send", {"to": "proof@example.org", "force": "yes"}).status == 303
    assert [to for _, to, _ in lite.mail.sent] == ["proof@example.org"]


@pytest.mark.parametrize("to", ["", "not an address", ",".join(f"p{k}@example.org" for k in range(21))])
def test_a_test_send_to_bad_addresses_is_400(lite: Site, folder: Path, to: str) -> None:
    answer = sign_in(lite, "sender").post(f"/admin/issues/{ISSUE}/test-send", {"to": to})
    assert answer.status == 400 and 'class="error"' in answer.text
    assert lite.mail.sent == []


# --- send ------------------------------------------------------------------------------------------------


def confirm(me: Signed, issue: str = ISSUE, **choice: str) -> str:
    return me.get(f"/admin/issues/{issue}/send?{urlencode({'list': 'news', **choice})}").text


def test_the_confirmation_shows_the_recipients_and_asks_for_the_lists_name(site: Site, folder: Path) -> None:
    members(site)
    me = sign_in(site, "sender")
    answer = me.get(f"/admin/issues/{ISSUE}/send?list=news")
    assert answer.status == 200
    assert "Send to 3 recipients" in answer.text and "1 unsubscribed" in text(answer)
    assert re.search(r'<input[^>]*name="confirm"[^>]*data-must-equal="news"[^>]*data-enables="send-button"',
                     answer.text)
    assert 'id="send-button"' in answer.text
    assert "messages/s" in answer.text  # how long it takes
    assert list_sends(site.db) == []  # looking changes nothing


def test_a_wrong_list_name_sends_nothing(site: Site, folder: Path) -> None:
    members(site)
    me = sign_in(site, "sender")
    answer = me.post(f"/admin/issues/{ISSUE}/send", {"list": "news", "when": "now", "confirm": "new"})
    assert answer.status == 400 and "Nothing was sent" in text(answer)
    assert list_sends(site.db) == [] and site.mail.sent == []


def test_now_with_an_expiry_window_is_scheduled_for_now_so_the_window_holds(lite: Site, folder: Path) -> None:
    members(lite)
    me = sign_in(lite, "sender")
    answer = me.post(f"/admin/issues/{ISSUE}/send", {"list": "news", "when": "now", "expires": "2h",
                                                     "confirm": "news"})
    assert answer.status == 303
    [send] = list_sends(lite.db)
    assert send["state"] == "scheduled"


def test_the_right_name_queues_the_send_for_a_worker(site: Site, folder: Path) -> None:
    members(site)
    me = sign_in(site, "sender")
    before = dt.datetime.now(dt.UTC)
    answer = me.post(f"/admin/issues/{ISSUE}/send", {"list": "news", "when": "now", "confirm": "news"})
    assert answer.status == 303
    [send] = list_sends(site.db)
    assert answer.headers["location"] == f"/admin/sends/{send['id']}"
    assert send["state"] == "queued" and dt.datetime.fromisoformat(send["at"]) >= before - dt.timedelta(seconds=1)
    assert site.mail.sent == [] and not (folder.parent / "outbox").exists()  # nothing mailed in the request
    assert any(action == "console.issues.send" and f"issue={ISSUE} list=news segment= " in detail
               and "recipients=3" in detail for action, detail in actions(site))
    [ran] = run_due(site.db, functools.partial(prepare, site.settings))  # as `newsletter worker --once`
    assert ran.outcome == "finished" and ran.result is not None and ran.result.sent == 3
    assert len(list((folder.parent / "outbox").rglob("*.eml"))) == 3
    listed = me.get("/admin/issues").text
    assert re.search(r">news</a> <span class=\"badge state-finished\">finished</span>", listed)


def test_a_send_at_a_time_is_scheduled_for_that_time_with_its_window(site: Site, folder: Path) -> None:
    members(site)
    me = sign_in(site, "sender")
    choice = {"list": "news", "when": "later", "at": "2030-01-02T09:30", "expires": "2h"}
    assert "Schedule for 3 recipients" in confirm(me, **choice)
    answer = me.post(f"/admin/issues/{ISSUE}/send", {**choice, "confirm": "news"})
    assert answer.status == 303
    [send] = list_sends(site.db)
    assert send["state"] == "scheduled" and send["at"] == "2030-01-02T09:30:00+00:00"
    assert run_due(site.db, functools.partial(prepare, site.settings)) == []  # not due yet
    assert site.mail.sent == []


@pytest.mark.parametrize("choice", [{"when": "later", "at": ""}, {"when": "later", "at": "next tuesday"},
                                    {"when": "now", "expires": "soon"}, {"segment": "nobody"}])
def test_a_bad_time_duration_or_segment_is_400_and_sends_nothing(lite: Site, folder: Path,
                                                                  choice: dict[str, str]) -> None:
    members(lite)
    me = sign_in(lite, "sender")
    assert me.get(f"/admin/issues/{ISSUE}/send?{urlencode({'list': 'news', **choice})}").status == 400
    assert me.post(f"/admin/issues/{ISSUE}/send", {"list": "news", **choice, "confirm": "news"}).status == 400
    assert list_sends(lite.db) == []


def test_an_unknown_list_is_404(lite: Site, folder: Path) -> None:
    answer = sign_in(lite, "sender").get(f"/admin/issues/{ISSUE}/send?list=nope")
    assert answer.status == 404 and "nope" in answer.text


def test_an_issue_with_check_errors_is_sent_only_with_send_anyway(site: Site, folder: Path) -> None:
    members(site)
    me = sign_in(site, "sender")
    shown = me.get("/admin/issues/typo/send?list=news")
    assert shown.status == 400 and "check errors" in shown.text and 'name="confirm"' not in shown.text
    refused = me.post("/admin/issues/typo/send", {"list": "news", "when": "now", "confirm": "news"})
    assert refused.status == 400 and "check errors" in refused.text
    assert list_sends(site.db) == []
    assert "Sending anyway" in confirm(me, "typo", force="yes")
    forced = me.post("/admin/issues/typo/send", {"list": "news", "when": "now", "confirm": "news", "force": "yes"})
    assert forced.status == 303
    assert [s["issue"] for s in list_sends(site.db)] == ["typo"]
    assert site.mail.sent == []
    [ran] = run_due(site.db, functools.partial(prepare, site.settings))  # the worker keeps the "Send anyway"
    assert ran.outcome == "finished" and ran.result is not None and ran.result.sent == 3


def test_a_worker_checks_again_an_issue_edited_after_send_anyway(lite: Site, folder: Path) -> None:
    members(lite)
    me = sign_in(lite, "sender")
    forced = me.post("/admin/issues/typo/send", {"list": "news", "when": "now", "confirm": "news", "force": "yes"})
    assert forced.status == 303
    path = folder / "typo.yaml"
    path.write_text(path.read_text("utf-8").replace("A fresh start in the park", "Edited since"), "utf-8")
    [ran] = run_due(lite.db, functools.partial(prepare, lite.settings))
    assert ran.outcome == "stopped" and "check errors" in ran.message
    assert not (folder.parent / "outbox").exists()


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_sending_needs_a_sender(lite: Site, folder: Path, role: str) -> None:
    members(lite)
    me = sign_in(lite, role)
    assert me.get(f"/admin/issues/{ISSUE}/send?list=news").status == 403
    assert me.post(f"/admin/issues/{ISSUE}/send", {"list": "news", "when": "now", "confirm": "news"}).status == 403
    assert list_sends(lite.db) == []


def test_a_send_without_the_csrf_token_is_403(lite: Site, folder: Path) -> None:
    members(lite)
    me = sign_in(lite, "sender")
    answer = me.post(f"/admin/issues/{ISSUE}/send", {"list": "news", "when": "now", "confirm": "news"}, csrf="")
    assert answer.status == 403
    assert list_sends(lite.db) == []
