"""The console's Sends pages (design §13): every send live, one send's report and chart, pause, resume and
cancel, recipients in a state as CSV; over real HTTP, with sends made through the library, on both databases.
"""
from __future__ import annotations

import datetime as dt
import io
import re
from html import unescape
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import update

import mailer
import subscribers as subs
from mailer import Envelope, MessageTemplate, TransportError, jobs
from mailer.reports import CSV_HEADER, write_recipients_csv
from mailer.schema import sends
from mailer.sending import start_send

from .console_support import Signed, sign_in
from .test_web import BASE, ISSUE, SECRET, Site, keys, lite, migrated, rendered, server, site, web

__all__ = ["keys", "lite", "migrated", "rendered", "server", "site", "web"]  # fixtures, used by name

READERS = ("ann@example.org", "bob@example.org", "cat@example.org")
REFUSED = "refused@example.org"
HOSTILE = "<script>alert(1)</script>"
REFUSAL = f"554 Message rejected: {HOSTILE}"  # a transport's words reach the page: escaped


class Refusing:
    """The site's recording transport, except that SES-like refusals for good go to REFUSED."""

    name = "test"

    def __init__(self, inner: Any):
        self.inner = inner

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        if to == REFUSED:
            raise TransportError(REFUSAL)
        return str(self.inner.send(raw, to, tags))


def finished_send(s: Site, rendered: Any, list_name: str = "news") -> int:
    """A send of the issue to a new list of three readers and one refused address, run to its end."""
    subs.create_list(s.db, list_name, "Example News")
    for address in (*READERS, REFUSED):
        subs.add_subscriber(s.db, address, list_name)
    plan = mailer.plan_send(s.db, ISSUE, list_name)
    send_id = start_send(s.db, plan, rendered.subject)
    template = MessageTemplate(rendered, Envelope("News <news@example.org>", f"<{list_name}.example.org>"))
    result = mailer.run_send(s.db, send_id, template, Refusing(s.mail), subs.Tokens(SECRET), BASE, rate=10000,
                             workers=2, sleep=lambda _: None)
    assert (result.sent, result.failed) == (3, 1)
    return send_id


def scheduled_send(s: Site, rendered: Any, list_name: str = "later") -> int:
    """A send a worker would start in a month (nobody runs one here)."""
    subs.create_list(s.db, list_name, "Later News")
    subs.add_subscriber(s.db, "dee@example.org", list_name)
    plan = mailer.plan_send(s.db, ISSUE, list_name)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    return mailer.schedule_issue(s.db, plan, rendered, at, None, f"issues/{ISSUE}.yaml")


def state(s: Site, send_id: int) -> str:
    return jobs.state_of(s.db, send_id)


def audited(s: Site, action: str) -> list[str]:
    return [entry.detail for entry in subs.audit_entries(s.db) if entry.action == action]


def visible(answer: Any) -> str:
    """The text of the page's <main>, tags stripped and whitespace collapsed."""
    found = re.search(r"<main[^>]*>(.*)</main>", answer.text, re.S)
    assert found, answer.text[:500]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def row_of(page: str, send_id: int) -> str:
    """The table row of one send, its tags stripped."""
    found = re.search(rf'<tr>\s*<td class="num"><a href="/admin/sends/{send_id}">.*?</tr>', page, re.S)
    assert found, page[:2000]
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(0)).split())


# --- every send ------------------------------------------------------------------------------------------


def test_the_list_shows_every_send_newest_first_with_its_counts_and_polls_while_one_is_due(
        site: Site, rendered: Any) -> None:
    done, due = finished_send(site, rendered), scheduled_send(site, rendered)
    me = sign_in(site, "viewer")
    page = me.get("/admin/sends")
    assert page.status == 200
    assert page.text.index(f'href="/admin/sends/{due}"') < page.text.index(f'href="/admin/sends/{done}"')
    finished = row_of(page.text, done)
    assert f"{done} {ISSUE} news finished" in finished and "4 of 4" in finished
    assert '<progress value="4" max="4"' in page.text  # 3 sent + 1 failed, of 4
    assert "4 of 4 3 1 0 0 0 0" in finished  # sent, failed, unknown, delivered, bounced, complaints
    assert "scheduled" in row_of(page.text, due) and "not started" in row_of(page.text, due)
    assert 'hx-get="/admin/sends/table" hx-trigger="every 2s"' in page.text  # a send is due: live
    assert '<a class="btn" href="/admin/sends">Refresh</a>' in page.text  # the same without JavaScript

    table = me.get("/admin/sends/table")
    assert table.status == 200 and table.is_html
    assert "<nav" not in table.text and "<html" not in table.text and f'href="/admin/sends/{due}"' in table.text


