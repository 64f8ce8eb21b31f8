"""The web service of design §7 over real HTTP: unsubscribe, sign-up and confirm, archive, SNS webhook, healthz.

The app from `create_app` is served by uvicorn (the server `newsletter serve` runs) on a
loopback port, and requests go through the standard library's http.client, which sends
paths exactly as written (no dot-segment clean-up, no redirects followed). Starlette's
TestClient needs httpx/httpx2, which is not among the project's dependencies, so it is
not used. One server per module; each test plugs its own app into it.

Databases are real: the `db_url` fixture (SQLite file and PostgreSQL schema) for the
routes that write, a migrated SQLite file otherwise. Mail goes to a recording transport;
the unsubscribe links come from a real send of issues/2021-01.yaml. SNS messages are
signed with the test key of tests/test_sns.py and carry the AWS docs' SES payloads.
"""
from __future__ import annotations

import base64
import email
import email.policy
import functools
import http.client
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import uvicorn
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select

import mailer
import subscribers as subs
from components import load_issue
from mailer import MessageTemplate
from mailer.schema import events, inbound_errors
from mailer.sending import start_send
from newsletter.build import render_configured
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.web.app import create_app
from newsletter.wiring import envelope
from subscribers.schema import lists, memberships, signup_attempts, suppressions
from subscribers.schema import subscribers as people
from tests.test_sns import (
    OTHER_TOPIC,
    SUBSCRIBE_URL,
    TOPIC,
    FakeWeb,
    Keys,
    confirmation,
    encode,
    keys,
    notification,
    sign,
    sns_time,
    web,
)

from .conftest import ISSUES

__all__ = ["keys", "web"]  # fixtures, used by name

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
BOUNCE = (FIXTURES / "event-bounce.json").read_text("utf-8")  # Permanent, recipient@example.com
SECRET = "test-only-signing-key-of-test-web-2Jx7Qm"
BASE = "http://testserver"
ISSUE = "2021-01"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_CLICK = b"List-Unsubscribe=One-Click"
SECURITY = {"content-security-policy", "referrer-policy", "x-content-type-options"}
CONFIRM_LINK = re.compile(r"http://testserver/confirm/[A-Za-z0-9_.\-]+")


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": url, "secret": SECRET, "from_address": "News <news@example.org>",
                              "base_url": BASE, "sns_topic_arns": (TOPIC,)}
    return Settings(**{**values, **overrides})


# --- the server: uvicorn on a loopback port, serving whichever app the current test plugs in ----------


class Switch:
    """The ASGI app uvicorn runs: the current test's app; what it raised is kept for the test to see.

    Starlette has already answered 500 when an exception reaches here. It is kept, not
    re-raised: uvicorn would log it, and Python 3.11's traceback formatting (ast.parse for
    its carets) in the server thread can race pytest's own in the main thread
    ("SystemError: AST constructor recursion depth mismatch", an INTERNALERROR).
    """

    def __init__(self) -> None:
        self.app: Any = None
        self.raised: list[BaseException] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "no app plugged in"
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            self.raised.append(exc)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switch, int]]:
    switch = Switch()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # As `newsletter serve` runs it: uvicorn leaves forwarding headers to the app (NEWSLETTER_TRUSTED_PROXIES).
    config = uvicorn.Config(switch, lifespan="off", log_level="warning", access_log=False, proxy_headers=False,
                            server_header=False)
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield switch, sock.getsockname()[1]
    finally:
        instance.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def is_html(self) -> bool:
        return (self.headers.get("content-type") or "").startswith("text/html")

    def main(self) -> str:
        """The visible text of <main>, whitespace collapsed."""
        found = re.search(r"<main>(.*)</main>", self.text, re.S)
        assert found, self.text[:500]
        return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


class Client:
    def __init__(self, port: int, settle: Any = None):
        self.port = port
        self.settle = settle  # waits for the app's sign-up thread to finish what it was given

    def request(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
        if target.startswith("http"):  # a link from a message: ask this server for its path
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, target, body=body if method not in ("GET", "HEAD") or body else None,
                         headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, target: str) -> Answer:
        return self.request("GET", target)

    def head(self, target: str) -> Answer:
        return self.request("HEAD", target)

    def post(self, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
        return self.request("POST", target, body, headers if headers is not None else FORM)

    def sign_up(self, list_name: str, email_address: str, **fields: str) -> Answer:
        """POST the form, then wait until the serve process has stored the sign-up and mailed its
        confirmation (it does both after answering: see test_security.py for the answer alone)."""
        answer = self.post(f"/subscribe/{list_name}",
                           urlencode({"email": email_address, "name": "", **fields}).encode())
        if self.settle is not None:
            assert self.settle(), "the sign-up thread did not finish within 10 s"
        return answer


# --- mail, sites, database state ---------------------------------------------------------------------


class RecordingTransport:
    name = "test"

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        with self._lock:
            self.sent.append((raw, to, dict(tags)))
            return f"test-{len(self.sent)}"

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
                for raw, rcpt, _ in self.sent if to is None or rcpt == to]


