"""Sends as jobs (design §12): schedule and expiry, the worker, pause/resume/cancel, the quota, a killed worker.

The library is driven with an injectable clock (no sleeps of minutes); the command line through
the real `newsletter` with the file transport; a worker killed with -9 through a slow SMTP peer.
"""
from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import mailer
import subscribers as subs
from mailer import jobs
from mailer.worker import Prepared, run_due
from tests.ses_peer import FROM, ISSUE, NEWSLETTER, SECRET, cli_env, ledger, newsletter, to_address, wait_for
from tests.test_crash import emls, setup_list, slow_smtp
from tests.test_sending import Faulty

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
REFERENCE = ISSUE.parent / "2020-12.yaml"  # the command-line tests send the reference issue


@pytest.fixture
def db(db_url: str):
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def rendered():
    from newsletter.config import Settings
    from newsletter.sending import checked_render
    return checked_render(ISSUE, Settings(base_url="https://news.example.org"), True)


def people(db, n: int, list_name: str = "news") -> list[str]:
    subs.create_list(db, list_name)
    out = [f"reader{i:02d}@example.com" for i in range(n)]
    for address in out:
        subs.add_subscriber(db, address, list_name)
    return out


def preparer(rendered, transport, *, quota_left: float | None = None, rate: float = 10000):
    from newsletter.config import Settings
    from newsletter.wiring import envelope

    def prepare(due: jobs.Due) -> Prepared:
        how = mailer.Delivery(transport, envelope(Settings(from_address=FROM), due.list_name), subs.Tokens(SECRET),
                              "https://news.example.org", rate, 2, quota_left)
        return Prepared(rendered, how)
    return prepare


def outbox_count(outbox: Path) -> Counter[str]:
    from tests.ses_peer import parse
    return Counter(to_address(parse(p.read_bytes())) for p in emls(outbox))


def schedule(db, rendered, list_name: str, at: dt.datetime, expires: dt.timedelta | None = None) -> int:
    plan = mailer.plan_send(db, rendered.slug, list_name)
    return mailer.schedule_issue(db, plan, rendered, at, at + expires if expires else None, str(ISSUE))


def state(db, send_id: int) -> str:
    return jobs.state_of(db, send_id)


# --- scheduling and the window -----------------------------------------------------------------------


def test_a_scheduled_send_waits_for_its_time_and_a_worker_sends_it_once(db, rendered, tmp_path) -> None:
    addresses = people(db, 5)
    files = mailer.make_transport("file", outbox=str(tmp_path / "outbox"))
    send_id = schedule(db, rendered, "news", T0, dt.timedelta(hours=2))
    assert state(db, send_id) == "scheduled" and ledger_rows(db, send_id) == 0  # frozen when it starts

    assert run_due(db, preparer(rendered, files), now=lambda: T0 - dt.timedelta(minutes=1)) == []
    assert not emls(tmp_path / "outbox")
    subs.add_subscriber(db, "late@example.com", "news")  # joined after scheduling: gets it

    [ran] = run_due(db, preparer(rendered, files), now=lambda: T0 + dt.timedelta(minutes=5))
    assert (ran.send_id, ran.outcome, ran.result.sent) == (send_id, "finished", 6)
    assert outbox_count(tmp_path / "outbox") == {a: 1 for a in [*addresses, "late@example.com"]}
    assert run_due(db, preparer(rendered, files), now=lambda: T0 + dt.timedelta(hours=1)) == []


def test_a_send_found_after_its_window_expires_and_sends_nothing(db, rendered, tmp_path) -> None:
    people(db, 3)
    files = mailer.make_transport("file", outbox=str(tmp_path / "outbox"))
    send_id = schedule(db, rendered, "news", T0, dt.timedelta(hours=2))
    assert run_due(db, preparer(rendered, files), now=lambda: T0 + dt.timedelta(hours=3)) == []
    assert state(db, send_id) == "expired" and not emls(tmp_path / "outbox")
    [row] = [r for r in jobs.list_sends(db) if r["id"] == send_id]
    assert row["state"] == "expired" and "window ended" in row["reason"] and row["sent"] == 0
    assert mailer.report(db, rendered.slug)[0]["state"] == "expired"


def ledger_rows(db, send_id: int) -> int:
    with db.begin() as conn:
        return sum(mailer.ledger.counts(conn, send_id).values())


# --- pause, resume, cancel ------------------------------------------------------------------------------


