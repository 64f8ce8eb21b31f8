"""Sending an issue to a list (design §6, §8), on SQLite and PostgreSQL.

Real databases (the `db_url` fixture), the real file transport writing .eml
files into tmp_path, the real issue 2021-01. Where a test needs a transport
fault no real peer produces on demand (a permanent rejection, throttling, a
paused account), it wraps the file transport in a small transport of its own
that raises mailer.TransportError or counts calls. SES itself is tested
elsewhere (moto), not here.
"""
from __future__ import annotations

import email
import email.policy
import re
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update

import mailer
import subscribers as subs
from components import render_issue
from mailer import Envelope, MessageTemplate, SendStopped, TransportError
from mailer.schema import deliveries, sends
from mailer.sending import MAX_CONSECUTIVE_ERRORS, start_send
from subscribers.schema import subscribers as subscribers_table
from subscribers.suppression import suppress

from .conftest import ISSUES

BASE = "https://news.example.org"
ISSUE = "2021-01"
LIST = "members"
SECRET = "k"
REPORT_KEYS = {"id", "issue", "list", "segment", "state", "recipients", "sent", "failed", "pending", "unknown",
               "skipped", "delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed"}
NO_SLEEP: Callable[[float], None] = lambda s: None  # noqa: E731


@pytest.fixture(scope="module")
def rendered():
    return render_issue(ISSUES / f"{ISSUE}.yaml", base_url=BASE)


@pytest.fixture
def template(rendered):
    return MessageTemplate(rendered, Envelope("News <news@example.org>", f"<{LIST}.example.org>"))


@pytest.fixture
def ledger(db_url):
    """The database with the mailer's ledger tables as well as the audience's."""
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield database
    database.dispose()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def files(outbox):
    return mailer.make_transport("file", outbox=str(outbox))


def address(i: int) -> str:
    return f"reader{i:02d}@example.org"


def populate(db, n: int = 30, list_name: str = LIST) -> list[str]:
    subs.create_list(db, list_name)
    out = []
    for i in range(n):
        fields = {"town": f"Town {i}"} if i % 3 else {}
        subs.add_subscriber(db, address(i), list_name, name=f"Reader{i} Surname", fields=fields)
        out.append(address(i))
    return out


def begin(db, template, list_name: str = LIST) -> int:
    plan = mailer.plan_send(db, ISSUE, list_name)
    return start_send(db, plan, template.subject_for(mailer.Recipient("x@example.org")))


def run(db, send_id, template, transport, **kwargs) -> mailer.SendResult:
    kwargs.setdefault("rate", 10000)
    kwargs.setdefault("workers", 4)
    kwargs.setdefault("sleep", NO_SLEEP)
    return mailer.run_send(db, send_id, template, transport, subs.Tokens(SECRET), BASE, **kwargs)


def messages(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(outbox.rglob("*.eml"))]


def recipients_in(outbox: Path) -> Counter[str]:
    return Counter(m["To"].addresses[0].addr_spec for m in messages(outbox))


def rows(db, send_id: int) -> dict[str | None, dict]:
    """The ledger of one send by subscriber email (None for forgotten subscribers)."""
    with db.begin() as conn:
        found = conn.execute(
            select(deliveries, subscribers_table.c.email)
            .select_from(deliveries.outerjoin(subscribers_table, deliveries.c.subscriber_id == subscribers_table.c.id))
            .where(deliveries.c.send_id == send_id)).mappings().all()
    return {r["email"]: dict(r) for r in found}


def states(db, send_id: int) -> Counter[str]:
    return Counter(r["state"] for r in rows_list(db, send_id))


def rows_list(db, send_id: int) -> list[dict]:
    with db.begin() as conn:
        return [dict(r) for r in conn.execute(select(deliveries).where(deliveries.c.send_id == send_id)).mappings()]


def send_state(db, send_id: int) -> str:
    with db.begin() as conn:
        return conn.execute(select(sends.c.state).where(sends.c.id == send_id)).scalar_one()


def ids_by_email(db) -> dict[str, int]:
    with db.begin() as conn:
        return {e: i for i, e in conn.execute(select(subscribers_table.c.id, subscribers_table.c.email))}