@dataclass
class Site:
    db: Any
    settings: Settings
    mail: RecordingTransport
    fetcher: FakeWeb
    http: Client
    switch: Switch


def _plug(switch: Switch, port: int, database: Any, url: str, fetcher: FakeWeb, mail: Any = None,
          **overrides: Any) -> Site:
    mail = mail or RecordingTransport()
    settings = settings_for(url, **overrides)
    app = create_app(settings, db=database, fetch=fetcher, transport=mail)
    switch.app = app
    switch.raised.clear()
    # The test server runs no lifespan: the first sign-up starts the thread, as under such a server.
    settle = functools.partial(app.state.service.signups.wait_idle, 10)
    return Site(database, settings, mail, fetcher, Client(port, settle), switch)


def _unplug(switch: Switch) -> None:
    """Stop the app's sign-up thread (as its lifespan would at shutdown) and take the app out."""
    switch.app.state.service.signups.stop()
    switch.app = None


@pytest.fixture
def site(db_url: str, server: tuple[Switch, int], web: FakeWeb) -> Iterator[Site]:
    """On SQLite and on PostgreSQL."""
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield _plug(*server, database, db_url, web)
    _unplug(server[0])
    database.dispose()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; `lite` copies it (migrating costs half a second a time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    subs.open_database(f"sqlite:///{path}", extra_migrations=(mailer.MIGRATIONS,)).dispose()
    return path


@pytest.fixture
def lite(migrated: Path, tmp_path: Path, server: tuple[Switch, int], web: FakeWeb) -> Iterator[Site]:
    """On SQLite only: routes whose logic does not touch the SQL dialect."""
    shutil.copy(migrated, tmp_path / "test.db")
    url = f"sqlite:///{tmp_path / 'test.db'}"
    database = subs.open_database(url, extra_migrations=(mailer.MIGRATIONS,))
    yield _plug(*server, database, url, web)
    _unplug(server[0])
    database.dispose()


def snapshot(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that a request could change."""
    with db.begin() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in (people, memberships, suppressions, signup_attempts, events, inbound_errors)}


def status(db: Any, address: str, list_name: str) -> str | None:
    try:
        found = subs.show(db, address)
    except subs.SubscriberNotFound:
        return None
    return next((m["status"] for m in found["lists"] if m["list"] == list_name), None)


def suppressed(db: Any, address: str) -> bool:
    with db.begin() as conn:
        return subs.suppression_of(conn, subs.normalise(address)) is not None


def ids(db: Any, address: str, list_name: str) -> tuple[int, int]:
    with db.begin() as conn:
        person = conn.execute(select(people.c.id).where(people.c.email == address)).scalar_one()
        return person, conn.execute(select(lists.c.id).where(lists.c.name == list_name)).scalar_one()


def count(db: Any, table: Any) -> int:
    with db.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def confirm_link(message: EmailMessage) -> str:
    """The confirmation link, which the text part and the HTML part must both carry."""
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = unescape(message.get_body(("html",)).get_content())  # type: ignore[union-attr]
    in_text, in_html = CONFIRM_LINK.findall(text), CONFIRM_LINK.findall(html)
    assert in_text and in_html, "no /confirm/ link in both parts"
    assert set(in_text) == set(in_html) and len(set(in_text)) == 1
    return in_text[0]


def assert_secure_html(answer: Answer) -> None:
    assert answer.is_html, answer.headers.get("content-type")
    present = {k.lower() for k in answer.headers.keys()}
    assert SECURITY <= present, SECURITY - present
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Traceback" not in answer.text


# --- a real send, for real unsubscribe links -----------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> Any:
    return render_configured(load_issue(ISSUES / f"{ISSUE}.yaml"), settings_for("sqlite://"))


READER = "reader@example.org"
READER_MASKED = "r****r@example.org"
FRIEND = "friend@example.org"


def send_issue(s: Site, rendered: Any, list_name: str = "news") -> dict[str, str]:
    """Send the issue to the list through the ledger; each recipient's List-Unsubscribe URL."""
    plan = mailer.plan_send(s.db, ISSUE, list_name)
    send_id = start_send(s.db, plan, rendered.subject)
    template = MessageTemplate(rendered, envelope(s.settings, list_name))
    before = len(s.mail.sent)
    result = mailer.run_send(s.db, send_id, template, s.mail, subs.Tokens(SECRET), BASE, rate=10000, workers=2,
                             sleep=lambda _: None)
    assert result.sent == plan.to_send > 0
    links = {}
    for raw, to, _ in s.mail.sent[before:]:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        header = str(message["List-Unsubscribe"])
        found = re.fullmatch(r"<(http://testserver/u/[^>]+)>", header)
        assert found, header
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        links[to] = found.group(1)
    return links


@pytest.fixture
def sent(site: Site, rendered: Any) -> dict[str, str]:
    subs.create_list(site.db, "news", "Example News")
    subs.create_list(site.db, "other", "Other News")
    for address in (READER, FRIEND):
        subs.add_subscriber(site.db, address, "news", name="Reader Surname")
    subs.add_subscriber(site.db, READER, "other")
    return send_issue(site, rendered)


# --- GET and POST /u/{token} -------------------------------------------------------------------------


def test_the_unsubscribe_page_names_list_and_masked_address_and_changes_nothing(site: Site,
                                                                                sent: dict[str, str]) -> None:
    link = sent[READER]
    before = snapshot(site.db)
    page = site.http.get(link)
    assert page.status == 200
    assert_secure_html(page)
    assert "Example News" in page.text and READER_MASKED in page.text
    assert READER not in page.text and "reader@" not in page.text
    path = urlsplit(link).path
    form = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert form and unescape(form.group(1)) == path
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert site.http.head(link).status == 200  # a link scanner's HEAD changes nothing either
    assert snapshot(site.db) == before
    assert status(site.db, READER, "news") == "subscribed"


def test_one_click_unsubscribes_once_is_counted_once_and_leaves_other_lists(site: Site,
                                                                           sent: dict[str, str]) -> None:
    link = sent[READER]
    first = site.http.post(link, ONE_CLICK)
    assert first.status == 200
    assert_secure_html(first)
    assert "You are unsubscribed" in first.text and READER_MASKED in first.text and READER not in first.text
    assert status(site.db, READER, "news") == "unsubscribed"
    again = site.http.post(link, ONE_CLICK)  # RFC 8058 senders may retry: idempotent
    assert again.status == 200 and "You are unsubscribed" in again.text
    assert status(site.db, READER, "news") == "unsubscribed"
    assert status(site.db, READER, "other") == "subscribed"
    assert status(site.db, FRIEND, "news") == "subscribed"
    [row] = mailer.report(site.db, ISSUE)
    assert (row["list"], row["sent"], row["unsubscribed"]) == ("news", 2, 1)
    # The page after leaving says so instead of offering the button again.
    page = site.http.get(link)
    assert page.status == 200 and "You are unsubscribed" in page.text and "<form" not in page.text
    # The same link, through the page's own form, is the same request.
    assert site.http.post(link, urlencode({"List-Unsubscribe": "One-Click"}).encode()).status == 200
    assert mailer.report(site.db, ISSUE)[0]["unsubscribed"] == 1


def test_bad_unsubscribe_tokens_are_400_and_change_nothing(site: Site, sent: dict[str, str]) -> None:
    token = urlsplit(sent[READER]).path.removeprefix("/u/")
    payload, _, signature = token.rpartition(".")
    person, list_id = ids(site.db, READER, "news")
    swapped = "A" if signature[0] != "A" else "B"
    other_list = base64.urlsafe_b64encode(json.dumps([person, list_id + 1]).encode()).decode().rstrip("=")
    bad = {
        "tampered signature": f"{payload}.{swapped}{signature[1:]}",
        "tampered payload": f"{other_list}.{signature}",  # the person's other list, old signature
        "random": "not-a-token-at-all",
        "no signature": payload,
        "confirm token": subs.Tokens(SECRET).confirm(person, list_id),
        "other secret": subs.Tokens("another secret").unsubscribe(person, list_id),
    }
    before = snapshot(site.db)
    for what, value in bad.items():
        for method in ("GET", "POST"):
            answer = site.http.request(method, f"/u/{value}", ONE_CLICK if method == "POST" else b"", FORM)
            assert answer.status == 400, (what, method, answer.status)
            assert_secure_html(answer)
            assert "does not work" in answer.text
    assert snapshot(site.db) == before
    assert status(site.db, READER, "news") == "subscribed"
    assert mailer.report(site.db, ISSUE)[0]["unsubscribed"] == 0


def test_a_forgotten_subscribers_link_says_not_on_this_list(site: Site, sent: dict[str, str]) -> None:
    subs.forget(site.db, READER)
    before = snapshot(site.db)
    for method in ("GET", "POST"):
        answer = site.http.request(method, sent[READER], ONE_CLICK if method == "POST" else b"", FORM)
        assert answer.status == 200, (method, answer.status)
        assert_secure_html(answer)
        assert "not on this list" in answer.text
    assert snapshot(site.db) == before
    assert not site.switch.raised


def test_a_proof_link_works_in_form_and_changes_nothing(lite: Site) -> None:
    subs.create_list(lite.db, "news", "Example News")
    subs.add_subscriber(lite.db, READER, "news")
    before = snapshot(lite.db)
    link = f"/u/{subs.Tokens(SECRET).proof()}"
    page = lite.http.get(link)
    assert page.status == 200 and "test message" in page.text and "<form" in page.text
    done = lite.http.post(link, ONE_CLICK)
    assert done.status == 200 and "nothing was changed" in done.text
    assert snapshot(lite.db) == before


def test_an_unsubscribe_token_holds_no_readable_address(lite: Site, rendered: Any) -> None:
    subs.create_list(lite.db, "news")
    subs.add_subscriber(lite.db, READER, "news")
    token = urlsplit(send_issue(lite, rendered)[READER]).path.removeprefix("/u/")
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    for needle in (READER.encode(), b"reader", b"example.org"):
        assert needle not in decoded and needle.decode() not in token


def test_an_unsubscribe_body_over_16_kb_is_413_and_changes_nothing(lite: Site) -> None:
    subs.create_list(lite.db, "news")
    subs.add_subscriber(lite.db, READER, "news")
    before = snapshot(lite.db)
    link = f"/u/{subs.Tokens(SECRET).unsubscribe(*ids(lite.db, READER, 'news'))}"
    answer = lite.http.post(link, ONE_CLICK + b"&x=" + b"a" * (16 * 1024))
    assert answer.status == 413
    assert snapshot(lite.db) == before


# --- GET and POST /subscribe/{list}, GET /confirm/{token} ----------------------------------------------


def test_the_sign_up_form_is_labelled_and_has_a_honeypot(lite: Site) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    page = lite.http.get("/subscribe/news")
    assert page.status == 200
    assert_secure_html(page)
    assert "Example News" in page.text
    for field in ("email", "name"):
        assert f'<label for="{field}">' in page.text and f'id="{field}" name="{field}"' in page.text
    assert 'name="website"' in page.text and 'aria-hidden="true"' in page.text
    assert re.search(r'<form method="post" action="/subscribe/news"', page.text)
    missing = lite.http.get("/subscribe/nope")
    assert missing.status == 404
    assert_secure_html(missing)
    assert lite.http.sign_up("nope", READER).status == 404
    assert count(lite.db, people) == 0


def test_double_opt_in_mails_one_confirmation_and_the_link_subscribes(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    answer = site.http.sign_up("news", "Newbie@Example.org", name="New Bie")
    assert answer.status == 200
    assert_secure_html(answer)
    assert "check your inbox" in answer.text and "newbie@example.org" not in answer.text.lower()
    assert status(site.db, "newbie@example.org", "news") == "unconfirmed"
    [message] = site.mail.messages()
    assert message["To"].addresses[0].addr_spec == "Newbie@example.org"  # the local part as written
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert "Example News" in str(message["Subject"])
    link = confirm_link(message)
    confirmed = site.http.get(link)
    assert confirmed.status == 200
    assert_secure_html(confirmed)
    assert "You are subscribed" in confirmed.text and "N****e@example.org" in confirmed.text
    assert status(site.db, "newbie@example.org", "news") == "subscribed"
    assert site.http.get(link).status == 200  # followed twice (a second click): still subscribed
    assert status(site.db, "newbie@example.org", "news") == "subscribed"
    assert len(site.mail.sent) == 1


def test_a_subscribed_address_gets_the_same_answer_and_no_mail(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    subs.add_subscriber(site.db, READER, "news")
    known = site.http.sign_up("news", READER)
    new = site.http.sign_up("news", "newbie@example.org")
    assert known.status == new.status == 200
    assert (known.main().replace(READER_MASKED, "ADDRESS")
            == new.main().replace("n****e@example.org", "ADDRESS"))
    assert [to for _, to, _ in site.mail.sent] == ["newbie@example.org"]
    assert status(site.db, READER, "news") == "subscribed"


def test_a_filled_honeypot_gets_the_same_answer_and_nothing_is_stored(lite: Site) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    before = snapshot(lite.db)
    bot = lite.http.sign_up("news", "bot@example.org", website="x")
    human = lite.http.sign_up("news", "bob@example.org")
    assert bot.status == human.status == 200
    assert bot.main().replace("b*t@example.org", "A") == human.main().replace("b*b@example.org", "A")
    assert [to for _, to, _ in lite.mail.sent] == ["bob@example.org"]
    assert status(lite.db, "bot@example.org", "news") is None
    after = snapshot(lite.db)
    assert [r for r in after["subscribers"] if "bot" in str(r)] == []
    assert len(after["signup_attempts"]) == len(before["signup_attempts"]) + 2  # bob's address and IP only


@pytest.mark.parametrize("address", ["not an address", "", "someone@", "a@b", "x" * 400 + "@example.org"])
def test_an_invalid_address_is_400_with_the_form_and_nothing_is_stored(lite: Site, address: str) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    before = snapshot(lite.db)
    answer = lite.http.sign_up("news", address, name="Some <b>Name</b>")
    assert answer.status == 400
    assert_secure_html(answer)
    assert 'role="alert"' in answer.text and "whole email address" in answer.text
    assert '<form method="post"' in answer.text and 'aria-invalid="true"' in answer.text
    assert "<b>Name</b>" not in answer.text  # what was typed comes back escaped
    assert snapshot(lite.db) == before and lite.mail.sent == []


def test_the_fourth_sign_up_of_one_address_in_a_day_is_429(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    answers = [site.http.sign_up("news", "newbie@example.org") for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    assert_secure_html(answers[3])
    assert len(site.mail.sent) == 3  # the refused attempt mailed nothing
    assert site.http.sign_up("news", "other@example.org").status == 200  # another address still may


def test_the_21st_sign_up_from_one_client_in_an_hour_is_429(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News")  # single opt-in: no mail to render, same limits
    answers = [site.http.sign_up("news", f"person{i:02d}@example.org") for i in range(21)]
    assert [a.status for a in answers] == [200] * 20 + [429]
    assert status(site.db, "person20@example.org", "news") is None
    # No proxy is trusted by default: a loopback client that names another client is still itself.
    for header in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"}):
        spoofed = site.http.post("/subscribe/news", urlencode({"email": "person20@example.org"}).encode(),
                                 {**FORM, **header})
        assert spoofed.status == 429, header
    assert status(site.db, "person20@example.org", "news") is None
    assert status(site.db, "person19@example.org", "news") == "subscribed"


def test_a_trusted_proxy_names_the_client_the_limit_counts(lite: Site, server: tuple[Switch, int],
                                                           web: FakeWeb) -> None:
    behind = _plug(*server, lite.db, lite.settings.database_url, web, trusted_proxies=("127.0.0.1",))
    subs.create_list(behind.db, "news", "Example News")

    def from_client(n: int, forwarded: dict[str, str]) -> int:
        body = urlencode({"email": f"person{n:02d}@example.org"}).encode()
        return behind.http.post("/subscribe/news", body, {**FORM, **forwarded}).status
    assert [from_client(i, {"X-Forwarded-For": "203.0.113.7"}) for i in range(20)] == [200] * 20
    # The same client again, with a hop of its own choosing written in front: refused.
    assert from_client(20, {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) == 429
    assert from_client(21, {"X-Forwarded-For": "203.0.113.8"}) == 200  # another client behind the proxy
    assert from_client(22, {"Forwarded": 'for="203.0.113.9:4711";proto=https'}) == 200
    assert behind.http.settle is not None and behind.http.settle()
    assert status(behind.db, "person21@example.org", "news") == "subscribed"
    assert status(behind.db, "person20@example.org", "news") is None


def test_someone_who_unsubscribed_comes_back_only_by_confirming(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    subs.add_subscriber(site.db, READER, "news")
    subs.unsubscribe(site.db, READER, "news")
    assert site.http.sign_up("news", READER).status == 200
    assert status(site.db, READER, "news") == "unsubscribed"  # the form alone never re-subscribes
    [message] = site.mail.messages(READER)
    assert site.http.get(confirm_link(message)).status == 200
    assert status(site.db, READER, "news") == "subscribed"


def test_a_suppressed_address_is_only_sent_a_confirmation_and_confirming_lifts_it(site: Site) -> None:
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    address = "bounced@example.org"
    with site.db.begin() as conn:
        subs.suppress_address(conn, subs.normalise(address), "bounce", "ses")
    assert site.http.sign_up("news", address).status == 200
    assert status(site.db, address, "news") == "unconfirmed" and suppressed(site.db, address)
    [message] = site.mail.messages(address)
    assert site.http.get(confirm_link(message)).status == 200
    assert status(site.db, address, "news") == "subscribed" and not suppressed(site.db, address)


def test_a_single_opt_in_list_subscribes_a_new_address_at_once_without_mail(site: Site) -> None:
    subs.create_list(site.db, "open", "Open News")
    answer = site.http.sign_up("open", "newbie@example.org")
    assert answer.status == 200 and "Open News" in answer.text
    assert status(site.db, "newbie@example.org", "open") == "subscribed"
    assert site.mail.sent == []


def test_a_sign_up_body_over_16_kb_is_413(lite: Site) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    answer = lite.http.post("/subscribe/news", urlencode({"email": READER, "name": "n" * 17000}).encode())
    assert answer.status == 413
    assert count(lite.db, people) == 0 and lite.mail.sent == []


def test_a_form_with_too_many_fields_is_a_client_error(lite: Site) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    body = urlencode({"email": READER, **{f"f{i}": "x" for i in range(20)}}).encode()
    answer = lite.http.post("/subscribe/news", body)
    assert 400 <= answer.status < 500, answer.status
    assert count(lite.db, people) == 0


def test_bad_confirmation_links_are_400_and_change_nothing(lite: Site) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    lite.http.sign_up("news", READER)
    good = urlsplit(confirm_link(lite.mail.messages()[0])).path.removeprefix("/confirm/")
    person, list_id = ids(lite.db, READER, "news")
    before = snapshot(lite.db)
    for bad in (good[:-2] + ("xy" if not good.endswith("xy") else "zz"), "junk",
                subs.Tokens(SECRET).unsubscribe(person, list_id), subs.Tokens("other").confirm(person, list_id)):
        answer = lite.http.get(f"/confirm/{bad}")
        assert answer.status == 400, bad
        assert_secure_html(answer)
        assert "does not work" in answer.text
    assert snapshot(lite.db) == before
    assert status(lite.db, READER, "news") == "unconfirmed"


def test_an_expired_confirmation_link_is_400_and_says_so(lite: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    subs.request_subscription(lite.db, READER, "news")
    person, list_id = ids(lite.db, READER, "news")
    eight_days_ago = int(time.time()) - 8 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: eight_days_ago)
    token = subs.Tokens(SECRET).confirm(person, list_id)
    monkeypatch.undo()  # the server checks it with the real clock
    answer = lite.http.get(f"/confirm/{token}")
    assert answer.status == 400
    assert_secure_html(answer)
    assert "expired" in answer.text
    assert status(lite.db, READER, "news") == "unconfirmed"


def test_a_head_request_does_not_confirm(lite: Site) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    lite.http.sign_up("news", READER)
    link = confirm_link(lite.mail.messages()[0])
    answer = lite.http.head(link)
    assert status(lite.db, READER, "news") == "unconfirmed", f"HEAD answered {answer.status} and confirmed"


# --- the archive -------------------------------------------------------------------------------------


def test_the_archive_is_empty_before_any_send(lite: Site) -> None:
    page = lite.http.get("/archive/")
    assert page.status == 200
    assert_secure_html(page)
    assert "No issues have been sent yet." in page.text and "<li>" not in page.text
    assert lite.http.get(f"/archive/{ISSUE}/").status == 404


def test_a_published_issue_is_listed_served_with_its_images_and_nothing_else(lite: Site, rendered: Any) -> None:
    subs.create_list(lite.db, "news")
    subs.add_subscriber(lite.db, READER, "news", name="Reader Surname", fields={"town": "Sometown"})
    mailer.publish(lite.db, rendered)
    index = lite.http.get("/archive/")
    assert index.status == 200
    assert f'href="{ISSUE}/"' in index.text and "Friends, your January news is here" in index.text
    redirect = lite.http.get(f"/archive/{ISSUE}")
    assert redirect.status == 308 and redirect.headers["Location"] == f"/archive/{ISSUE}/"
    page = lite.http.get(f"/archive/{ISSUE}/")
    assert page.status == 200
    assert_secure_html(page)
    assert "{{" not in page.text and "{%" not in page.text
    for personal in (READER, "Reader Surname", "Sometown"):
        assert personal not in page.text
    images = re.findall(r'src="(images/[^"]+)"', page.text)
    assert len(images) >= 5, images
    for src in set(images):
        image = lite.http.get(f"/archive/{ISSUE}/{src}")
        assert image.status == 200, src
        assert (image.headers["Content-Type"] or "").startswith("image/"), image.headers["Content-Type"]
        assert image.body == rendered.assets[src].read_bytes()  # a source image, or one made from it
        assert image.headers["X-Content-Type-Options"] == "nosniff"
    missing = lite.http.get("/archive/1999-01/")
    assert missing.status == 404
    assert_secure_html(missing)
    assert lite.http.get(f"/archive/{ISSUE}/images/nope.png").status == 404


@pytest.mark.parametrize("path", [f"/archive/{ISSUE}/../../etc/passwd", f"/archive/{ISSUE}/%2e%2e/%2e%2e/etc/passwd",
                                  f"/archive/{ISSUE}/images/..%2f..%2f..%2fetc%2fpasswd", "/archive/../etc/passwd",
                                  f"/archive/{ISSUE}/..%2f..%2fnewsletter.toml.sample"])
def test_path_traversal_leaks_nothing(lite: Site, rendered: Any, path: str) -> None:
    mailer.publish(lite.db, rendered)
    answer = lite.http.get(path)
    assert answer.status in (400, 404), answer.status
    assert b"root:" not in answer.body and b"[newsletter]" not in answer.body and b"database_url" not in answer.body


# --- POST /webhooks/ses --------------------------------------------------------------------------------


def now_sns() -> str:
    return sns_time(datetime.now(UTC))  # the app's verifier reads the real clock


def post_sns(s: Site, body: dict[str, Any] | bytes, kind: str | None = "Notification") -> Answer:
    headers = {"Content-Type": "text/plain; charset=UTF-8"}
    if kind is not None:
        headers["x-amz-sns-message-type"] = kind
    return s.http.post("/webhooks/ses", body if isinstance(body, bytes) else encode(body), headers)


def test_a_signed_bounce_suppresses_the_address(site: Site, keys: Keys) -> None:
    subs.create_list(site.db, "news")
    subs.add_subscriber(site.db, "recipient@example.com", "news")
    body = sign(notification(Message=BOUNCE, Timestamp=now_sns()), keys.key, "2")
    answer = post_sns(site, body)
    assert (answer.status, answer.text) == (200, "notification")
    assert suppressed(site.db, "recipient@example.com")
    assert (count(site.db, events), count(site.db, suppressions)) == (1, 1)
    assert post_sns(site, body).status == 200  # SNS delivers at least once
    assert (count(site.db, events), count(site.db, suppressions)) == (1, 1)


def test_what_does_not_verify_is_403_and_changes_nothing(site: Site, keys: Keys) -> None:
    subs.create_list(site.db, "news")
    subs.add_subscriber(site.db, "recipient@example.com", "news")
    good = sign(notification(Message=BOUNCE, Timestamp=now_sns()), keys.key)
    refused: dict[str, tuple[dict[str, Any] | bytes, str | None]] = {
        "forged": (sign(notification(Message=BOUNCE, Timestamp=now_sns()), keys.other_key), "Notification"),
        "tampered": ({**sign(notification(Message=BOUNCE.replace("Permanent", "Transient"), Timestamp=now_sns()),
                             keys.key), "Message": BOUNCE}, "Notification"),
        "wrong topic": (sign(notification(Message=BOUNCE, TopicArn=OTHER_TOPIC, Timestamp=now_sns()), keys.key),
                        "Notification"),
        "replayed": (sign(notification(Message=BOUNCE, Timestamp=sns_time(datetime.now(UTC) - timedelta(hours=2))),
                          keys.key), "Notification"),
        "header mismatch": (good, "SubscriptionConfirmation"),
        "not json": (b"hello", "Notification"),
        "unsigned": ({k: v for k, v in good.items() if k != "Signature"}, "Notification"),
    }
    before = snapshot(site.db)
    for what, (body, kind) in refused.items():
        site.fetcher.fetched.clear()
        answer = post_sns(site, body, kind)
        assert answer.status == 403, (what, answer.status, answer.text)
        assert answer.text.startswith("refused") and "Traceback" not in answer.text
        if what in ("wrong topic", "header mismatch", "not json"):
            assert site.fetcher.fetched == [], what  # refused before any request
    assert snapshot(site.db) == before
    assert not suppressed(site.db, "recipient@example.com")


def test_a_subscription_confirmation_fetches_the_subscribe_url_once(site: Site, keys: Keys) -> None:
    before = snapshot(site.db)
    answer = post_sns(site, sign(confirmation(Timestamp=now_sns()), keys.key), "SubscriptionConfirmation")
    assert (answer.status, answer.text) == (200, "subscription-confirmed")
    assert site.fetcher.fetched.count(SUBSCRIBE_URL) == 1
    assert snapshot(site.db) == before


def test_an_sns_body_over_256_kb_is_413_and_only_post_is_allowed(lite: Site, keys: Keys) -> None:
    body = sign(notification(Message=BOUNCE + " " * (256 * 1024), Timestamp=now_sns()), keys.key)
    answer = post_sns(lite, body)
    assert answer.status == 413
    assert count(lite.db, events) == count(lite.db, inbound_errors) == 0
    assert lite.fetcher.fetched == []
    wrong = lite.http.get("/webhooks/ses")
    assert wrong.status == 405 and wrong.headers["X-Content-Type-Options"] == "nosniff"


# --- /healthz, database outages, headers, configuration -----------------------------------------------


def test_healthz_answers_ok(lite: Site) -> None:
    answer = lite.http.get("/healthz")
    assert (answer.status, answer.text) == (200, "ok")
    assert lite.http.head("/healthz").status == 200


UNREACHABLE = ["sqlite:////nonexistent/dir/x.db", "postgresql+psycopg://postgres@127.0.0.1:1/none"]


@pytest.fixture(params=UNREACHABLE, ids=["sqlite", "postgresql"])
def down(request: pytest.FixtureRequest, server: tuple[Switch, int], web: FakeWeb) -> Iterator[Site]:
    """An app whose database cannot be opened (the engine connects lazily, so the app starts)."""
    database = subs.open_database(request.param, migrate=False, extra_migrations=(mailer.MIGRATIONS,))
    yield _plug(*server, database, request.param, web)
    _unplug(server[0])
    database.dispose()


def test_healthz_is_503_when_the_database_cannot_be_opened(down: Site) -> None:
    answer = down.http.get("/healthz")
    assert answer.status == 503, (answer.status, answer.text)


@pytest.mark.parametrize("method, path", [("POST", "/u/{unsubscribe}"), ("GET", "/u/{unsubscribe}"),
                                          ("GET", "/confirm/{confirm}")])
def test_a_database_outage_is_not_reported_as_success_or_as_a_bad_link(down: Site, method: str, path: str) -> None:
    tokens = subs.Tokens(SECRET)
    target = path.format(unsubscribe=tokens.unsubscribe(1, 1), confirm=tokens.confirm(1, 1))
    answer = down.http.request(method, target, ONE_CLICK if method == "POST" else b"", FORM)
    assert answer.status >= 500, (answer.status, answer.main() if answer.is_html else answer.text)


def test_every_page_is_html_with_security_headers_and_no_traceback(lite: Site, rendered: Any) -> None:
    subs.create_list(lite.db, "news", "Example News", double_opt_in=True)
    subs.add_subscriber(lite.db, READER, "news")
    mailer.publish(lite.db, rendered)
    token = subs.Tokens(SECRET).unsubscribe(*ids(lite.db, READER, "news"))
    answers = {
        "unknown path": lite.http.get("/no/such/page"),
        "unknown path, POST": lite.http.post("/no/such/page", b"x=1"),
        "unsubscribe page": lite.http.get(f"/u/{token}"),
        "bad token": lite.http.get("/u/junk"),
        "form": lite.http.get("/subscribe/news"),
        "no list": lite.http.get("/subscribe/none"),
        "thanks": lite.http.sign_up("news", "newbie@example.org"),
        "invalid": lite.http.sign_up("news", "nope"),
        "bad confirm": lite.http.get("/confirm/junk"),
        "archive": lite.http.get("/archive/"),
        "issue": lite.http.get(f"/archive/{ISSUE}/"),
        "no issue": lite.http.get("/archive/nope/"),
        "unsubscribed": lite.http.post(f"/u/{token}", ONE_CLICK),
    }
    for _ in range(3):
        lite.http.sign_up("news", READER)
    answers["too many"] = lite.http.sign_up("news", READER)
    assert answers["unknown path"].status == answers["unknown path, POST"].status == 404
    assert answers["too many"].status == 429
    for what, answer in answers.items():
        assert answer.is_html, what
        assert_secure_html(answer)
    others = [lite.http.get("/healthz"), lite.http.get("/webhooks/ses"), lite.http.post("/archive/", b""),
              lite.http.get(f"/archive/{ISSUE}/images/logo.png"), lite.http.get(f"/archive/{ISSUE}")]
    for answer in others:
        assert answer.headers["Referrer-Policy"] == "no-referrer" and b"Traceback" not in answer.body
    assert not lite.switch.raised


def test_create_app_without_a_strong_secret_refuses_to_start(tmp_path: Path) -> None:
    for secret in (None, "", "s", "changeme", "demo-only-not-a-secret", "changeme" * 5):
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", secret=secret)
        with pytest.raises(NewsletterError, match="NEWSLETTER_SECRET"):
            create_app(settings)
    assert not (tmp_path / "x.db").exists()  # refused before touching the database