def test_pause_mid_send_lets_in_flight_finish_and_resume_sends_the_rest_once(db, rendered, tmp_path) -> None:
    addresses = people(db, 40)
    outbox = tmp_path / "outbox"
    files = mailer.make_transport("file", outbox=str(outbox))
    slow = Faulty(files, lambda to, attempt, call: time.sleep(0.05))
    send_id = schedule(db, rendered, "news", T0)
    runner = threading.Thread(target=run_due, args=(db, preparer(rendered, slow, rate=10)),
                              kwargs={"now": lambda: T0})
    runner.start()
    wait_for(lambda: len(emls(outbox)) >= 5, 30, "5 messages out")
    assert jobs.pause(db, jobs.find_send(db, f"{rendered.slug}/news")) == "paused"
    runner.join(10)
    assert not runner.is_alive(), "the run did not stop within seconds of the pause"
    assert state(db, send_id) == "paused"
    with db.begin() as conn:
        counts = mailer.ledger.counts(conn, send_id)
    assert counts.get("sending", 0) == 0 and counts["pending"] > 0
    assert sum(outbox_count(outbox).values()) == counts["sent"]
    assert run_due(db, preparer(rendered, files), now=lambda: T0) == []  # paused by hand: not due

    assert jobs.resume(db, send_id) == "queued"
    [ran] = run_due(db, preparer(rendered, files), now=lambda: T0)
    assert ran.outcome == "finished"
    assert outbox_count(outbox) == {a: 1 for a in addresses}


def test_cancel_ends_a_send_for_good_and_keeps_what_was_sent(db, rendered, tmp_path) -> None:
    people(db, 4)
    files = mailer.make_transport("file", outbox=str(tmp_path / "outbox"))
    send_id = schedule(db, rendered, "news", T0)
    assert jobs.cancel(db, send_id) == "cancelled"
    assert run_due(db, preparer(rendered, files), now=lambda: T0 + dt.timedelta(days=1)) == []
    with pytest.raises(jobs.SendStateError, match="cancelled"):
        jobs.resume(db, send_id)
    with pytest.raises(jobs.SendStateError, match="cancelled"):  # nor in the foreground
        plan = mailer.plan_send(db, rendered.slug, "news")
        due = jobs.Due(send_id, rendered.slug, "news", None, str(ISSUE), "cancelled")
        mailer.send_issue(db, plan, rendered, preparer(rendered, files)(due).how)
    assert not emls(tmp_path / "outbox")


def test_the_quota_pauses_a_send_and_a_worker_resumes_it_when_the_window_has_room(db, rendered, tmp_path) -> None:
    addresses = people(db, 7)
    outbox = tmp_path / "outbox"
    files = mailer.make_transport("file", outbox=str(outbox))
    send_id = schedule(db, rendered, "news", T0)
    [ran] = run_due(db, preparer(rendered, files, quota_left=3), now=lambda: T0)
    assert ran.outcome == "paused" and "quota" in ran.message
    assert sum(outbox_count(outbox).values()) == 3
    [row] = [r for r in jobs.list_sends(db) if r["id"] == send_id]
    assert row["reason"] == jobs.QUOTA and row["at"] is not None
    retry = dt.datetime.fromisoformat(row["at"])

    assert run_due(db, preparer(rendered, files, quota_left=100), now=lambda: retry - dt.timedelta(minutes=1)) == []
    [ran] = run_due(db, preparer(rendered, files, quota_left=100), now=lambda: retry + dt.timedelta(minutes=1))
    assert ran.outcome == "finished"
    assert outbox_count(outbox) == {a: 1 for a in addresses}


# --- the command line ------------------------------------------------------------------------------------


def test_cli_send_at_then_worker_and_sends_commands(db_url: str, tmp_path: Path) -> None:
    addresses = setup_list(db_url, tmp_path, 6)
    outbox = tmp_path / "outbox"
    env = cli_env(db_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox),
                  NEWSLETTER_TIMEZONE="Europe/London")
    scheduled = newsletter(["send", str(REFERENCE), "--list", "news", "--at", "2030-06-01T09:00", "--expires", "2h"],
                           env, tmp_path)
    assert "Scheduled send 1 for 2030-06-01T08:00:00+00:00" in scheduled.stdout  # London summer time
    assert "time: about" in scheduled.stdout
    [row] = json.loads(newsletter(["sends", "ls", "--json"], env, tmp_path).stdout)
    assert {k: row[k] for k in ("id", "issue", "list", "segment", "state", "at")} == {
        "id": 1, "issue": "2020-12", "list": "news", "segment": None, "state": "scheduled",
        "at": "2030-06-01T08:00:00+00:00"}
    assert newsletter(["worker", "--once"], env, tmp_path).stdout == ""  # not due yet
    assert "paused" in newsletter(["sends", "pause", "2020-12/news"], env, tmp_path).stdout
    assert "queued" in newsletter(["sends", "resume", "1"], env, tmp_path).stdout
    done = newsletter(["worker", "--once"], env, tmp_path)
    assert "send 1: finished: 6 sent" in done.stdout
    assert outbox_count(outbox) == {a: 1 for a in addresses}

    for args, message in ((["send", str(REFERENCE), "--list", "news", "--at", "tomorrow"], "is not a time"),
                          (["send", str(REFERENCE), "--list", "news", "--at", "2030-01-01", "--expires", "soon"],
                           "is not a duration"),
                          (["sends", "pause", "nope"], "is not a send"),
                          (["sends", "cancel", "99"], "no send"),
                          (["sends", "resume", "1"], "finished: it cannot be queued")):
        refused = newsletter(args, env, tmp_path, check=False)
        assert refused.returncode == 1 and message in refused.stderr and "Traceback" not in refused.stderr, args
    usage = newsletter(["send", str(REFERENCE), "--list", "news", "--expires", "2h"], env, tmp_path, check=False)
    assert usage.returncode == 2 and "--expires needs --at" in usage.stderr


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_worker_killed_with_9_loses_nothing_another_finishes_the_send(db_url: str, tmp_path: Path) -> None:
    addresses = setup_list(db_url, tmp_path, 60)
    with slow_smtp(delay=0.03) as (inbox, url):
        env = cli_env(db_url, NEWSLETTER_TRANSPORT="smtp", NEWSLETTER_SMTP_URL=url)
        newsletter(["send", str(REFERENCE), "--list", "news", "--at", "2020-01-01T00:00"], env, tmp_path)
        first = subprocess.Popen([str(NEWSLETTER), "worker", "--once"], env=env, cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: sum(inbox.accepted.values()) >= 10 or first.poll() is not None, 60, "10 accepted")
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL
        time.sleep(0.2)
        unknown = {r["email"] for r in ledger(db_url) if r["state"] == "sending"}
        assert len(unknown) <= 4  # the worker's default --workers
        second = newsletter(["worker", "--once"], env, tmp_path)
        assert "finished" in second.stdout, second.stdout
        for address in addresses:
            expected = (0, 1) if address in unknown else (1,)
            assert inbox.accepted[address] in expected, address


