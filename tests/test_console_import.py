"""The console's Import page (design §13, §14) over real HTTP: a dry run, a background import with
live progress, the rejects download, the limits, roles and CSRF.

`site` (SQLite and PostgreSQL) for the real import; `lite` for the rest. An import runs in a
thread of the server; tests poll its progress URL, as the page does, until it has ended.
"""
from __future__ import annotations

import csv
import datetime as dt
import http.client
import io
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import subscribers as subs
from newsletter.web.console.import_jobs import KEEP_SECONDS, ImportJobs, Job, Upload
from newsletter.web.console.view import environment

from .console_support import Signed, sign_in
from .test_web import Answer, Site, keys, lite, migrated, server, site, snapshot, status, web

__all__ = ["keys", "lite", "migrated", "server", "site", "web"]  # fixtures, used by name

# Three people to add, one who left the list (stays left), and three rows that cannot be used.
CSV = (b"email,name,team\n"
       b"ann@example.org,Ann,youth\n"
       b"bob@example.org,Bob,police\n"
       b"not-an-address,Nobody,x\n"
       b"left@example.org,Left Already,youth\n"
       b",No Email,x\n"
       b"carl@example.org,Carl,health,extra,values\n"
       b"dora@example.org,Dora,health\n")
MB = 1024 * 1024
POLLING = 'hx-trigger="every 1s"'


def a_list(site: Site) -> None:
    """The list `news`, with left@example.org, who joined and then unsubscribed."""
    subs.create_list(site.db, "news", title="News")
    subs.add_subscriber(site.db, "left@example.org", "news", name="Left")
    subs.unsubscribe(site.db, "left@example.org", "news")


def start(me: Signed, data: bytes = CSV, action: str = "import", filename: str = "people.csv",
          list_name: str = "news", format: str = "auto") -> Answer:
    return me.upload("/admin/import", {"list": list_name, "format": format, "action": action},
                     "file", filename, data)


def finished(me: Signed, answer: Answer, deadline: float = 120) -> str:
    """Follow the 303 to the import's page, poll its progress fragment until it has ended; its text."""
    assert answer.status == 303, answer.text[:800]
    url = answer.headers["location"]
    assert re.fullmatch(r"/admin/import/[A-Za-z0-9_-]+", url), url
    until = time.monotonic() + deadline
    while True:
        part = me.get(f"{url}/progress")
        assert part.status == 200, part.text[:500]
        if POLLING not in part.text:
            return part.text
        assert time.monotonic() < until, f"the import did not end within {deadline} s: {part.text[:500]}"
        time.sleep(0.1)


def text_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def stat(html: str, label: str) -> int:
    found = re.search(rf'<span class="stat-label">{label}</span><span class="stat-value">([\d,]+)</span>', html)
    assert found, f"no stat {label!r} in {html[:1500]}"
    return int(found.group(1).replace(",", ""))


def audits(site: Site, prefix: str) -> list[subs.AuditEntry]:
    return [e for e in subs.audit_entries(site.db) if e.action.startswith(prefix)]


def files_of(site: Site) -> list[str]:
    """What this app keeps in its private folder of imports."""
    return sorted(p.name for p in Path(site.switch.app.state.imports.folder).iterdir())


# --- the form ---------------------------------------------------------------------------------------


def test_the_form_has_a_labelled_file_field_the_lists_formats_and_both_buttons(lite: Site) -> None:
    subs.create_list(lite.db, "news", title="<b>News</b>")
    page = sign_in(lite, "editor").get("/admin/import?list=news")
    assert page.status == 200
    html = page.text
    assert '<label for="file">CSV file</label>' in html
    assert re.search(r'<input type="file" id="file" name="file" accept="\.csv,text/csv"', html)
    assert 'enctype="multipart/form-data"' in html
    assert '<option value="news" selected>news (&lt;b&gt;News&lt;/b&gt;)</option>' in html
    assert "<b>News</b>" not in html
    for value in ("auto", "plain", "mailchimp", "listmonk", "sendy", "substack"):
        assert f'<option value="{value}"' in html
    assert '<button type="submit" name="action" value="dry-run" class="btn btn-primary">Dry run</button>' in html
    assert '<button type="submit" name="action" value="import" class="btn">Import</button>' in html


