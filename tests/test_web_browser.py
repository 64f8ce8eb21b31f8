"""The web service (design §7) in a real headless chromium, against a real `newsletter serve`.

One `newsletter serve` process per module, on a free loopback port, with a SQLite
database and the file transport's outbox in a temporary folder; the data is set
up with the real `newsletter` command (lists, an import, a send of issues/2021-01.yaml),
and links are taken out of the .eml files the send and the sign-up form wrote.
Chromium clicks the buttons and fills the forms a reader would. The last tests hold
SQLite's write lock from the test (as a long import or send would) to see what a reader
and an RFC 8058 one-click sender are told while the database is busy.

Screenshots of every page at 1024 and 375 px are written to $NEWSLETTER_SHOTS_DIR
as <page>-<width>.png when that variable is set (nothing is written otherwise).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .ses_peer import ISSUE, NEWSLETTER, cli_env, free_port, newsletter, parse, parts, to_address, wait_for

pytestmark = pytest.mark.browser

PHONE, DESKTOP = 375, 1024
SLUG = "2021-01"
NEWS, NEWS_TITLE = "news", "Neighbourhood News"
CLUB, CLUB_TITLE = "club", "Club News"
# The three people of the `news` list, and what the unsubscribe page may show of each.
PEOPLE = {
    "bob.smith@example.com": "b******h@example.com",
    "carol@example.com": "c***l@example.com",
    # A long domain (33 characters, like many NHS trusts' and councils') with no hyphen to break a line at.
    "j.bloggs@blackpoolteachinghospitals.nhs.uk": "j******s@blackpoolteachinghospitals.nhs.uk",
}
LEAVER, SHOWN, LONG = "bob.smith@example.com", "carol@example.com", "j.bloggs@blackpoolteachinghospitals.nhs.uk"
# A second list that got the issue too, for the failure cases (d.), so they leave `news` alone.
STAFF, STAFF_TITLE = "staff", "Staff Briefing"
LOCKED_OUT, BRIEFLY_BUSY, UNCOUNTED = "locked.out@example.net", "briefly.busy@example.net", "uncounted@example.net"
URL_IN_HEADER = re.compile(r"<(https?://[^>]+)>")


@dataclass
class Service:
    """A running `newsletter serve`, and the real command line against the same database."""

    url: str
    env: dict[str, str]
    cwd: Path
    outbox: Path
    log: Path
    process: subprocess.Popen[bytes] | None
    database: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return newsletter(list(args), self.env, self.cwd)

    def status(self, address: str, list_name: str) -> str | None:
        """The address's status on a list, as `subscribers show --json` tells it."""
        shown = json.loads(self.cli("subscribers", "show", address, "--json").stdout)
        return next((m["status"] for m in shown["lists"] if m["list"] == list_name), None)

    def report(self, list_name: str = NEWS) -> dict[str, Any]:
        """The `report --json` row of the send of the issue to that list."""
        rows = [r for r in json.loads(self.cli("report", SLUG, "--json").stdout) if r["list"] == list_name]
        assert len(rows) == 1, rows
        return dict(rows[0])

    def unsubscribe_urls(self, list_name: str = NEWS) -> dict[str, str]:
        """address -> the URL of its message's List-Unsubscribe header."""
        urls = {}
        for path in sorted((self.outbox / f"{SLUG}_{list_name}").glob("*.eml")):
            message = parse(path.read_bytes())
            found = URL_IN_HEADER.search(str(message["List-Unsubscribe"]))
            assert found, message["List-Unsubscribe"]
            urls[to_address(message)] = found.group(1)
        return urls

    def confirmation_url(self, address: str) -> str:
        """The /confirm/ link of the one confirmation mailed to `address` (waits for it briefly)."""
        folder = self.outbox / "confirmations"
        mine: list[Any] = []

        def arrived() -> bool:
            mine[:] = [m for m in map(parse, (p.read_bytes() for p in sorted(folder.glob("*.eml"))))
                       if to_address(m) == address.lower()]
            return bool(mine)
        wait_for(arrived, 10, f"a confirmation to {address} in {folder}", interval=0.05)
        assert len(mine) == 1, f"{len(mine)} confirmations to {address}"
        text, html = parts(mine[0])
        links = re.findall(r"https?://\S+/confirm/\S+", text)
        assert len(links) == 1, text
        assert links[0].startswith(f"{self.url}/confirm/"), links[0]
        assert links[0] in html
        return str(links[0])