def test_the_estimate_names_days_when_the_quota_is_short() -> None:
    from newsletter.jobs import estimate
    assert estimate(100, 50, None, None) == "about 2 s at 50 messages/s"
    assert "about 3 days" in estimate(500, 14, 100, 200)
    assert "used up" in estimate(10, 14, 0, None)


def test_cli_send_to_a_segment_freezes_its_members_only(db_url: str, tmp_path: Path) -> None:
    addresses = setup_list(db_url, tmp_path, 8)
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "two-towns.yaml").write_text(
        "title: Two towns\nwhere:\n  field: town\n  in: [Town002, Town005]\n", "utf-8")
    outbox = tmp_path / "outbox"
    env = cli_env(db_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
    done = newsletter(["send", str(REFERENCE), "--list", "news", "--segment", "two-towns", "--yes"], env, tmp_path)
    assert "Done: 2 sent" in done.stdout
    assert outbox_count(outbox) == {addresses[1]: 1, addresses[4]: 1}
    [row] = json.loads(newsletter(["report", "2020-12", "--json"], env, tmp_path).stdout)
    assert (row["segment"], row["recipients"], row["sent"]) == ("two-towns", 2, 2)
    # The whole list is another send (issue, list, no segment): asked for, it mails everyone.
    whole = newsletter(["send", str(REFERENCE), "--list", "news", "--yes"], env, tmp_path)
    assert "Done: 8 sent" in whole.stdout
    missing = newsletter(["send", str(REFERENCE), "--list", "news", "--segment", "nope", "--yes"], env, tmp_path,
                         check=False)
    assert missing.returncode == 1 and "two-towns" in missing.stderr and "Traceback" not in missing.stderr


def test_serve_with_worker_runs_due_sends_in_the_web_process(db_url: str, tmp_path: Path) -> None:
    from tests.ses_peer import free_port
    addresses = setup_list(db_url, tmp_path, 4)
    outbox = tmp_path / "outbox"
    env = cli_env(db_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
    newsletter(["send", str(REFERENCE), "--list", "news", "--at", "2020-01-01T00:00"], env, tmp_path)
    server = subprocess.Popen([str(NEWSLETTER), "serve", "--with-worker", "--port", str(free_port())], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(emls(outbox)) == 4 or server.poll() is not None, 60, "the worker thread to send")
        wait_for(lambda: json.loads(newsletter(["sends", "ls", "--json"], env, tmp_path).stdout)[0]["state"]
                 == "finished", 30, "the send to finish", interval=0.2)
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert outbox_count(outbox) == {a: 1 for a in addresses}


def test_on_sqlite_one_worker_runs_at_a_time(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    setup_list(database_url, tmp_path, 1)
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(tmp_path / "outbox"))
    first = subprocess.Popen([str(NEWSLETTER), "worker"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "news.db.worker.lock").exists(), 30, "the first worker's lock")
        time.sleep(0.5)
        second = newsletter(["worker", "--once"], env, tmp_path, check=False)
        assert second.returncode == 1 and "another worker already runs" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=30)
    assert first.returncode == 0 and "Traceback" not in err, err
    assert newsletter(["worker", "--once"], env, tmp_path).returncode == 0  # its lock went with it