# --- a dry run ---------------------------------------------------------------------------------------


def test_a_dry_run_changes_nothing_and_reports_what_the_import_would_do(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    before = snapshot(lite.db)
    html = finished(me, start(me, action="dry-run"))
    assert snapshot(lite.db) == before
    assert "What the import would do" in html and "Nothing was written." in text_of(html)
    assert (stat(html, "To add"), stat(html, "Not re-subscribed"), stat(html, "Rejected")) == (3, 1, 3)
    # The first rejects with their line numbers and reasons, and the same file offered for import.
    rows = text_of(html)
    assert "4 An email address must have an @-sign." in rows
    assert "6 the email address is empty" in rows
    assert "7 5 values but the header has 3 columns" in rows
    assert re.search(r'<form method="post" action="/admin/import/[A-Za-z0-9_-]+/import"', html)
    [entry] = audits(lite, "console.import.dry_run")
    assert entry.actor == f"user:{me.email}"
    assert "'people.csv'" in entry.detail and "list news" in entry.detail and "3 rejected" in entry.detail
    assert "@" not in entry.detail.replace(me.email, "")  # counts, never the file's addresses


def test_importing_a_dry_runs_file_imports_that_file_once(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    dry = start(me, action="dry-run")
    finished(me, dry)
    dry_url = dry.headers["location"]
    run = me.post(f"{dry_url}/import")
    html = finished(me, run)
    assert "Import finished" in html and stat(html, "Added") == 3
    assert status(lite.db, "ann@example.org", "news") == "subscribed"
    # A second click on the dry run's button is the same import, not another one.
    again = me.post(f"{dry_url}/import")
    assert again.status == 303 and again.headers["location"] == run.headers["location"]
    assert len(audits(lite, "console.import.run")) == 2  # started, finished: one import
    assert f'href="{run.headers["location"]}"' in me.get(dry_url).text
    assert not [name for name in files_of(lite) if name.startswith("upload-")]  # the upload is gone


# --- the real import -----------------------------------------------------------------------------------


def test_an_import_runs_in_the_background_and_keeps_who_left_unsubscribed(site: Site) -> None:
    a_list(site)
    me = sign_in(site, "editor")
    answer = start(me)
    assert answer.status == 303  # at once: the import goes on in the server
    html = finished(me, answer)
    assert "Import finished" in html
    counts = {label: stat(html, label) for label in ("Added", "Updated", "Unchanged", "Not re-subscribed",
                                                       "Suppressed", "Rejected")}
    assert counts == {"Added": 3, "Updated": 0, "Unchanged": 0, "Not re-subscribed": 1, "Suppressed": 0,
                      "Rejected": 3}
    assert [status(site.db, f"{who}@example.org", "news") for who in ("ann", "bob", "dora", "left")] == \
        ["subscribed", "subscribed", "subscribed", "unsubscribed"]
    page = me.get(answer.headers["location"])
    assert page.status == 200 and "Import of people.csv" in page.text and POLLING not in page.text
    entries = audits(site, "console.import.run")
    assert [e.detail.rsplit(": ", 1)[-1] for e in entries][1] == "started"  # newest first
    assert "3 added" in entries[0].detail and "1 not re-subscribed (unsubscribed)" in entries[0].detail
    assert all("@" not in e.detail.replace(me.email, "") for e in entries)
    assert not [name for name in files_of(site) if name.startswith("upload-")]  # deleted after the import


def test_the_rejects_download_has_each_bad_row_as_it_was_with_line_and_reason(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    answer = start(me)
    html = finished(me, answer)
    link = f'{answer.headers["location"]}/rejects.csv'
    assert f'href="{link}"' in html
    download = me.get(link)
    assert download.status == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["cache-control"] == "no-store"
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["line", "reason", "email", "name", "team"]
    assert [(r[0], r[2]) for r in rows[1:]] == [("4", "not-an-address"), ("6", ""), ("7", "carl@example.org")]
    assert rows[3][1] == "5 values but the header has 3 columns" and rows[3][5:] == ["extra", "values"]
    assert audits(lite, "console.import.rejects")


def test_an_import_without_rejects_offers_no_download(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    answer = start(me, data=b"email\nzed@example.org\n")
    html = finished(me, answer)
    assert stat(html, "Added") == 1 and "rejects.csv" not in html
    assert me.get(f'{answer.headers["location"]}/rejects.csv').status == 404


# --- who may, and CSRF ---------------------------------------------------------------------------------


def test_a_viewer_may_neither_import_nor_download_rejects_nor_see_the_link(lite: Site) -> None:
    a_list(lite)
    editor, viewer = sign_in(lite, "editor"), sign_in(lite, "viewer")
    answer = start(editor)
    finished(editor, answer)
    url = answer.headers["location"]
    before = snapshot(lite.db)
    for path in ("/admin/import", url, f"{url}/progress", f"{url}/rejects.csv"):
        assert viewer.get(path).status == 403, path
    assert start(viewer, data=b"email\nnew@example.org\n").status == 403
    assert viewer.post(f"{url}/import").status == 403
    assert snapshot(lite.db) == before
    assert 'href="/admin/import"' not in viewer.get("/admin/").text
    assert 'href="/admin/import"' in editor.get("/admin/").text


def test_an_upload_without_the_csrf_token_is_403_and_starts_nothing(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    before = snapshot(lite.db)
    assert me.upload("/admin/import", {"list": "news", "action": "import"}, "file", "people.csv", CSV,
                     csrf="").status == 403
    assert snapshot(lite.db) == before
    assert "No imports yet." in me.get("/admin/import").text
    assert not audits(lite, "console.import")


# --- bad input -------------------------------------------------------------------------------------------


def test_a_binary_file_is_400_with_the_librarys_message_and_no_private_path(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    for action in ("dry-run", "import"):
        answer = start(me, data=png, filename="photo.png", action=action)
        assert answer.status == 400
        assert "photo.png: not a CSV file (binary data)" in text_of(answer.text)
        assert "newsletter-imports-" not in answer.text  # the server's copy is never named
        assert '<label for="file">CSV file</label>' in answer.text  # the form again, to choose another file
    assert files_of(lite) == []
    # Refused, and kept in the log all the same.
    assert audits(lite, "console.import.dry_run")[0].detail.endswith("failed: photo.png: not a CSV file (binary data)")
    assert audits(lite, "console.import.run")[0].detail.endswith("failed: photo.png: not a CSV file (binary data)")


def test_an_unknown_list_is_404_and_a_missing_file_400(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    unknown = start(me, list_name="nope")
    assert unknown.status == 404 and "no list named 'nope' (lists: news)" in text_of(unknown.text)
    missing = me.upload("/admin/import", {"list": "news"}, "file", "", b"")
    assert missing.status == 400 and "Choose a CSV file to upload." in missing.text
    assert start(me, format="excel").status == 400


def test_a_file_whose_header_has_no_email_column_says_so(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    answer = start(me, data=b"name,team\nAnn,youth\n", action="dry-run")
    # Refused by the library once it reads the header: on the form (400) or, for a large file, on the import's page.
    html = answer.text if answer.status == 400 else finished(me, answer)
    assert "people.csv: no email column (columns: name, team)" in text_of(html)


def _raw_post(site: Site, me: Signed, chunks: Iterator[bytes], length: int | None) -> Answer:
    """A multipart POST streamed from `chunks`, with a Content-Length or chunked (no length)."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{me.csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="list"\r\n\r\nnews\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {"Cookie": f"newsletter_session={me.cookie}",
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    if length is not None:
        headers["Content-Length"] = str(len(head) + length + len(tail))
    conn = http.client.HTTPConnection("127.0.0.1", site.http.port, timeout=60)
    try:
        conn.request("POST", "/admin/import", body=_joined(head, chunks, tail), headers=headers,
                     encode_chunked=length is None)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def _joined(head: bytes, chunks: Iterator[bytes], tail: bytes) -> Iterator[bytes]:
    yield head
    yield from chunks
    yield tail


def _megabytes(n: int) -> Iterator[bytes]:
    line = b"someone@example.org,Some One\n"
    block = (b"email,name\n" + line * (MB // len(line) + 1))[:MB]
    for _ in range(n):
        yield block


def test_an_upload_larger_than_64_mb_is_413_with_a_clear_page(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    # As a browser sends it: the Content-Length says it at once.
    declared = _raw_post(lite, me, _megabytes(65), 65 * MB)
    assert declared.status == 413
    assert "File too large" in declared.text and "larger than 64 MB" in declared.text
    # Chunked, without a length: counted as it arrives.
    counted = _raw_post(lite, me, _megabytes(65), None)
    assert counted.status == 413 and "larger than 64 MB" in counted.text
    assert not audits(lite, "console.import")
    assert status(lite.db, "someone@example.org", "news") is None


def test_the_file_name_is_escaped(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    name = "<img src=x onerror=alert(1)>.csv"
    answer = start(me, filename=name)
    finished(me, answer)
    for html in (me.get(answer.headers["location"]).text, me.get("/admin/import").text):
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;.csv" in html


def test_an_unknown_import_is_404_and_stops_htmx_polling(lite: Site) -> None:
    me = sign_in(lite, "editor")
    assert me.get("/admin/import/no-such-import").status == 404
    assert me.get("/admin/import/no-such-import/progress").status == 404
    polled = me.site.http.request("GET", "/admin/import/no-such-import/progress",
                                  headers={"Cookie": f"newsletter_session={me.cookie}", "HX-Request": "true"})
    assert polled.status == 286 and POLLING not in polled.text  # htmx's "stop polling"
    assert me.post("/admin/import/no-such-import/import").status == 404


# --- the page while it runs, and what is kept ----------------------------------------------------------


def _running(tmp: Path) -> Job:
    upload = Upload(tmp / "upload.csv", "people.csv", 1_000_000, 20_001)
    job = Job("abc", upload, "news", "auto", False, "user:e@example.org", dt.datetime.now(dt.UTC), tmp / "rejects.csv")
    job.progress(250_000, 1_000_000)
    return job


def test_a_running_import_polls_its_fragment_and_has_a_refresh_link(tmp_path: Path) -> None:
    html = environment().get_template("import_progress.html").render(job=_running(tmp_path), csrf="t", me=None)
    assert 'hx-get="/admin/import/abc/progress"' in html and POLLING in html and 'hx-swap="outerHTML"' in html
    assert '<progress max="1000" value="250"' in html
    assert "About 5,000 of 20,000 rows" in text_of(html)
    assert '<a href="/admin/import/abc">Refresh</a>' in html


def test_what_an_import_leaves_is_deleted_an_hour_after_it_ended(lite: Site) -> None:
    a_list(lite)
    me = sign_in(lite, "editor")
    dry = start(me, action="dry-run")
    finished(me, dry)
    assert any(name.startswith("upload-") for name in files_of(lite))  # kept for its import
    jobs = lite.switch.app.state.imports
    now = time.monotonic()
    jobs.clock = lambda: now + KEEP_SECONDS + 1
    assert me.get(dry.headers["location"]).status == 404
    assert files_of(lite) == []


def test_the_uploads_of_a_server_that_is_gone_are_deleted_when_the_next_starts(tmp_path: Path,
                                                                                 monkeypatch: Any) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    gone = tmp_path / f"newsletter-imports-{int(ended.stdout)}-x1"
    gone.mkdir()
    (gone / "upload-abc.csv").write_text("email\nann@example.org\n")
    running = tmp_path / f"newsletter-imports-{os.getpid()}-x2"  # this process's: still in use
    running.mkdir()
    jobs = ImportJobs(None, lambda *args: None)
    assert not gone.exists() and running.exists()
    assert jobs.folder.parent == tmp_path and jobs.folder.name.startswith(f"newsletter-imports-{os.getpid()}-")
    assert jobs.folder.stat().st_mode & 0o077 == 0  # nobody else may read the uploads
