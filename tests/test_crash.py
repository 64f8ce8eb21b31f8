"""Nobody gets two copies: a send killed with SIGKILL, and several processes sending one send.

Design §8: a row is marked `sending` and committed before the transport is called, so after a
crash rows left `sending` are reported as unknown and not resent unless --retry-unknown; on
PostgreSQL several `send` processes share the ledger (FOR UPDATE SKIP LOCKED).
These drive the real `newsletter send` in subprocesses with the file transport (one .eml per
message, written atomically), so every message that went out can be counted.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.ses_peer import (
    ISSUE,
    NEWSLETTER,
    cli_env,
    ledger,
    newsletter,
    parse,
    to_address,
    wait_for,
    write_subscribers,
)

SLUG = "2021-01"


def emls(outbox: Path) -> list[Path]:
    return sorted(outbox.rglob("*.eml"))


def copies(outbox: Path) -> Counter[str]:
    """How many messages the outbox holds for each address (by the To header)."""
    return Counter(to_address(parse(p.read_bytes())) for p in emls(outbox))


def files_by_address(outbox: Path) -> dict[str, list[str]]:
    """address -> the message ids (file names) of its messages."""
    out: dict[str, list[str]] = {}
    for p in emls(outbox):
        out.setdefault(to_address(parse(p.read_bytes())), []).append(p.stem)
    return out


def setup_list(database_url: str, tmp_path: Path, count: int, list_name: str = "news") -> list[str]:
    import mailer
    from subscribers import create_list, import_csv, open_database
    db = open_database(database_url, extra_migrations=(mailer.MIGRATIONS,))
    try:
        create_list(db, list_name)
        addresses = write_subscribers(tmp_path / f"{list_name}.csv", count)
        assert import_csv(db, tmp_path / f"{list_name}.csv", list_name).rejected == 0
    finally:
        db.dispose()
    return addresses


def report(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    [row] = json.loads(newsletter(["report", SLUG, "--json"], env, cwd).stdout)
    return dict(row)


def done_count(stdout: str) -> int:
    match = re.search(r"^Done: (\d+) sent, (\d+) failed", stdout, re.M)
    assert match, stdout
    return int(match.group(1))


# --- kill -9 in the middle of a send ------------------------------------------------------------------


def test_kill_9_mid_send_then_resume_sends_nobody_twice(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    outbox = tmp_path / "outbox"
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
    addresses = setup_list(database_url, tmp_path, 60)
    send = [str(ISSUE), "--list", "news"]

    process = subprocess.Popen([str(NEWSLETTER), "send", *send, "--yes", "--rate", "20"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(emls(outbox)) >= 10 or process.poll() is not None, 60, "10 messages in the outbox")
    finally:
        process.send_signal(signal.SIGKILL)
        out, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, f"the send ended before it was killed:\n{out!r}\n{err!r}"

    written = files_by_address(outbox)
    assert 10 <= sum(map(len, written.values())) < 60
    assert all(len(ids) == 1 for ids in written.values())
    rows = {r["email"]: r for r in ledger(database_url)}
    unknown = {a for a, r in rows.items() if r["state"] == "sending"}
    assert unknown, "a send killed mid-way leaves rows 'sending'"
    for address, ids in written.items():  # marked `sending` and committed before the message went out
        assert rows[address]["state"] in ("sent", "sending"), (address, rows[address])
        if rows[address]["state"] == "sent":
            assert rows[address]["message_id"] == ids[0]
    assert all(r["state"] in ("sent", "sending", "pending") for r in rows.values())
    pending_before = sum(r["state"] == "pending" for r in rows.values())

    # The next run reports the unknown rows and does not resend them.
    resumed = newsletter(["send", *send, "--yes", "--rate", "200"], env, tmp_path)
    match = re.search(r"(\d+) unknown \(a crash left them 'sending'", resumed.stdout)
    assert match and int(match.group(1)) == len(unknown), resumed.stdout
    assert "not resent unless --retry-unknown" in resumed.stdout
    assert done_count(resumed.stdout) == pending_before

    counted = copies(outbox)
    assert max(counted.values()) == 1, f"two copies: {[a for a, n in counted.items() if n > 1]}"
    for address in addresses:
        if address in unknown:
            assert counted[address] <= 1
        else:
            assert counted[address] == 1, address
    rows = {r["email"]: r for r in ledger(database_url)}
    assert {a for a, r in rows.items() if r["state"] == "sending"} == unknown
    assert all(rows[a]["state"] == "sent" for a in addresses if a not in unknown)
    by_address = files_by_address(outbox)
    assert all(rows[a]["message_id"] == by_address[a][0] for a in addresses if a not in unknown)
    summary = report(env, tmp_path)
    assert summary["pending"] == len(unknown) and summary["sent"] == 60 - len(unknown)
    assert summary["recipients"] == 60

    # Without --retry-unknown, running again sends nothing.
    again = newsletter(["send", *send, "--yes"], env, tmp_path)
    assert "Nothing to send." in again.stdout
    assert copies(outbox) == counted

    # --retry-unknown resends them (an unknown one whose message did go out gets a second copy:
    # the documented trade-off of asking for it).
    retried = newsletter(["send", *send, "--yes", "--rate", "200", "--retry-unknown"], env, tmp_path)
    assert done_count(retried.stdout) == len(unknown)
    final = copies(outbox)
    for address in addresses:
        expected = counted[address] + 1 if address in unknown else 1
        assert final[address] == expected, address
    assert sum(final.values()) == 60 + sum(counted[a] for a in unknown)
    assert {r["state"] for r in ledger(database_url)} == {"sent"}
    assert report(env, tmp_path)["pending"] == 0


# --- PostgreSQL: two processes, one send ---------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_processes_share_one_send_on_postgresql(db_url: str, tmp_path: Path) -> None:
    from mailer.sending import plan_send, start_send

    addresses = setup_list(db_url, tmp_path, 200)
    # If one process finishes before the other starts, they did not share the work: try again
    # (a fresh list, so a fresh send) with a slower rate.
    for attempt, rate in enumerate(("400", "100", "40")):
        list_name = "news" if attempt == 0 else f"news{attempt}"
        if attempt:
            setup_list(db_url, tmp_path, 200, list_name)
        import mailer
        from subscribers import open_database
        db = open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
        try:
            send_id = start_send(db, plan_send(db, SLUG, list_name), "subject")
        finally:
            db.dispose()
        outbox = tmp_path / f"outbox{attempt}"
        env = cli_env(db_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
        command = [str(NEWSLETTER), "send", str(ISSUE), "--list", list_name, "--yes", "--rate", rate,
                   "--workers", "4"]
        processes = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=120) for p in processes]
        for p, (out, err) in zip(processes, outputs, strict=True):
            assert p.returncode == 0, f"a sending process failed:\n{out}\n{err}"
            assert "Traceback" not in err, err

        counted = copies(outbox)
        assert len(emls(outbox)) == 200
        assert sorted(counted) == addresses and set(counted.values()) == {1}
        rows = [r for r in ledger(db_url) if r["send_id"] == send_id]
        assert len(rows) == 200 and {r["state"] for r in rows} == {"sent"}
        assert sorted(r["message_id"] for r in rows) == sorted(p.stem for p in emls(outbox))

        split = [done_count(out) if "Done:" in out else 0 for out, _ in outputs]
        assert sum(split) == 200, outputs
        if min(split) > 0:
            return
    pytest.fail(f"the two processes never overlapped (last split {split})")


# --- PostgreSQL: two processes starting the same send at the same moment ---------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_concurrent_start_of_one_send_joins_it_on_postgresql(db_url: str, tmp_path: Path) -> None:
    """Two `send` processes both plan a send not started yet; both then start it.

    Process A is held just before its commit; B's INSERT waits on the unique (issue, list) index.
    When A commits, B must join A's send (start_send: "or find the send already there"),
    not die with a unique violation.
    """
    import mailer
    from mailer.sending import plan_send, start_send
    from subscribers import Database, open_database

    setup_list(db_url, tmp_path, 20)
    release, holding = threading.Event(), threading.Event()

    class HeldBeforeCommit(Database):
        @contextmanager
        def begin(self) -> Iterator[Any]:
            with self.engine.begin() as conn:
                yield conn
                holding.set()
                release.wait(30)

    racer = f"racer_{uuid.uuid4().hex[:8]}"
    db_a = open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    db_b = open_database(f"{db_url}&application_name={racer}", extra_migrations=(mailer.MIGRATIONS,))
    held = HeldBeforeCommit(db_a.engine)
    plan_a, plan_b = plan_send(db_a, SLUG, "news"), plan_send(db_b, SLUG, "news")
    assert plan_a.send_id is None and plan_b.send_id is None
    results: dict[str, Any] = {}

    def run(name: str, db: Any, plan: Any) -> None:
        try:
            results[name] = start_send(db, plan, "subject")
        except Exception as exc:  # what B must not do
            results[name] = exc

    a = threading.Thread(target=run, args=("a", held, plan_a))
    b = threading.Thread(target=run, args=("b", db_b, plan_b))
    try:
        a.start()
        assert holding.wait(30), "A never reached its commit"
        b.start()
        from sqlalchemy import text
        with db_a.engine.connect() as conn:
            def b_waits() -> bool:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :n AND wait_event_type = 'Lock'"),
                    {"n": racer}).scalar()) or not b.is_alive()
            wait_for(b_waits, 30, "B to wait for A's uncommitted send", interval=0.02)
        release.set()
        a.join(30)
        b.join(30)
        assert isinstance(results["a"], int), results
        assert results["b"] == results["a"], f"B did not join A's send: {results['b']!r}"
        rows = ledger(db_url)
        assert len(rows) == 20 and {r["send_id"] for r in rows} == {results["a"]}
    finally:
        release.set()
        db_a.dispose()
        db_b.dispose()


def test_ctrl_c_stops_after_in_flight_messages_and_resumes(tmp_path: Path) -> None:
    # SIGINT is Ctrl-C: in-flight messages finish, claimed-but-unsent rows go back to pending,
    # nothing is left unknown, and running again finishes the send with one copy each.
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    outbox = tmp_path / "outbox"
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="file", NEWSLETTER_OUTBOX=str(outbox))
    addresses = setup_list(database_url, tmp_path, 40)
    send = [str(ISSUE), "--list", "news"]
    process = subprocess.Popen([str(NEWSLETTER), "send", *send, "--yes", "--rate", "10"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(emls(outbox)) >= 5 or process.poll() is not None, 60, "5 messages in the outbox")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, (out, err)
    assert "interrupted" in err and "Traceback" not in err
    rows = ledger(database_url)
    assert not [r for r in rows if r["state"] == "sending"], "Ctrl-C must not leave rows unknown"
    sent_before = {r["email"] for r in rows if r["state"] == "sent"}
    assert set(files_by_address(outbox)) == sent_before and 5 <= len(sent_before) < 40
    newsletter(["send", *send, "--yes", "--rate", "500"], env, tmp_path)
    assert copies(outbox) == Counter({a: 1 for a in addresses})