class Faulty:
    """A transport of the test's own: delegates to the file transport unless `fault` raises first.

    `fault(to, attempt, call)` gets the recipient, how many times this recipient was tried
    (1 for the first) and the overall call number (1 for the first); it may raise a
    TransportError. Every call is counted, thread-safely.
    """

    name = "faulty"

    def __init__(self, inner, fault=None, on_call=None):
        self.inner, self.fault, self.on_call = inner, fault, on_call
        self.calls: Counter[str] = Counter()
        self.tags: dict[str, dict[str, str]] = {}
        self.total = 0
        self._lock = threading.Lock()

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        with self._lock:
            self.calls[to] += 1
            self.total += 1
            attempt, call = self.calls[to], self.total
            self.tags[to] = dict(tags)
        if self.on_call is not None:
            self.on_call(to, call)
        if self.fault is not None:
            self.fault(to, attempt, call)
        return self.inner.send(raw, to, tags)


# --- the plan (dry run) ---------------------------------------------------------------------------

def test_plan_counts_who_will_and_will_not_be_mailed(ledger):
    subs.create_list(ledger, LIST, double_opt_in=True)
    for i in range(5):
        subs.add_subscriber(ledger, address(i), LIST)  # an admin adds: subscribed at once
    for i in (100, 101):
        subs.add_subscriber(ledger, address(i), LIST)
        subs.unsubscribe(ledger, address(i), LIST)
    for i in (200, 201, 202):  # sign-ups not confirmed yet
        assert subs.request_subscription(ledger, address(i), LIST) == "unconfirmed"
    subs.add_subscriber(ledger, address(300), LIST)
    with ledger.begin() as conn:
        suppress(conn, subs.normalise(address(300)), "hard bounce", "bounce")

    plan = mailer.plan_send(ledger, ISSUE, LIST)
    assert plan.statuses == {"subscribed": 6, "unsubscribed": 2, "unconfirmed": 3}
    assert plan.suppressed == 1
    assert plan.to_send == 5
    assert plan.send_id is None and plan.ledger == {}
    with ledger.begin() as conn:  # planning writes nothing
        assert conn.execute(select(sends)).all() == []
        assert conn.execute(select(deliveries)).all() == []


def test_an_unknown_list_is_a_subscribers_error(ledger):
    with pytest.raises(subs.ListNotFound):
        mailer.plan_send(ledger, ISSUE, "nope")


def test_only_subscribed_unsuppressed_people_are_mailed(ledger, template, files, outbox):
    populate(ledger, 4)
    subs.add_subscriber(ledger, "gone@example.org", LIST)
    subs.unsubscribe(ledger, "gone@example.org", LIST)
    subs.add_subscriber(ledger, "bounced@example.org", LIST)
    with ledger.begin() as conn:
        suppress(conn, subs.normalise("bounced@example.org"), "hard bounce", "bounce")
    send_id = begin(ledger, template)
    result = run(ledger, send_id, template, files)
    assert recipients_in(outbox) == Counter({address(i): 1 for i in range(4)})
    assert (result.sent, result.failed, result.skipped) == (4, 0, 1)
    assert rows(ledger, send_id)["bounced@example.org"]["state"] == "skipped"
    assert "gone@example.org" not in rows(ledger, send_id)  # never frozen into the send


# --- exactly once ---------------------------------------------------------------------------------

def test_each_subscriber_gets_exactly_one_message_and_a_rerun_sends_nothing(ledger, template, files, outbox):
    people = populate(ledger, 30)
    plan = mailer.plan_send(ledger, ISSUE, LIST)
    assert plan.to_send == 30
    send_id = start_send(ledger, plan, "subject")
    result = run(ledger, send_id, template, files)
    assert (result.sent, result.failed, result.skipped, result.stopped) == (30, 0, 0, None)
    assert recipients_in(outbox) == Counter({p: 1 for p in people})
    assert send_state(ledger, send_id) == "finished"
    ledger_rows = rows(ledger, send_id)
    assert {r["state"] for r in ledger_rows.values()} == {"sent"}
    assert {r["attempts"] for r in ledger_rows.values()} == {1}
    assert all(r["sent_at"] is not None and r["error"] is None for r in ledger_rows.values())
    # the ledger's message ids are the transport's: the file names
    assert {r["message_id"] for r in ledger_rows.values()} == {p.stem for p in outbox.rglob("*.eml")}
    # the file transport files a send's messages under the send's tag
    assert {p.parent.name for p in outbox.rglob("*.eml")} == {f"{ISSUE}_{LIST}"}

    # again: the same send, finished; nothing goes out
    again = mailer.plan_send(ledger, ISSUE, LIST)
    assert again.send_id == send_id and again.to_send == 0 and again.ledger == {"sent": 30}
    assert start_send(ledger, again, "subject") == send_id
    second = run(ledger, send_id, template, files)
    assert (second.sent, second.failed, second.skipped) == (0, 0, 0)
    assert len(list(outbox.rglob("*.eml"))) == 30