def test_with_no_send_due_the_list_stops_polling(lite: Site, rendered: Any) -> None:
    finished_send(lite, rendered)
    page = sign_in(lite, "viewer").get("/admin/sends")
    assert page.status == 200 and "hx-trigger" not in page.text


# --- one send ---------------------------------------------------------------------------------------------


LABELS = {"Recipients": "recipients", "Sent": "sent", "Pending": "pending", "Failed": "failed",
          "Unknown": "unknown", "Skipped": "skipped", "Delivered": "delivered", "Hard bounces": "bounced_hard",
          "Soft bounces": "bounced_soft", "Complaints": "complained", "Unsubscribed": "unsubscribed"}


def test_a_sends_page_shows_the_same_numbers_as_mailers_report(site: Site, rendered: Any) -> None:
    send_id = finished_send(site, rendered)
    [report] = [row for row in mailer.report(site.db, ISSUE) if row["id"] == send_id]
    page = sign_in(site, "viewer").get(f"/admin/sends/{send_id}")
    assert page.status == 200
    shown = {label: int(n) for label, n in re.findall(
        r'<span class="stat-label">([^<]+)</span><span class="stat-value">([\d,]+)</span>', page.text)}
    assert shown == {label: report[key] for label, key in LABELS.items()}
    assert (report["recipients"], report["sent"], report["failed"]) == (4, 3, 1)
    main = visible(page)
    assert f"Send {send_id}: {ISSUE}" in main and "4 of 4 recipients done (100.0 %)" in main
    assert "1 failed: refused for good" in main  # who may have missed it, as `report` says
    assert f'<img src="/admin/sends/{send_id}/chart.png" class="chart"' in page.text
    assert 'alt="Chart of send' in page.text
    assert "hx-trigger" not in page.text  # finished: nothing more to watch


def test_the_chart_is_the_reports_png(site: Site, rendered: Any) -> None:
    send_id = finished_send(site, rendered)
    chart = sign_in(site, "viewer").get(f"/admin/sends/{send_id}/chart.png")
    assert chart.status == 200 and chart.headers["content-type"] == "image/png"
    assert chart.body.startswith(b"\x89PNG\r\n\x1a\n") and len(chart.body) > 10_000


def test_failed_recipients_show_to_editors_with_their_reasons_and_to_viewers_as_counts_only(
        site: Site, rendered: Any) -> None:
    send_id = finished_send(site, rendered)
    editor = sign_in(site, "editor").get(f"/admin/sends/{send_id}")
    assert REFUSED in editor.text and "554 Message rejected: &lt;script&gt;alert(1)&lt;/script&gt;" in editor.text
    assert f'href="/admin/sends/{send_id}/recipients.csv?state=failed"' in editor.text
    assert HOSTILE not in editor.text

    viewer = sign_in(site, "viewer").get(f"/admin/sends/{send_id}")
    assert viewer.status == 200
    assert REFUSED not in viewer.text and "recipients.csv" not in viewer.text and "554 Message" not in viewer.text


def test_recipients_in_a_state_stream_as_the_reports_csv_of_this_send_only(site: Site, rendered: Any) -> None:
    first, second = finished_send(site, rendered), finished_send(site, rendered, "other")  # REFUSED failed twice
    me = sign_in(site, "editor")
    answer = me.get(f"/admin/sends/{first}/recipients.csv?state=failed")
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == f'attachment; filename="{ISSUE}-news-{first}-failed.csv"'
    lines = answer.text.splitlines()
    assert lines[0] == ",".join(CSV_HEADER) == "email,state,reason,message_id,updated_at"
    assert len(lines) == 2 and lines[1].startswith(f"{REFUSED},failed,554 Message rejected")
    expected = io.StringIO(newline="")
    write_recipients_csv(site.db, ISSUE, "failed", expected, send_id=first)  # `report --recipients failed --csv`
    assert answer.text == expected.getvalue()

    sent = me.get(f"/admin/sends/{second}/recipients.csv?state=sent").text.splitlines()
    assert sorted(line.split(",")[0] for line in sent[1:]) == sorted(READERS)
    assert me.get(f"/admin/sends/{first}/recipients.csv?state=pending").text.splitlines() == [",".join(CSV_HEADER)]
    assert any(f"send {first}: failed" in detail for detail in audited(site, "console.sends.recipients"))


