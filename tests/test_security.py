"""Issue 12, the public web and secrets: each case the attack run found, kept as a regression test.

Web cases run against a real `newsletter serve` process (file or smtp transport, SQLite and
PostgreSQL where storage is involved), or, where the case needs a route that raises, against
the app of tests/test_web.py served by uvicorn. Erasure (`subscribers forget`) is checked
against every table of both packages' metadata, filled through the real paths first.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import http.client
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse

import mailer
import subscribers as subs
from mailer import MessageTemplate, TransportError
from mailer.schema import metadata as mailer_metadata
from mailer.sending import start_send
from newsletter.web.clients import client_address, networks
from newsletter.wiring import envelope
from subscribers.schema import metadata as subscribers_metadata
from tests.ses_peer import NEWSLETTER, cli_env, free_port, newsletter, parse, parts, to_address, wait_for
from tests.test_sns import encode, keys, notification, sign, web
from tests.test_web import (
    BASE,
    BOUNCE,
    FORM,
    ISSUE,
    SECRET,
    SECURITY,
    Site,
    down,
    lite,
    migrated,
    now_sns,
    post_sns,
    rendered,
    server,
    site,
)

__all__ = ["down", "keys", "lite", "migrated", "rendered", "server", "site", "web"]  # fixtures, used by name

PHISH = "URGENT: your account is locked, restore it at https://evil.example/login"


# --- a real `newsletter serve` --------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    port: int
    env: dict[str, str]
    folder: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def outbox(self) -> Path:
        return self.folder / "outbox" / "confirmations"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return newsletter(list(args), self.env, self.folder, check=check)

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> Answer:
        return request(self.port, "POST", path, urlencode(fields).encode(), {**FORM, **(headers or {})})

    def get(self, path: str) -> Answer:
        return request(self.port, "GET", path)

    def confirmations(self, to: str) -> list[email.message.EmailMessage]:
        return [m for m in (parse(p.read_bytes()) for p in sorted(self.outbox.glob("*.eml")))
                if to_address(m) == to.lower()]

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def _wait_healthy(served: Served, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            pytest.fail(f"newsletter serve exited {served.process.returncode}:\n{served.output()}")
        try:
            if request(served.port, "GET", "/healthz").status == 200:
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"newsletter serve did not answer within {timeout:.0f} s:\n{served.output()}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """`serve(database_url, **env)`: a `newsletter serve` on a free port with lists `club` (double opt-in)
    and `open` (single opt-in); stopped (SIGTERM, as Ctrl-C) at the end of the test."""
    started: list[Served] = []

    def start(database_url: str, **extra: str) -> Served:
        folder = tmp_path / f"serve{len(started)}"
        folder.mkdir()
        port = free_port()
        env = cli_env(database_url, **{"NEWSLETTER_TRANSPORT": "file", "NEWSLETTER_OUTBOX": str(folder / "outbox"),
                                       "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}", **extra})
        newsletter(["lists", "create", "club", "--title", "Club News", "--double-opt-in"], env, folder)
        newsletter(["lists", "create", "open", "--title", "Open News"], env, folder)
        log = folder / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen([str(NEWSLETTER), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                       env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
        served = Served(f"http://127.0.0.1:{port}", port, env, folder, log, process)
        started.append(served)
        _wait_healthy(served)
        return served
    yield start
    for served in started:
        served.process.terminate()
        try:
            served.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()


def main_of(answer: Answer) -> str:
    found = re.search(r"<main>(.*)</main>", answer.text, re.S)
    assert found, answer.text[:500]
    return found.group(1)


# --- sign-up: a non-ASCII local part, the confirmation, the answer -------------------------------------


def test_a_non_ascii_local_part_is_a_400_form_not_a_500(serve: Callable[..., Served]) -> None:
    served = serve("sqlite:///news.db")
    answer = served.post("/subscribe/club", {"email": "josé@example.org", "name": ""})
    assert answer.status == 400 and "SMTPUTF8" in answer.text
    assert 'value="josé@example.org"' in answer.text
    assert "Traceback" not in served.output()


@pytest.mark.parametrize("name", [PHISH, "<a href='https://evil.example/'>Click</a>", "Bob http://x.example",
                                  "Ann {{ email }}"])
def test_the_confirmation_echoes_nothing_the_stranger_typed(serve: Callable[..., Served], name: str) -> None:
    served = serve("sqlite:///news.db")
    victim = "victim@example.org"
    assert served.post("/subscribe/club", {"email": victim, "name": name}).status == 200
    wait_for(lambda: bool(served.confirmations(victim)), 10, "the confirmation", interval=0.05)
    [message] = served.confirmations(victim)
    text, html = parts(message)
    whole = f"{message['To']}\n{message['Subject']}\n{text}\n{html}"
    for typed in ("evil.example", "URGENT", "locked", "Click", "x.example", "Bob", "Ann", name):
        assert typed not in whole, typed
    assert str(message["To"]) == victim  # a bare address: no display name
    assert "Hello," in text and "/confirm/" in text


def _same_page(a: Answer, b: Answer, shown_a: str, shown_b: str) -> None:
    assert a.status == b.status == 200
    assert main_of(a).replace(shown_a, "ADDRESS") == main_of(b).replace(shown_b, "ADDRESS")


def test_the_answer_is_the_same_page_whoever_signs_up(serve: Callable[..., Served], db_url: str) -> None:
    served = serve(db_url)
    served.cli("subscribers", "add", "known@example.org", "--list", "club")
    served.cli("subscribers", "add", "left@example.org", "--list", "club")
    served.cli("subscribers", "unsubscribe", "left@example.org", "--list", "club")
    served.cli("subscribers", "forget", "gone@example.org")  # suppressed: only its hash is kept
    answers = {address: served.post("/subscribe/club", {"email": address, "name": "X"})
               for address in ("known@example.org", "left@example.org", "gone@example.org", "newbie@example.org")}
    new = answers["newbie@example.org"]
    for address, answer in answers.items():
        _same_page(answer, new, subs_mask(address), subs_mask("newbie@example.org"))
    # The thread works in order: once the last one's confirmation is out, the others were handled.
    wait_for(lambda: bool(served.confirmations("newbie@example.org")), 10, "newbie's confirmation", interval=0.05)
    assert served.confirmations("known@example.org") == []  # already subscribed: nothing to confirm
    assert len(served.confirmations("left@example.org")) == len(served.confirmations("gone@example.org")) == 1
    assert json.loads(served.cli("subscribers", "show", "known@example.org", "--json").stdout)["lists"][0][
        "status"] == "subscribed"
    assert "Traceback" not in served.output()


def subs_mask(address: str) -> str:
    from newsletter.web.pages import mask
    return mask(address)


@dataclass
class SlowRelay:
    """An SMTP relay that holds each message at DATA until released (or 10 s pass): records the order."""

    release: threading.Event = field(default_factory=threading.Event)
    events: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.events.append("data")
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 10)
        self.messages.append(envelope.original_content)
        self.events.append("delivered")
        return "250 OK"


@pytest.fixture
def slow_relay() -> Iterator[tuple[SlowRelay, str]]:
    relay = SlowRelay()
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield relay, f"smtp://127.0.0.1:{controller.port}"
    finally:
        relay.release.set()
        controller.stop()


def test_the_answer_goes_before_the_mail_and_the_mail_follows_within_seconds(
        serve: Callable[..., Served], db_url: str, slow_relay: tuple[SlowRelay, str]) -> None:
    relay, url = slow_relay
    served = serve(db_url, NEWSLETTER_TRANSPORT="smtp", NEWSLETTER_SMTP_URL=url)
    answer = served.post("/subscribe/club", {"email": "newbie@example.org", "name": "New"})
    relay.events.append("answered")
    # Had the answer waited for the mail, the relay would have held it until its own 10 s ran out.
    relay.release.set()
    assert answer.status == 200 and "check your inbox" in answer.text
    wait_for(lambda: "delivered" in relay.events, 10, "the confirmation at the relay", interval=0.05)
    assert relay.events.index("answered") < relay.events.index("delivered"), relay.events
    [raw] = relay.messages
    assert "/confirm/" in parts(parse(raw))[0]


# --- client addresses ----------------------------------------------------------------------------------


def test_spoofed_forwarding_headers_from_loopback_do_not_escape_the_limit(serve: Callable[..., Served],
                                                                          db_url: str) -> None:
    served = serve(db_url)  # NEWSLETTER_TRUSTED_PROXIES unset: nobody's headers are believed
    statuses = []
    for i in range(30):
        spoof = {"X-Forwarded-For": f"203.0.113.{i}"} if i % 2 else {"Forwarded": f"for=198.51.100.{i}"}
        statuses.append(served.post("/subscribe/open", {"email": f"person{i:02d}@example.org"}, spoof).status)
    assert statuses == [200] * 20 + [429] * 10


def test_a_trusted_proxy_is_believed_for_the_hop_it_added(serve: Callable[..., Served]) -> None:
    served = serve("sqlite:///news.db", NEWSLETTER_TRUSTED_PROXIES="127.0.0.1/32")
    statuses = [served.post("/subscribe/open", {"email": f"p{i:02d}@example.org"},
                            {"X-Forwarded-For": f"198.51.100.9, 203.0.113.{i}"}).status for i in range(25)]
    assert statuses == [200] * 25  # 25 clients behind the proxy, whatever they wrote in front
    same = [served.post("/subscribe/open", {"email": f"q{i:02d}@example.org"},
                        {"X-Forwarded-For": f"10.9.9.{i}, 203.0.113.77"}).status for i in range(21)]
    assert same == [200] * 20 + [429]


@pytest.mark.parametrize("peer, headers, trusted, client", [
    ("127.0.0.1", {"x-forwarded-for": "203.0.113.7"}, (), "127.0.0.1"),
    ("127.0.0.1", {"forwarded": "for=203.0.113.7"}, (), "127.0.0.1"),
    ("127.0.0.1", {"x-forwarded-for": "203.0.113.7"}, ("127.0.0.1",), "203.0.113.7"),
    ("127.0.0.1", {"x-forwarded-for": "6.6.6.6, 203.0.113.7"}, ("127.0.0.1",), "203.0.113.7"),
    ("10.0.0.2", {"x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.0.0.1"}, ("10.0.0.0/8",), "203.0.113.7"),
    ("10.0.0.2", {"x-forwarded-for": "10.0.0.3"}, ("10.0.0.0/8",), "10.0.0.3"),
    ("10.0.0.2", {"x-forwarded-for": "garbage, 10.0.0.3"}, ("10.0.0.0/8",), "10.0.0.3"),
    ("10.0.0.2", {"x-forwarded-for": "unknown"}, ("10.0.0.0/8",), "10.0.0.2"),
    ("10.0.0.2", {}, ("10.0.0.0/8",), "10.0.0.2"),
    ("192.0.2.1", {"x-forwarded-for": "203.0.113.7"}, ("10.0.0.0/8",), "192.0.2.1"),
    ("::1", {"forwarded": 'for="[2001:db8::1]:4711";proto=https, for=::1'}, ("::1",), "2001:db8::1"),
    ("127.0.0.1", {"forwarded": "for=192.0.2.60:8080;by=203.0.113.43"}, ("127.0.0.1",), "192.0.2.60"),
    ("127.0.0.1", {"x-forwarded-for": "203.0.113.7:5555", "forwarded": "for=6.6.6.6"}, ("127.0.0.1",),
     "203.0.113.7"),
])
def test_client_address(peer: str, headers: dict[str, str], trusted: tuple[str, ...], client: str) -> None:
    assert client_address(peer, Headers(headers), networks(trusted)) == client


# --- every error page carries the security headers; a client gone mid-upload is one line ---------------


def _secure(answer: Any) -> bool:
    present = {k.lower() for k in answer.headers.keys()}
    return SECURITY <= present and answer.headers["Referrer-Policy"] == "no-referrer"


def test_every_error_answer_has_the_security_headers_a_500_included(lite: Site, keys: Any) -> None:
    async def boom(request: Any) -> Any:
        raise RuntimeError("a bug")

    async def bare(request: Any) -> Any:  # an answer made without the headers: the app adds them
        return PlainTextResponse("made in a hurry")
    lite.switch.app.add_route("/boom", boom)
    lite.switch.app.add_route("/bare", bare)
    subs.create_list(lite.db, "news", "Example News")
    for _ in range(3):  # an address may sign up three times a day
        lite.http.sign_up("news", "same@example.org")
    answers = {
        200: lite.http.get("/bare"),
        500: lite.http.get("/boom"),
        400: lite.http.get("/u/junk"),
        403: lite.http.post("/webhooks/ses", encode(notification(Timestamp=now_sns())),
                            {"x-amz-sns-message-type": "Notification"}),
        404: lite.http.get("/no/such/page"),
        405: lite.http.get("/webhooks/ses"),
        413: lite.http.post("/subscribe/news", b"email=" + b"a" * 20000),
        429: lite.http.sign_up("news", "same@example.org"),
    }
    for status, answer in answers.items():
        assert answer.status == status, (status, answer.status)
        assert _secure(answer), (status, dict(answer.headers))
        assert b"Traceback" not in answer.body and b"a bug" not in answer.body
    assert "Something went wrong" in answers[500].text and answers[500].is_html
    assert [str(e) for e in lite.switch.raised] == ["a bug"]  # Starlette still raises it on, to be logged


def test_a_database_outage_page_has_the_security_headers(down: Site) -> None:
    answer = down.http.get("/healthz")
    assert answer.status == 503 and _secure(answer)
    page = down.http.get(f"/u/{subs.Tokens(SECRET).unsubscribe(1, 1)}")
    assert page.status == 503 and _secure(page)


def test_an_aborted_upload_is_one_log_line_without_a_traceback(serve: Callable[..., Served]) -> None:
    served = serve("sqlite:///news.db")
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"POST /subscribe/open HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 10000\r\n\r\nemail=someone%40exa")
        time.sleep(0.2)  # the server is reading the body when the client goes
    wait_for(lambda: "disconnected" in served.output(), 10, "the log line", interval=0.05)
    time.sleep(0.3)  # anything else it would log about this request
    log = served.output()
    lines = [line for line in log.splitlines() if "disconnect" in line.lower()]
    assert len(lines) == 1 and "/subscribe/open" in lines[0], log
    assert "Traceback" not in log and "ClientDisconnect" not in log, log
    assert request(served.port, "GET", "/healthz").status == 200


# --- secrets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["k", "changeme", "demo-only-not-a-secret", "secret" * 6])
def test_serve_refuses_a_weak_secret_and_says_how_to_make_one(secret: str, tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'news.db'}", NEWSLETTER_SECRET=secret)
    done = subprocess.run([str(NEWSLETTER), "serve", "--port", str(free_port())], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "NEWSLETTER_SECRET" in done.stderr and "secrets.token_urlsafe(32)" in done.stderr
    assert not (tmp_path / "news.db").exists()


PG_PASSWORD = "pg-pass-word-9x"


@pytest.mark.parametrize("url, said", [
    (f"postgresql+psycopg://postgres:{PG_PASSWORD}@127.0.0.1:notaport/test",
     "bad database URL 'postgresql+psycopg://postgres:***@127.0.0.1:notaport/test'"),
    (f"postgresql+psycopg://postgres:{PG_PASSWORD}@127.0.0.1:{free_port()}/test", "Connection refused"),
    (f"postgresql+nodriver://postgres:{PG_PASSWORD}@127.0.0.1/test",
     "bad database URL 'postgresql+nodriver://postgres:***@127.0.0.1/test'"),
    # An @ inside the password: SQLAlchemy would take the rest for the host, and the resolver's error names it.
    (f"postgresql+psycopg://postgres:ab@{PG_PASSWORD}@127.0.0.1:{free_port()}/test", "write an @ inside the password"),
    (f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test?password={PG_PASSWORD}", "Connection refused"),
])
def test_a_database_url_is_never_printed_with_its_password(url: str, said: str, tmp_path: Path) -> None:
    for command in (["lists", "ls"], ["serve", "--port", str(free_port())]):
        done = newsletter(command, cli_env(url), tmp_path, check=False)
        assert done.returncode == 1, done
        assert PG_PASSWORD not in done.stdout + done.stderr and "Traceback" not in done.stderr
        assert said in done.stderr, done.stderr


def test_serve_names_its_database_with_the_password_masked(serve: Callable[..., Served], db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite URLs hold no password")
    # Trust authentication here: the server ignores the password, so serve starts with it.
    served = serve(db_url.replace("postgres@", f"postgres:{PG_PASSWORD}@"))
    time.sleep(0.2)  # the startup line is flushed before uvicorn starts answering
    out = served.output()
    assert "database postgresql+psycopg://postgres:***@127.0.0.1" in out, out
    assert PG_PASSWORD not in out


# --- forget: every table that can hold an address ------------------------------------------------------

TYPED = "Jeff.Person@Bücher.de"  # as typed: Unicode domain, capitals
STORED = "Jeff.Person@xn--bcher-kva.de"
NAME, TOWN = "Jeffrey Uniquename", "Uniqueville"
# Where an address can be, and where it never is (every table of both packages is in one or the other).
HOLDS_ADDRESS = {"subscribers", "suppressions", "events", "inbound_errors", "deliveries"}
NO_ADDRESS = {"lists", "memberships", "signup_attempts", "sends", "send_runs", "archive", "archive_assets"}


def _tables() -> list[Any]:
    return [*subscribers_metadata.sorted_tables, *mailer_metadata.sorted_tables]


def _dump(db: Any) -> dict[str, str]:
    """Every row of every table, as lower-case text (JSON columns as JSON)."""
    out = {}
    with db.begin() as conn:
        for table in _tables():
            rows = conn.execute(select(table)).all()
            out[table.name] = "\n".join(
                " | ".join(json.dumps(v, default=str) if isinstance(v, dict | list) else str(v) for v in row)
                for row in rows).lower()
    return out


def _count(db: Any, name: str) -> int:
    table = next(t for t in _tables() if t.name == name)
    with db.begin() as conn:
        return len(conn.execute(select(table)).all())


def _needles() -> list[str]:
    shown = subs.display_address(STORED)
    return [STORED.lower(), shown.lower(), json.dumps(shown)[1:-1].lower(), NAME.lower(), TOWN.lower()]


class Refusing:
    """A relay that refuses this one address, quoting it (as relays do)."""

    name = "refusing"

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        if to.lower() == STORED.lower():
            raise TransportError(f"SMTP 550: '<{to}> mailbox unavailable'")
        return "ok"


def _fill(site: Site, rendered: Any, key: Any) -> None:
    """The person in every table that can hold them, each through the path that writes it."""
    subs.create_list(site.db, "news", "Example News", double_opt_in=True)
    subs.create_list(site.db, "other", "Other News")
    subs.add_subscriber(site.db, STORED, "other", name=NAME, fields={"town": TOWN})
    subs.add_subscriber(site.db, "friend@example.org", "other")
    assert site.http.sign_up("news", TYPED, name=NAME).status == 200  # signup_attempts, a membership
    plan = mailer.plan_send(site.db, ISSUE, "other")
    send_id = start_send(site.db, plan, rendered.subject)
    result = mailer.run_send(site.db, send_id, MessageTemplate(rendered, envelope(site.settings, "other")),
                             Refusing(), subs.Tokens(SECRET), BASE, rate=10000, workers=1, sleep=lambda _: None)
    assert result.failed == 1
    bounce = BOUNCE.replace("recipient@example.com", "JEFF.PERSON@xn--BCHER-KVA.de")
    assert post_sns(site, sign(notification(Message=bounce, Timestamp=now_sns()), key)).status == 200
    unreadable = {"eventType": "Bounce", "bounce": 7, "mail": {"destination": [TYPED, "other@example.org"]}}
    for body in (json.dumps(unreadable, ensure_ascii=False), json.dumps(unreadable),
                 json.dumps({**unreadable, "mail": {"destination": ["nobody@example.net"]}})):
        assert post_sns(site, sign(notification(Message=body, Timestamp=now_sns()), key)).status == 200


def test_forget_erases_the_address_from_every_table(site: Site, rendered: Any, keys: Any, db_url: str,
                                                    tmp_path: Path) -> None:
    tables = {t.name for t in _tables()}
    assert tables == HOLDS_ADDRESS | NO_ADDRESS, "a new table: say whether it can hold an address, and erase it"
    _fill(site, rendered, keys.key)
    before = _dump(site.db)
    for table in HOLDS_ADDRESS:  # the test would prove nothing if the address were not there first
        assert any(n in before[table] for n in _needles()[:3]), table
    assert before["inbound_errors"].count("nobody@example.net") == 1

    done = newsletter(["subscribers", "forget", TYPED], cli_env(db_url), tmp_path)
    assert "forgotten" in done.stdout

    after = _dump(site.db)
    for table, text in after.items():
        for needle in _needles():
            assert needle not in text, (table, needle)
    assert "nobody@example.net" in after["inbound_errors"]  # payloads about others stay
    assert _count(site.db, "events") == 1  # what happened stays, for reports
    assert "[forgotten]" in after["deliveries"] and "mailbox unavailable" in after["deliveries"]
    assert subs.normalise(TYPED).hash in after["suppressions"]  # the hash stays, so it is never mailed again
    assert subs.normalise(TYPED).hash in before["signup_attempts"]
    assert subs.normalise(TYPED).hash not in after["signup_attempts"]  # no trace of the form's use either
    shown = newsletter(["subscribers", "show", TYPED, "--json"], cli_env(db_url), tmp_path, check=False)
    assert shown.returncode == 1 and "suppressed" in shown.stderr


def test_the_sign_up_queue_refuses_when_full_and_finishes_what_it_took_at_shutdown() -> None:
    from newsletter.web.signups import SignUpRequest, SignUps
    started, release, done = threading.Event(), threading.Event(), []

    def work(request: SignUpRequest) -> None:
        started.set()
        release.wait(10)
        done.append(request.email)
    queue = SignUps(work, capacity=1)
    assert queue.submit(SignUpRequest("a@example.org", "news", ""))
    assert started.wait(10)  # the thread holds the first: the queue itself is empty
    assert queue.submit(SignUpRequest("b@example.org", "news", ""))
    assert not queue.submit(SignUpRequest("c@example.org", "news", ""))  # the form answers 503
    assert not queue.wait_idle(0.05)
    release.set()
    queue.stop(timeout=10)
    assert done == ["a@example.org", "b@example.org"] and queue.wait_idle(0)