def test_messages_are_personalised_and_their_tokens_name_the_subscriber_and_list(ledger, template, files,
                                                                                  outbox):
    populate(ledger, 12)
    send_id = begin(ledger, template)
    run(ledger, send_id, template, files)
    with ledger.begin() as conn:
        list_id = subs.get_list(conn, LIST).id
    ids = ids_by_email(ledger)
    tokens = subs.Tokens(SECRET)
    found = messages(outbox)
    assert len(found) == 12
    for message in found:
        to = message["To"].addresses[0]
        i = int(to.addr_spec[6:8])
        assert to.display_name == f"Reader{i} Surname"
        assert message["Subject"] == f"Reader{i}, your January news is here"
        body = message.get_body(("html",)).get_content()
        assert f"Dear Reader{i}," in body
        assert (f"Town {i}" if i % 3 else "our town") in body
        (url,) = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        assert url.startswith(f"{BASE}/u/")
        assert f'href="{url}"' in body
        target = tokens.read_unsubscribe(url.rsplit("/", 1)[1])
        assert (target.subscriber_id, target.list_id) == (ids[to.addr_spec], list_id)
        assert not target.is_proof
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with pytest.raises(subs.InvalidToken):
        subs.Tokens("another secret").read_unsubscribe(url.rsplit("/", 1)[1])


def test_transport_tags_map_each_message_back_to_its_send_row_and_subscriber(ledger, template, files):
    populate(ledger, 6)
    send_id = begin(ledger, template)
    spy = Faulty(files)
    run(ledger, send_id, template, spy)
    ids = ids_by_email(ledger)
    ledger_rows = rows(ledger, send_id)
    assert set(spy.tags) == set(ledger_rows)
    for to, tags in spy.tags.items():
        assert tags["send_id"] == str(send_id)
        assert tags["subscriber_id"] == str(ids[to])
        assert tags["delivery_id"] == str(ledger_rows[to]["id"])
        assert re.fullmatch(r"[A-Za-z0-9_-]+", tags["send"])


def test_recipients_are_frozen_when_the_send_starts(ledger, template, files, outbox):
    populate(ledger, 10)
    send_id = begin(ledger, template)
    subs.add_subscriber(ledger, "late@example.org", LIST, name="Late Comer")
    run(ledger, send_id, template, files)
    got = recipients_in(outbox)
    assert "late@example.org" not in got and sum(got.values()) == 10
    assert len(rows(ledger, send_id)) == 10
    assert mailer.plan_send(ledger, ISSUE, LIST).to_send == 0  # the late comer waits for the next issue


def test_who_leaves_after_the_start_is_skipped(ledger, template, files, outbox):
    populate(ledger, 10)
    send_id = begin(ledger, template)
    subs.unsubscribe(ledger, address(1), LIST)
    subs.forget(ledger, address(2))
    with ledger.begin() as conn:
        suppress(conn, subs.normalise(address(3)), "complaint", "complaint")
    result = run(ledger, send_id, template, files)
    got = recipients_in(outbox)
    assert set(got) == {address(i) for i in range(10)} - {address(1), address(2), address(3)}
    assert set(got.values()) == {1}
    assert (result.sent, result.skipped) == (7, 3)
    ledger_rows = rows(ledger, send_id)
    assert ledger_rows[address(1)]["state"] == "skipped" and "unsubscribed" in ledger_rows[address(1)]["error"]
    assert ledger_rows[address(3)]["state"] == "skipped" and "suppressed" in ledger_rows[address(3)]["error"]
    forgotten = ledger_rows[None]  # forget removed the person; the row keeps no link to them
    assert forgotten["state"] == "skipped" and "forgotten" in forgotten["error"]
    assert forgotten["subscriber_id"] is None
    assert send_state(ledger, send_id) == "finished"