def test_a_viewer_may_not_download_recipients(lite: Site, rendered: Any) -> None:
    send_id = finished_send(lite, rendered)
    answer = sign_in(lite, "viewer").get(f"/admin/sends/{send_id}/recipients.csv?state=failed")
    assert answer.status == 403 and REFUSED not in answer.text


@pytest.mark.parametrize("path", ["/admin/sends/999", "/admin/sends/abc", "/admin/sends/1%3Cb%3E",
                                  "/admin/sends/999/chart.png", "/admin/sends/999/live",
                                  "/admin/sends/999/recipients.csv?state=failed", "/admin/sends/999/cancel"])
def test_a_send_that_does_not_exist_is_a_404_page(lite: Site, path: str) -> None:
    answer = sign_in(lite, "sender").get(path)
    assert answer.status == 404 and answer.is_html and "Not found" in answer.text
    assert "<b>" not in answer.text


def test_a_bad_state_is_400(lite: Site, rendered: Any) -> None:
    send_id = finished_send(lite, rendered)
    me = sign_in(lite, "editor")
    for query in ("?state=bogus", "", "?state=sending"):
        answer = me.get(f"/admin/sends/{send_id}/recipients.csv{query}")
        assert answer.status == 400 and "one of sent, failed, pending, unknown, skipped" in answer.text


def test_the_live_part_is_a_fragment_that_polls_until_the_send_ends(lite: Site, rendered: Any) -> None:
    due, done = scheduled_send(lite, rendered), finished_send(lite, rendered)
    me = sign_in(lite, "viewer")
    live = me.get(f"/admin/sends/{due}/live")
    assert live.status == 200 and live.is_html
    assert "<nav" not in live.text and "<html" not in live.text
    assert f'hx-get="/admin/sends/{due}/live" hx-trigger="every 2s" hx-swap="outerHTML"' in live.text
    ended = me.get(f"/admin/sends/{done}/live")
    assert ended.status == 200 and "hx-trigger" not in ended.text and "4 of 4 recipients done" in ended.text


# --- pause, resume, cancel ----------------------------------------------------------------------------------


def notice(answer: Any) -> str:
    """The one-time message a POST leaves for the page it redirects to."""
    for header in answer.headers.get_all("set-cookie") or []:
        found = re.match(r'newsletter_notice="?([^;"]*)', header)
        if found:
            return unquote(found.group(1))
    return ""


def post(me: Signed, send_id: int, action: str, **fields: str) -> Any:
    return me.post(f"/admin/sends/{send_id}/{action}", fields)


def test_a_sender_pauses_resumes_and_cancels_a_send_each_audited(site: Site, rendered: Any) -> None:
    send_id = scheduled_send(site, rendered)
    me = sign_in(site, "sender")
    page = me.get(f"/admin/sends/{send_id}")
    assert f'action="/admin/sends/{send_id}/pause"' in page.text and "/resume" not in page.text
    assert f'href="/admin/sends/{send_id}/cancel"' in page.text

    paused = post(me, send_id, "pause")
    assert paused.status == 303 and paused.headers["location"] == f"/admin/sends/{send_id}"
    [listed] = jobs.list_sends(site.db, send_id)
    assert listed["state"] == "paused" and listed["reason"] == "paused by hand"
    assert audited(site, "console.sends.pause") == [f"send {send_id} ({ISSUE}/later): paused"]
    assert "paused: messages in flight finish" in notice(paused)
    page = me.get(f"/admin/sends/{send_id}")
    assert f'action="/admin/sends/{send_id}/resume"' in page.text and f"/{send_id}/pause" not in page.text

    assert post(me, send_id, "resume").status == 303
    assert state(site, send_id) == "queued"
    assert audited(site, "console.sends.resume") == [f"send {send_id} ({ISSUE}/later): queued"]

    form = me.get(f"/admin/sends/{send_id}/cancel")
    assert form.status == 200 and "Yes, cancel this send" in form.text
    assert '<label class="check" for="confirm">' in form.text
    unconfirmed = post(me, send_id, "cancel")
    assert unconfirmed.status == 400 and "Tick" in unconfirmed.text
    assert state(site, send_id) == "queued" and not audited(site, "console.sends.cancel")
    assert post(me, send_id, "cancel", confirm="yes").status == 303
    assert state(site, send_id) == "cancelled"
    assert audited(site, "console.sends.cancel") == [f"send {send_id} ({ISSUE}/later): cancelled"]
    ended = me.get(f"/admin/sends/{send_id}")
    assert all(f"/{send_id}/{action}" not in ended.text for action in ("pause", "resume", "cancel"))