def _wait_healthy(service: Service, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert service.process is not None
        if service.process.poll() is not None:
            pytest.fail(f"newsletter serve exited {service.process.returncode}:\n{service.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{service.url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"newsletter serve did not answer /healthz within {timeout:.0f} s:\n{service.log.read_text()}")


@pytest.fixture(scope="module")
def service(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`news` (3 people, issue 2021-01 sent to them), `club` (double opt-in) and `staff` (3 people, sent the
    issue too), served on a free port."""
    folder = tmp_path_factory.mktemp("web")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = cli_env(f"sqlite:///{folder / 'newsletter.db'}", NEWSLETTER_TRANSPORT="file",
                  NEWSLETTER_OUTBOX=str(folder / "outbox"), NEWSLETTER_BASE_URL=url)
    s = Service(url, env, folder, folder / "outbox", folder / "serve.log", None, folder / "newsletter.db")
    try:
        # The first command migrates the new database; only then may another process open it (two
        # processes migrating a new SQLite database at once can fail: "database is locked").
        s.cli("lists", "create", NEWS, "--title", NEWS_TITLE)
        with s.log.open("wb") as out:  # starts while the rest is set up
            s.process = subprocess.Popen([str(NEWSLETTER), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                         env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        (folder / "people.csv").write_text("email,first_name\n" + "".join(
            f"{address},{address.split('@')[0].split('.')[0].title()}\n" for address in PEOPLE), "utf-8")
        s.cli("subscribers", "import", str(folder / "people.csv"), "--list", NEWS)
        s.cli("send", str(ISSUE), "--list", NEWS, "--yes")
        s.cli("lists", "create", CLUB, "--title", CLUB_TITLE, "--double-opt-in")
        (folder / "staff.csv").write_text(f"email\n{LOCKED_OUT}\n{BRIEFLY_BUSY}\n{UNCOUNTED}\n", "utf-8")
        s.cli("lists", "create", STAFF, "--title", STAFF_TITLE)
        s.cli("subscribers", "import", str(folder / "staff.csv"), "--list", STAFF)
        s.cli("send", str(ISSUE), "--list", STAFF, "--yes")
        _wait_healthy(s)
        yield s
    finally:
        if s.process is not None:
            s.process.terminate()
            try:
                s.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                s.process.kill()
                s.process.wait()


def _loopback_only(route: Any) -> None:
    # The web version links MJML's social icons on a CDN: tests reach this machine only.
    if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[int], Any]]:
    """`open_page(width)`: a fresh page (own context: no cookies shared) at that width."""
    contexts = []

    def make(width: int) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 800})
        contexts.append(context)
        page = context.new_page()
        page.route("**/*", _loopback_only)
        return page
    yield make
    for context in contexts:
        context.close()


def goto(page: Any, url: str, status: int = 200) -> None:
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == status, f"{url}: {response and response.status}"


def shoot(page: Any, name: str) -> None:
    """A full-page screenshot to $NEWSLETTER_SHOTS_DIR/<name>.png, only when that variable is set."""
    shots = os.environ.get("NEWSLETTER_SHOTS_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)


def heading(page: Any) -> str:
    return str(page.locator("h1").inner_text()).strip()


def sign_up(page: Any, service: Service, address: str, name: str) -> None:
    """Fill and send the club's form; lands on the thank-you page."""
    goto(page, f"{service.url}/subscribe/{CLUB}")
    assert CLUB_TITLE in heading(page)
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Name").fill(name)
    with page.expect_navigation():
        page.get_by_role("button", name="Subscribe").click()
    assert heading(page) == "Thank you", page.content()


# --- a. one-click unsubscribe from a real message -------------------------------------------------------


def test_unsubscribe_with_the_button_of_the_list_unsubscribe_page(service: Service, open_page: Any) -> None:
    urls = service.unsubscribe_urls()
    assert sorted(urls) == sorted(PEOPLE)
    url = urls[LEAVER]
    assert url.startswith(f"{service.url}/u/")

    page = open_page(DESKTOP)
    goto(page, url)
    text = page.locator("main").inner_text()
    assert NEWS_TITLE in heading(page)
    assert NEWS_TITLE in text and PEOPLE[LEAVER] in text
    assert LEAVER not in page.content()  # masked, never the whole address
    button = page.get_by_role("button", name=re.compile("Unsubscribe"))
    assert button.count() == 1
    # Opening the page (as a mail scanner would) changed nothing.
    assert service.status(LEAVER, NEWS) == "subscribed"
    assert service.report()["unsubscribed"] == 0

    with page.expect_navigation():
        button.click()
    assert heading(page) == "You are unsubscribed"
    assert PEOPLE[LEAVER] in page.locator("main").inner_text()

    assert service.status(LEAVER, NEWS) == "unsubscribed"
    assert service.report()["unsubscribed"] == 1
    for other in set(PEOPLE) - {LEAVER}:
        assert service.status(other, NEWS) == "subscribed", other


# --- b. double opt-in through the outbox ----------------------------------------------------------------


def test_double_opt_in_confirmed_from_the_mailed_link(service: Service, open_page: Any) -> None:
    address = "erin.jones@example.org"
    page = open_page(DESKTOP)
    sign_up(page, service, address, "Erin Jones")
    assert service.status(address, CLUB) == "unconfirmed"

    url = service.confirmation_url(address)
    goto(page, url)
    assert heading(page) == "You are subscribed"
    assert CLUB_TITLE in page.locator("main").inner_text()
    assert service.status(address, CLUB) == "subscribed"
    shown = json.loads(service.cli("subscribers", "show", address, "--json").stdout)
    assert shown["name"] == "Erin Jones"


# --- c. every page at a phone's width, with screenshots -------------------------------------------------

INPUTS_WITHOUT_LABEL = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !e.closest('[aria-hidden=true]'))
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map(e => e.outerHTML)"""
# Elements sticking out to the right of the viewport: what to look at when the page scrolls sideways.
WIDE = """w => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 0.5)
    .slice(0, 5).map(e => e.tagName.toLowerCase() + ' ' + Math.round(e.getBoundingClientRect().right) + 'px: '
                      + (e.innerText || e.getAttribute('src') || '').slice(0, 60))"""


def _unsubscribe(page: Any, service: Service, n: int) -> None:
    goto(page, service.unsubscribe_urls()[SHOWN])
    assert heading(page).startswith("Unsubscribe from")


def _subscribe(page: Any, service: Service, n: int) -> None:
    goto(page, f"{service.url}/subscribe/{CLUB}")
    assert page.get_by_label("Email address").count() == 1
    assert page.get_by_label("Name").count() == 1


def _thank_you(page: Any, service: Service, n: int) -> None:
    sign_up(page, service, f"thanks{n}@example.org", "Thea Anks")


def _confirmed(page: Any, service: Service, n: int) -> None:
    address = f"welcome{n}@example.org"
    sign_up(page, service, address, "Will Come")
    goto(page, service.confirmation_url(address))
    assert heading(page) == "You are subscribed"


def _archive(page: Any, service: Service, n: int) -> None:
    goto(page, f"{service.url}/archive/")
    assert heading(page) == "Past issues"
    assert page.locator(f'a[href="{SLUG}/"]').count() == 1


def _archive_issue(page: Any, service: Service, n: int) -> None:
    goto(page, f"{service.url}/archive/{SLUG}/")
    assert "friend" in page.locator("body").inner_text()  # merge fields fell back; no one's data


def _not_found(page: Any, service: Service, n: int) -> None:
    goto(page, f"{service.url}/no/such/page", status=404)
    assert heading(page) == "Page not found"


PAGES: dict[str, Callable[[Any, Service, int], None]] = {
    "unsubscribe": _unsubscribe, "subscribe": _subscribe, "thank-you": _thank_you, "confirmed": _confirmed,
    "archive": _archive, "archive-issue": _archive_issue, "not-found": _not_found,
}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_fits_a_phone_and_labels_its_inputs(name: str, service: Service, open_page: Any) -> None:
    for n, width in enumerate((DESKTOP, PHONE)):
        page = open_page(width)
        PAGES[name](page, service, n)
        shoot(page, f"{name}-{width}")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, (f"{name} scrolls sideways at {width} px (scrollWidth {scroll_width}): "
                                       f"{page.evaluate(WIDE, width)}")
        assert page.evaluate(INPUTS_WITHOUT_LABEL) == []


def test_unsubscribe_page_fits_a_phone_with_a_long_address(service: Service, open_page: Any) -> None:
    page = open_page(PHONE)
    goto(page, service.unsubscribe_urls()[LONG])
    shoot(page, f"unsubscribe-long-address-{PHONE}")
    assert PEOPLE[LONG] in page.get_by_role("button").inner_text()
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= PHONE, f"scrollWidth {scroll_width}: {page.evaluate(WIDE, PHONE)}"


# --- d. a busy database: wait a little, else say so (503), and never lose an unsubscribe -----------------


def _writer(service: Service) -> Any:
    """Another writer on the database (a long import, a send claiming its ledger rows): holds its lock."""
    import sqlite3
    lock = sqlite3.connect(service.database, isolation_level=None, timeout=30, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    return lock


def _press_unsubscribe(page: Any) -> tuple[int, str]:
    with page.expect_navigation(timeout=60_000) as navigation:
        page.get_by_role("button", name=re.compile("Unsubscribe")).click()
    return int(navigation.value.status), heading(page)


def test_unsubscribe_while_the_database_stays_busy_is_503_and_changes_nothing(service: Service,
                                                                               open_page: Any) -> None:
    page = open_page(DESKTOP)
    url = service.unsubscribe_urls(STAFF)[LOCKED_OUT]
    goto(page, url)
    assert STAFF_TITLE in heading(page)
    lock = _writer(service)
    try:
        answered = _press_unsubscribe(page)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert answered == (503, "Please try again in a few minutes"), answered
    assert "try again" in page.locator("main").inner_text()
    assert service.status(LOCKED_OUT, STAFF) == "subscribed"
    goto(page, url)  # the reader tries again later
    assert _press_unsubscribe(page) == (200, "You are unsubscribed")
    assert service.status(LOCKED_OUT, STAFF) == "unsubscribed"


def test_unsubscribe_waits_for_a_database_busy_for_a_second(service: Service, open_page: Any) -> None:
    import threading
    page = open_page(DESKTOP)
    goto(page, service.unsubscribe_urls(STAFF)[BRIEFLY_BUSY])
    lock = _writer(service)
    released = threading.Timer(1.5, lambda: (lock.execute("ROLLBACK"), lock.close()))
    released.start()
    try:
        answered = _press_unsubscribe(page)
    finally:
        released.join()
    assert answered == (200, "You are unsubscribed"), answered
    assert service.status(BRIEFLY_BUSY, STAFF) == "unsubscribed"


def test_a_retried_one_click_unsubscribe_is_counted_once(service: Service) -> None:
    import sqlite3
    url = service.unsubscribe_urls(STAFF)[UNCOUNTED]
    counted = service.report(STAFF)["unsubscribed"]

    def one_click() -> int:
        request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    db = sqlite3.connect(service.database, isolation_level=None, timeout=30)
    try:
        db.execute("CREATE TRIGGER test_fail_unsubscribe_event BEFORE INSERT ON events "
                   "WHEN NEW.kind = 'unsubscribe' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        try:
            failed = one_click()
        finally:
            db.execute("DROP TRIGGER test_fail_unsubscribe_event")
    finally:
        db.close()
    assert failed >= 500, f"the failed unsubscribe answered {failed}"
    assert one_click() == 200  # the sender retries, as RFC 8058 senders do after a 5xx
    assert service.status(UNCOUNTED, STAFF) == "unsubscribed"
    assert service.report(STAFF)["unsubscribed"] == counted + 1