def test_who_leaves_during_the_send_before_their_turn_is_skipped(ledger, template, files, outbox):
    populate(ledger, 20)
    send_id = begin(ledger, template)
    done = threading.Event()

    def leave_early(to: str, call: int) -> None:
        if call == 1 and not done.is_set():  # while the first batch goes out, the last ones leave
            done.set()
            subs.unsubscribe(ledger, address(19), LIST)
            subs.forget(ledger, address(18))
            with ledger.begin() as conn:
                suppress(conn, subs.normalise(address(17)), "hard bounce", "bounce")

    # A low nominal rate keeps claims small (eligibility is checked per claim); the limiter
    # itself lets messages through at once so the test stays fast.
    result = run(ledger, send_id, template, Faulty(files, on_call=leave_early), workers=1, rate=4,
                 limiter=mailer.RateLimiter(1e6))
    got = recipients_in(outbox)
    assert set(got) == {address(i) for i in range(17)}
    assert set(got.values()) == {1}
    assert (result.sent, result.skipped) == (17, 3)


# --- faults ---------------------------------------------------------------------------------------

def test_a_permanent_rejection_fails_only_that_recipient(ledger, template, files, outbox):
    populate(ledger, 10)
    send_id = begin(ledger, template)

    def reject(to: str, attempt: int, call: int) -> None:
        if to == address(4):
            raise TransportError("550 5.1.1 mailbox does not exist", code="MessageRejected")

    spy = Faulty(files, reject)
    result = run(ledger, send_id, template, spy)
    assert (result.sent, result.failed, result.stopped) == (9, 1, None)
    assert result.errors == {"MessageRejected": 1}
    assert spy.calls[address(4)] == 1  # a permanent error is not retried
    assert address(4) not in recipients_in(outbox)
    row = rows(ledger, send_id)[address(4)]
    assert row["state"] == "failed" and "550 5.1.1 mailbox does not exist" in row["error"]
    assert row["message_id"] is None and row["attempts"] == 1
    assert send_state(ledger, send_id) == "finished"
    # a rerun does not retry a failed recipient
    assert run(ledger, send_id, template, spy).sent == 0
    assert spy.calls[address(4)] == 1


def test_a_retryable_error_is_retried_then_sent(ledger, template, files, outbox):
    populate(ledger, 8)
    send_id = begin(ledger, template)
    sleeps: list[float] = []

    def throttle(to: str, attempt: int, call: int) -> None:
        if to == address(5) and attempt <= 2:
            raise TransportError("Throttling: Maximum sending rate exceeded", retryable=True, code="Throttling")

    spy = Faulty(files, throttle)
    result = run(ledger, send_id, template, spy, sleep=sleeps.append)
    assert (result.sent, result.failed, result.stopped) == (8, 0, None)
    assert spy.calls[address(5)] == 3
    assert len(sleeps) == 2 and all(0 < s <= 60 for s in sleeps)  # backed off between tries
    assert recipients_in(outbox) == Counter({address(i): 1 for i in range(8)})
    row = rows(ledger, send_id)[address(5)]
    assert row["state"] == "sent" and row["attempts"] == 3 and row["error"] is None


def test_a_recipient_throttled_on_every_try_is_not_lost(ledger, template, files, outbox):
    populate(ledger, 1)
    send_id = begin(ledger, template)

    def always(to: str, attempt: int, call: int) -> None:
        raise TransportError("Throttling", retryable=True, code="Throttling")

    with pytest.raises(SendStopped):
        run(ledger, send_id, template, Faulty(files, always))
    (row,) = rows(ledger, send_id).values()
    assert row["state"] == "pending"  # still to send: a later run tries again
    assert list(outbox.rglob("*.eml")) == []
    run(ledger, send_id, template, files)
    assert recipients_in(outbox) == Counter({address(0): 1})


def test_a_fatal_error_stops_the_send_and_a_rerun_finishes_it_exactly_once(ledger, template, files, outbox):
    people = populate(ledger, 30)
    send_id = begin(ledger, template)

    def pause_after_nine(to: str, attempt: int, call: int) -> None:
        if call > 9:
            raise TransportError("SendingPaused: sending is paused for this account", fatal=True,
                                 code="SendingPausedException")

    broken = Faulty(files, pause_after_nine)
    with pytest.raises(SendStopped, match="paused"):
        run(ledger, send_id, template, broken)
    counts = states(ledger, send_id)
    assert counts["sent"] == 9
    assert counts["pending"] == 21 and counts.get("sending", 0) == 0 and counts.get("failed", 0) == 0
    assert sum(recipients_in(outbox).values()) == 9
    assert send_state(ledger, send_id) == "stopped"
    report = mailer.report(ledger, ISSUE)[0]
    assert (report["sent"], report["pending"], report["failed"]) == (9, 21, 0)

    accepted = {to for to, r in rows(ledger, send_id).items() if r["state"] == "sent"}
    attempted_not_accepted = set(broken.calls) - accepted
    assert attempted_not_accepted  # the paused call(s) were tried and are pending again
    assert all(rows(ledger, send_id)[to]["state"] == "pending" for to in attempted_not_accepted)

    working = Faulty(files)
    result = run(ledger, send_id, template, working)
    assert result.sent == 21
    assert set(working.calls) == set(people) - accepted  # nobody accepted before is tried again
    assert recipients_in(outbox) == Counter({p: 1 for p in people})
    assert send_state(ledger, send_id) == "finished"
    assert states(ledger, send_id) == Counter({"sent": 30})