def test_what_a_state_does_not_allow_is_409_and_changes_nothing(lite: Site, rendered: Any) -> None:
    send_id = finished_send(lite, rendered)
    me = sign_in(lite, "sender")
    assert "/pause" not in me.get(f"/admin/sends/{send_id}").text
    for action, fields in (("pause", {}), ("resume", {}), ("cancel", {"confirm": "yes"})):
        answer = post(me, send_id, action, **fields)
        assert answer.status == 409 and "finished" in answer.text
    assert state(lite, send_id) == "finished" and not audited(lite, "console.sends.pause")


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_below_sender_nobody_pauses_or_cancels_and_nobody_sees_the_buttons(site: Site, rendered: Any,
                                                                          role: str) -> None:
    send_id = scheduled_send(site, rendered)
    me = sign_in(site, role)
    page = me.get(f"/admin/sends/{send_id}")
    assert page.status == 200 and "/pause" not in page.text and "/cancel" not in page.text
    assert post(me, send_id, "pause").status == 403
    assert post(me, send_id, "cancel", confirm="yes").status == 403
    assert me.get(f"/admin/sends/{send_id}/cancel").status == 403
    assert state(site, send_id) == "scheduled" and not audited(site, "console.sends.pause")


@pytest.mark.parametrize("csrf", ["", "forged"])
def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(lite: Site, rendered: Any, csrf: str) -> None:
    send_id = scheduled_send(lite, rendered)
    me = sign_in(lite, "sender")
    assert me.post(f"/admin/sends/{send_id}/pause", {}, csrf=csrf).status == 403
    assert me.post(f"/admin/sends/{send_id}/cancel", {"confirm": "yes"}, csrf=csrf).status == 403
    assert state(lite, send_id) == "scheduled"


def test_hostile_names_and_reasons_are_escaped(lite: Site, rendered: Any) -> None:
    send_id = scheduled_send(lite, rendered)
    with lite.db.begin() as conn:  # nothing the console accepts makes these; a tampered database might
        conn.execute(update(sends).where(sends.c.id == send_id).values(issue=HOSTILE, segment=HOSTILE))
    jobs.pause(lite.db, send_id, reason=HOSTILE)
    me = sign_in(lite, "sender")
    for path in ("/admin/sends", "/admin/sends/table", f"/admin/sends/{send_id}", f"/admin/sends/{send_id}/live",
                 f"/admin/sends/{send_id}/cancel"):
        answer = me.get(path)
        assert answer.status == 200, path
        assert HOSTILE not in answer.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text, path


def test_a_running_send_polls_says_how_long_the_rest_takes_and_may_be_paused(lite: Site, rendered: Any) -> None:
    subs.create_list(lite.db, "news", "Example News")
    for address in READERS:
        subs.add_subscriber(lite.db, address, "news")
    send_id = start_send(lite.db, mailer.plan_send(lite.db, ISSUE, "news"), rendered.subject)  # frozen, not run
    page = sign_in(lite, "sender").get(f"/admin/sends/{send_id}")
    assert page.status == 200 and state(lite, send_id) == "running"
    main = visible(page)
    assert "0 of 3 recipients done" in main and "Pending 3" in main
    assert "Time left about 1 s at 50 messages/s" in main  # as `send` says it, at the configured pace
    assert f'hx-get="/admin/sends/{send_id}/live" hx-trigger="every 2s"' in page.text
    assert f'action="/admin/sends/{send_id}/pause"' in page.text


def test_the_csv_comes_through_in_chunks_as_the_writer_makes_it(lite: Site, rendered: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.web.console import sends as page
    send_id = finished_send(lite, rendered)
    monkeypatch.setattr(page._Pipe, "CHUNK", 40)  # a chunk a row: every row passes through the queue
    answer = sign_in(lite, "editor").get(f"/admin/sends/{send_id}/recipients.csv?state=sent")
    expected = io.StringIO(newline="")
    assert write_recipients_csv(lite.db, ISSUE, "sent", expected, send_id=send_id) == 3
    assert answer.status == 200 and answer.text == expected.getvalue()
    assert answer.headers.get("content-length") is None  # streamed, not one body
