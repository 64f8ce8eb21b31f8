"""The console (design §13) in a real headless chromium, against a real `newsletter serve --with-worker`.

One serve process per database (SQLite, then PostgreSQL), started in a folder holding a copy
of the reference issue; its users are made with the real `newsletter users add`. Chromium
signs in, creates a list, imports a CSV and watches the progress, sends the reference issue
to the list from the Issues page (typing the list's name to confirm), watches the worker in
the serve process finish it, and reads its report. Then each role's limits, a forged POST,
signing out, and `users rm` ending a session that is open in the browser.

Screenshots of every page at 1024 and 375 px go to $NEWSLETTER_SHOTS_DIR/console-<page>-<width>.png
when that variable is set.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import pg_schema_url
from .ses_peer import NEWSLETTER, ROOT, cli_env, free_port, newsletter
from .test_web_browser import _wait_healthy, goto, heading, shoot

pytestmark = pytest.mark.browser

PHONE, DESKTOP = 375, 1024
PASSWORD = "browser-test-password-7Hk"
ADMIN, EDITOR, SENDER, VIEWER = "admin@example.org", "editor@example.org", "sender@example.org", "viewer@example.org"
PEOPLE = [f"reader{n}@example.com" for n in range(1, 13)]
SLUG = "2020-12"


@dataclass
class Console:
    url: str
    env: dict[str, str]
    cwd: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        if stdin is None:
            return newsletter(list(args), self.env, self.cwd)
        return subprocess.run([str(NEWSLETTER), *args], env=self.env, cwd=self.cwd, input=stdin, text=True,
                              capture_output=True, check=True, timeout=60)

    def add_user(self, email: str, role: str) -> None:
        self.cli("users", "add", email, "--role", role, "--password-stdin", stdin=f"{PASSWORD}\n")


def _database(kind: str) -> Iterator[str]:
    """"" for SQLite (a file in the test's folder), or a PostgreSQL schema's URL."""
    if kind == "sqlite":
        yield ""
        return
    with pg_schema_url() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def console(request: pytest.FixtureRequest, browser: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    folder = tmp_path_factory.mktemp(f"console-{request.param}")
    (folder / "issues").mkdir()
    shutil.copy(ROOT / "issues" / f"{SLUG}.yaml", folder / "issues")
    shutil.copytree(ROOT / "issues" / SLUG, folder / "issues" / SLUG)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for database_url in _database(request.param):
        env = cli_env(database_url or f"sqlite:///{folder / 'newsletter.db'}", NEWSLETTER_TRANSPORT="file",
                      NEWSLETTER_OUTBOX=str(folder / "outbox"), NEWSLETTER_BASE_URL=url)
        c = Console(url, env, folder, folder / "serve.log")
        for email, role in ((ADMIN, "admin"), (EDITOR, "editor"), (SENDER, "sender"), (VIEWER, "viewer")):
            c.add_user(email, role)  # the first one migrates the new database before serve opens it
        with c.log.open("wb") as out:
            c.process = subprocess.Popen(
                [str(NEWSLETTER), "serve", "--host", "127.0.0.1", "--port", str(port), "--with-worker"],
                env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(c)  # type: ignore[arg-type]
            yield c
        finally:
            c.process.terminate()
            try:
                c.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                c.process.kill()
                c.process.wait()


@pytest.fixture
def pages(browser: Any) -> Iterator[Any]:
    """`pages(width)`: a fresh browser context (no cookies shared) and its page."""
    contexts = []

    def make(width: int) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 860})
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.errors = errors  # CSP violations and script errors show up here
        return page
    yield make
    for context in contexts:
        context.close()


def sign_in(page: Any, c: Console, email: str) -> None:
    goto(page, f"{c.url}/admin/")  # 303 to the form
    assert page.url.startswith(f"{c.url}/admin/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{c.url}/admin/")
    assert heading(page) == "Dashboard"


def nav(page: Any, text: str) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name=text, exact=True).click()
    page.wait_for_load_state()


# Every control a person fills or presses has a name a screen reader reads out, and a page one heading.
UNNAMED = """() => {
  const named = el => (el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('title')
    || (el.tagName === 'BUTTON' && el.innerText.trim());
  const controls = [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')];
  return controls.filter(el => !named(el)).map(el => el.outerHTML.slice(0, 120));
}"""


def accessible(page: Any, name: str) -> None:
    assert page.locator("h1").count() == 1, f"{name}: {page.locator('h1').count()} <h1>"
    assert page.evaluate(UNNAMED) == [], f"{name}: controls without a label"
    assert page.evaluate("document.documentElement.lang") == "en"


def both_widths(page: Any, name: str) -> None:
    """Screenshots at desktop width and, on the same page, at phone width."""
    accessible(page, name)
    shoot(page, f"console-{name}-{DESKTOP}")
    page.set_viewport_size({"width": PHONE, "height": 860})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE + 1, f"{name}: the page is {width} px wide on a {PHONE} px phone"
    shoot(page, f"console-{name}-{PHONE}")
    page.set_viewport_size({"width": DESKTOP, "height": 860})


def test_signing_out_ends_the_session(console: Console, pages: Any) -> None:
    page = pages(DESKTOP)
    sign_in(page, console, VIEWER)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{console.url}/admin/login")
    goto(page, f"{console.url}/admin/")
    assert page.url.startswith(f"{console.url}/admin/login")  # the old cookie no longer signs anyone in
    assert not page.errors


def test_users_rm_ends_a_session_open_in_the_browser(console: Console, pages: Any) -> None:
    page = pages(DESKTOP)
    console.add_user("leaving@example.org", "editor")
    sign_in(page, console, "leaving@example.org")
    console.cli("users", "rm", "leaving@example.org")
    goto(page, f"{console.url}/admin/lists")
    assert page.url.startswith(f"{console.url}/admin/login")


def test_a_forged_post_is_refused_and_changes_nothing(console: Console, pages: Any) -> None:
    page = pages(DESKTOP)
    sign_in(page, console, ADMIN)
    # The browser's own cookie goes with it, as with a form on another site; the CSRF token does not.
    answer = page.request.post(f"{console.url}/admin/lists", form={"name": "forged", "title": "Forged"})
    assert answer.status == 403
    answer = page.request.post(f"{console.url}/admin/logout", form={"csrf": "not-the-token"})
    assert answer.status == 403
    goto(page, f"{console.url}/admin/lists")
    assert "forged" not in page.locator("main").inner_text()


@pytest.mark.parametrize("role,email", [("viewer", VIEWER), ("editor", EDITOR), ("sender", SENDER)])
def test_each_role_sees_and_may_do_only_its_part(console: Console, pages: Any, role: str, email: str) -> None:
    page = pages(DESKTOP)
    sign_in(page, console, email)
    links = set(page.get_by_role("navigation", name="Console").get_by_role("link").all_inner_texts())
    assert {"Dashboard", "Lists", "Subscribers", "Issues", "Sends", "Suppressions"} <= links
    assert ("Import" in links) == (role != "viewer")
    assert "Users" not in links and "Audit log" not in links
    goto(page, f"{console.url}/admin/users", status=403)
    goto(page, f"{console.url}/admin/audit", status=403)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    created = page.request.post(f"{console.url}/admin/lists", form={"csrf": csrf, "name": f"by-{role}", "title": "T"},
                                max_redirects=0)
    assert created.status == (403 if role == "viewer" else 303)
    goto(page, f"{console.url}/admin/lists")
    assert (page.get_by_label("Name").count() == 0) == (role == "viewer")  # no form offered to a viewer


def _people_csv(folder: Path) -> Path:
    path = folder / "people.csv"
    rows = [f"{address},{address.split('@')[0].title()}" for address in PEOPLE]
    path.write_text("email,name\n" + "\n".join([*rows, "not-an-address,Nobody"]) + "\n", "utf-8")
    return path


def test_an_admin_creates_a_list_imports_people_sends_the_issue_and_reads_the_report(
        console: Console, pages: Any) -> None:
    page = pages(DESKTOP)
    sign_in(page, console, ADMIN)
    both_widths(page, "dashboard")

    # A list, from the Lists page's form.
    nav(page, "Lists")
    page.get_by_label("Name").fill("news")
    page.get_by_label("Title").fill("Neighbourhood News")
    page.get_by_role("button", name="Create list").click()
    page.wait_for_load_state()
    assert "news" in page.locator("main").inner_text()
    both_widths(page, "lists")

    # A CSV: a dry run first, then the import of the same file, watched to its end.
    nav(page, "Import")
    both_widths(page, "import")
    page.get_by_label("CSV file").set_input_files(str(_people_csv(console.cwd)))
    page.get_by_label("List", exact=True).select_option("news")
    page.get_by_role("button", name="Dry run").click()
    page.get_by_role("heading", name="What the import would do").wait_for(timeout=30_000)
    both_widths(page, "import-dry-run")
    assert json_counts(console)["subscribed"] == 0  # a dry run writes nothing
    page.locator("main").get_by_role("button", name="Import").click()
    page.get_by_role("heading", name="Import finished").wait_for(timeout=60_000)  # htmx polls the progress
    both_widths(page, "import-finished")
    assert json_counts(console)["subscribed"] == len(PEOPLE)
    assert "Rejected" in page.locator("main").inner_text()

    # The reference issue: its check results and previews, then Send, confirmed by typing the list's name.
    nav(page, "Issues")
    both_widths(page, "issues")
    page.locator(f"main a[href=\"/admin/issues/{SLUG}\"]").click()
    page.wait_for_load_state()
    assert page.locator("iframe").count() == 2  # desktop and phone previews
    both_widths(page, "issue")
    page.get_by_label("List", exact=True).select_option("news")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_load_state()
    assert page.locator(".stat-value").first.inner_text().strip() == str(len(PEOPLE))  # the recipient count
    send = page.get_by_role("button", name=re.compile(r"^Send to"))
    assert send.is_disabled()  # until the name is typed (console.js)
    both_widths(page, "issue-confirm")
    page.get_by_label(re.compile("Type the list's name")).fill("news")
    assert send.is_enabled()
    send.click()
    page.wait_for_url(re.compile(r"/admin/sends/\d+$"))

    # The worker inside `serve --with-worker` sends it; the page follows it live to the end.
    page.locator(".badge.state-finished").first.wait_for(timeout=90_000)
    report = json_report(console)
    assert report["sent"] == len(PEOPLE) and report["failed"] == report["unknown"] == 0
    page.reload()
    text = page.locator("main").inner_text()
    assert str(len(PEOPLE)) in text
    chart = page.locator("img.chart")
    assert chart.count() == 1 and chart.evaluate("img => img.complete && img.naturalWidth > 0")
    both_widths(page, "send")
    nav(page, "Sends")
    both_widths(page, "sends")
    assert len(list((console.cwd / "outbox").rglob("*.eml"))) >= len(PEOPLE)

    for name, text in (("subscribers", "Subscribers"), ("suppressions", "Suppressions"), ("users", "Users"),
                       ("audit", "Audit log")):
        nav(page, text)
        both_widths(page, name)
    audit = page.locator("main").inner_text()
    for action in ("console.lists.create", "console.import.run", "console.issues.send"):
        assert action in audit
    assert not page.errors, page.errors  # no CSP violation, no script error on any page


def test_every_other_page_at_both_widths(console: Console, pages: Any) -> None:
    """The pages one level down: a list, a person, adding one, a suppression, a user, the confirmations."""
    import mailer
    import subscribers as subs
    from subscribers.suppression import suppress
    page = pages(DESKTOP)
    sign_in(page, console, ADMIN)
    db = subs.open_database(console.env["NEWSLETTER_DATABASE_URL"], extra_migrations=(mailer.MIGRATIONS,))
    try:
        subs.create_list(db, "club", "The <Club> & Friends")  # escaped on every page
        subs.add_subscriber(db, "ann.example@example.org", "club", "Ann Example", {"city": "Preston"})
        with db.begin() as conn:
            suppress(conn, subs.normalise("bounced@example.org"), "bounce: Permanent/General", "ses")
        person = subs.id_of(db, "ann.example@example.org")
    finally:
        db.dispose()
    for name, path in (("list", "/admin/lists/club"), ("list-remove", "/admin/lists/club/remove"),
                       ("person", f"/admin/subscribers/{person}"), ("person-new", "/admin/subscribers/new"),
                       ("person-forget", f"/admin/subscribers/{person}/forget"),
                       ("user", f"/admin/users/{VIEWER}"), ("user-remove", f"/admin/users/{VIEWER}/remove")):
        goto(page, f"{console.url}{path}")
        assert "<Club>" not in page.content()
        both_widths(page, name)
    nav(page, "Suppressions")
    page.locator("main a[href^='/admin/suppressions/']").first.click()
    page.wait_for_load_state()
    assert "bounced@example.org" in page.locator("main").inner_text()
    both_widths(page, "suppression")
    assert not page.errors, page.errors


def json_counts(c: Console) -> dict[str, Any]:
    import json
    return next(row for row in json.loads(c.cli("lists", "ls", "--json").stdout) if row["name"] == "news")


def json_report(c: Console) -> dict[str, Any]:
    import json
    rows = [row for row in json.loads(c.cli("report", SLUG, "--json").stdout) if row["list"] == "news"]
    assert len(rows) == 1, rows
    return dict(rows[0])


def test_the_login_form_at_both_widths(console: Console, pages: Any) -> None:
    page = pages(DESKTOP)
    goto(page, f"{console.url}/admin/login")
    both_widths(page, "login")
    page.get_by_label("Email").fill(ADMIN)
    page.get_by_label("Password").fill("wrong-password-42")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "Wrong email or password." in page.locator("main").inner_text()
    both_widths(page, "login-failed")