def test_too_many_errors_in_a_row_stop_the_send(ledger, template, files, outbox):
    n = MAX_CONSECUTIVE_ERRORS + 10
    populate(ledger, n)
    send_id = begin(ledger, template)

    def refuse(to: str, attempt: int, call: int) -> None:
        raise TransportError("554 Message rejected: Email address is not verified", code="MessageRejected")

    with pytest.raises(SendStopped, match="in a row"):  # at 200/s the stop lands well before the end
        run(ledger, send_id, template, Faulty(files, refuse), workers=1, rate=200)
    counts = states(ledger, send_id)
    assert MAX_CONSECUTIVE_ERRORS <= counts["failed"] < n
    assert counts["pending"] == n - counts["failed"]
    assert send_state(ledger, send_id) == "stopped"
    # fixed: the rest go out, the failed are not retried
    result = run(ledger, send_id, template, files)
    assert result.sent == n - counts["failed"]
    assert sum(recipients_in(outbox).values()) == n - counts["failed"]


def test_errors_between_successes_do_not_stop_the_send(ledger, template, files, outbox):
    n = MAX_CONSECUTIVE_ERRORS * 2
    populate(ledger, n)
    send_id = begin(ledger, template)

    def every_other(to: str, attempt: int, call: int) -> None:
        if int(to[6:8]) % 2:
            raise TransportError("550 rejected", code="MessageRejected")

    result = run(ledger, send_id, template, Faulty(files, every_other), workers=1)
    assert (result.sent, result.failed, result.stopped) == (n // 2, n // 2, None)


# --- crashes and resuming -------------------------------------------------------------------------

def test_rows_left_sending_by_a_crash_are_resent_only_when_asked(ledger, template, files, outbox):
    people = populate(ledger, 30)
    send_id = begin(ledger, template)
    with ledger.begin() as conn:  # a crash after claiming these three, before recording them
        unknown_ids = [r.id for r in conn.execute(
            select(deliveries.c.id).where(deliveries.c.send_id == send_id).order_by(deliveries.c.id).limit(3))]
        conn.execute(update(deliveries).where(deliveries.c.id.in_(unknown_ids)).values(state="sending"))
    unknown = {e for e, r in rows(ledger, send_id).items() if r["state"] == "sending"}
    assert len(unknown) == 3

    result = run(ledger, send_id, template, files)
    assert result.sent == 27
    got = recipients_in(outbox)
    assert set(got) == set(people) - unknown and set(got.values()) == {1}
    assert states(ledger, send_id) == Counter({"sent": 27, "sending": 3})
    assert send_state(ledger, send_id) == "finished"  # nothing left to send; the unknown rows are reported
    (report,) = mailer.report(ledger, ISSUE)
    assert (report["recipients"], report["sent"], report["pending"] + report.get("unknown", 0)) == (30, 27, 3)
    plan = mailer.plan_send(ledger, ISSUE, LIST)
    assert plan.to_send == 0 and plan.ledger == {"sent": 27, "sending": 3}

    assert run(ledger, send_id, template, files).sent == 0  # a normal run still leaves them alone
    assert sum(recipients_in(outbox).values()) == 27

    resumed = run(ledger, send_id, template, files, retry_unknown=True)
    assert resumed.sent == 3
    assert recipients_in(outbox) == Counter({p: 1 for p in people})
    assert send_state(ledger, send_id) == "finished"


def test_a_quota_stops_the_send_and_a_later_run_continues(ledger, template, files, outbox):
    people = populate(ledger, 30)
    send_id = begin(ledger, template)
    with pytest.raises(SendStopped, match="quota"):
        run(ledger, send_id, template, files, quota_left=5)
    assert sum(recipients_in(outbox).values()) == 5
    assert states(ledger, send_id) == Counter({"sent": 5, "pending": 25})
    with pytest.raises(SendStopped, match="quota"):
        run(ledger, send_id, template, files, quota_left=0)
    assert sum(recipients_in(outbox).values()) == 5
    result = run(ledger, send_id, template, files)
    assert result.sent == 25
    assert recipients_in(outbox) == Counter({p: 1 for p in people})


def test_two_runners_of_the_same_send_never_share_a_recipient(ledger, template, files, outbox, db_url):
    """Several `send` processes on one send (design §8): claims never overlap."""
    people = populate(ledger, 40)
    send_id = begin(ledger, template)
    other = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    errors: list[BaseException] = []

    def runner(db) -> None:
        try:
            run(db, send_id, template, files, workers=2, rate=2000)
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=runner, args=(db,)) for db in (ledger, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        other.dispose()
    assert errors == []
    assert recipients_in(outbox) == Counter({p: 1 for p in people})
    assert states(ledger, send_id) == Counter({"sent": 40})


# --- the report -----------------------------------------------------------------------------------

def test_report_has_design_keys_and_right_counts(ledger, template, files):
    populate(ledger, 30)
    populate(ledger, 4, "friends")
    assert mailer.report(ledger, ISSUE) == []
    send_id = begin(ledger, template)
    with ledger.begin() as conn:
        first = conn.execute(select(deliveries.c.id).where(deliveries.c.send_id == send_id)
                             .order_by(deliveries.c.id).limit(2)).scalars().all()
        conn.execute(update(deliveries).where(deliveries.c.id.in_(first)).values(state="sending"))
    subs.unsubscribe(ledger, address(10), LIST)

    def reject(to: str, attempt: int, call: int) -> None:
        if to == address(20):
            raise TransportError("550 no such user")

    run(ledger, send_id, template, Faulty(files, reject))
    (row,) = mailer.report(ledger, ISSUE)
    assert set(row) == REPORT_KEYS
    assert row == {"id": send_id, "issue": ISSUE, "list": LIST, "segment": None, "state": "finished",
                   "recipients": 30, "sent": 26, "failed": 1, "pending": 0, "unknown": 2, "skipped": 1,
                   "delivered": 0, "bounced_hard": 0, "bounced_soft": 0, "complained": 0, "unsubscribed": 0}

    other = begin(ledger, template, "friends")
    run(ledger, other, template, files)
    reports = mailer.report(ledger, ISSUE)
    assert [r["list"] for r in reports] == [LIST, "friends"]
    assert reports[1] == {**dict.fromkeys(REPORT_KEYS, 0), "id": other, "issue": ISSUE, "list": "friends",
                          "segment": None, "state": "finished", "recipients": 4, "sent": 4}
    assert mailer.report(ledger, "2099-01") == []


# --- proofs ---------------------------------------------------------------------------------------

def test_proofs_are_outside_the_ledger_and_their_link_changes_nothing(ledger, template, files, outbox):
    populate(ledger, 3)
    ids = mailer.send_proofs(template, files, subs.Tokens(SECRET), BASE, ["a@example.org", "b@example.org"])
    assert len(ids) == 2 and len(set(ids)) == 2
    found = messages(outbox)
    assert sorted(m["To"].addresses[0].addr_spec for m in found) == ["a@example.org", "b@example.org"]
    assert {p.parent.name for p in outbox.rglob("*.eml")} == {"proofs"}
    for message in found:
        (url,) = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        target = subs.Tokens(SECRET).read_unsubscribe(url.rsplit("/", 1)[1])
        assert target.is_proof
        body = message.get_body(("html",)).get_content()
        assert f'href="{url}"' in body and "{{" not in body
    with ledger.begin() as conn:
        assert conn.execute(select(sends)).all() == []
        assert conn.execute(select(deliveries)).all() == []
    assert mailer.report(ledger, ISSUE) == []


def test_claims_whose_people_all_left_do_not_end_the_run(ledger, template, files, outbox):
    # Small claims (a slow rate) that hold only people who left since the send started must not
    # be taken for the end of the list.
    people = populate(ledger, 12)
    send_id = begin(ledger, template)
    for gone in people[:6]:
        subs.unsubscribe(ledger, gone, LIST)
    fast = mailer.RateLimiter(10000)
    result = run(ledger, send_id, template, files, rate=2, workers=1, limiter=fast)
    assert (result.sent, result.skipped) == (6, 6)
    assert set(recipients_in(outbox)) == set(people[6:])
    assert states(ledger, send_id) == Counter({"sent": 6, "skipped": 6})
