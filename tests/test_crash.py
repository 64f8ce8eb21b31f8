"""Nobody gets two copies: a send killed with SIGKILL, and several processes sending one send.

Design §8: a row is marked `sending` and committed before the transport is called, so after a
crash rows left `sending` are reported as unknown and not resent unless --retry-unknown; on
PostgreSQL several `send` processes share the ledger (FOR UPDATE SKIP LOCKED).
These drive the real `newsletter send` in subprocesses with the file transport (one .eml per
message, written atomically), so every message that went out can be counted.
"""
from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import threading
import time
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


# --- kill -9 at random points ---------------------------------------------------------------------------


class SlowInbox:
    """An SMTP peer that takes a while over each message, so kills land mid-call; keeps what it accepted."""

    def __init__(self, delay: float) -> None:
        self.delay, self.accepted = delay, Counter[str]()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        import asyncio
        await asyncio.sleep(self.delay)
        self.accepted.update(r.lower() for r in envelope.rcpt_tos)
        return "250 OK"


@contextmanager
def slow_smtp(delay: float) -> Iterator[tuple[SlowInbox, str]]:
    from aiosmtpd.controller import Controller

    from tests.ses_peer import free_port
    inbox = SlowInbox(delay)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{controller.port}"
    finally:
        controller.stop()


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_kill_9_at_a_random_point_leaves_at_most_one_unknown_per_worker(db_url: str, tmp_path: Path,
                                                                         workers: int) -> None:
    """Design §8: after any crash, unknown rows are at most the transport calls in flight (--workers
    caps them); rows claimed but not handed over go back to work by themselves; resuming sends
    everyone else exactly once."""
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    addresses = setup_list(db_url, tmp_path, 80)
    send = [str(ISSUE), "--list", "news", "--yes", "--workers", str(workers)]
    with slow_smtp(delay=0.03) as (inbox, url):
        env = cli_env(db_url, NEWSLETTER_TRANSPORT="smtp", NEWSLETTER_SMTP_URL=url)
        process = subprocess.Popen([str(NEWSLETTER), "send", *send, "--rate", "500"], env=env, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        kill_after = chance.randrange(1, 60)
        try:
            wait_for(lambda: sum(inbox.accepted.values()) >= kill_after or process.poll() is not None, 60,
                     f"{kill_after} messages accepted")
            time.sleep(chance.random() * 0.05)  # land anywhere: in a call, between a call and its record, ...
        finally:
            process.send_signal(signal.SIGKILL)
            out, err = process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL, f"the send ended before it was killed (seed {seed}):\n{err!r}"
        time.sleep(0.2)  # calls the dead process had in flight land (or not) at the peer
        rows = {r["email"]: r for r in ledger(db_url)}
        unknown = {a for a, r in rows.items() if r["state"] == "sending"}
        assert len(unknown) <= workers, f"seed {seed}: {len(unknown)} unknown with {workers} workers"
        for address, row in rows.items():
            if row["state"] == "sent":
                assert inbox.accepted[address] == 1, (seed, address)
            elif row["state"] == "pending":
                assert inbox.accepted[address] == 0, f"seed {seed}: {address} went out but is pending"
        before = dict(inbox.accepted)

        resumed = newsletter(["send", *send, "--rate", "500"], env, tmp_path)
        if unknown:
            assert f"{len(unknown)} unknown" in resumed.stdout, resumed.stdout
        rows = {r["email"]: r for r in ledger(db_url)}
        assert {a for a, r in rows.items() if r["state"] == "sending"} == unknown
        for address in addresses:
            if address in unknown:
                assert inbox.accepted[address] == before.get(address, 0) <= 1, (seed, address)
            else:
                assert inbox.accepted[address] == 1, f"seed {seed}: {address} got {inbox.accepted[address]}"
                assert rows[address]["state"] == "sent"
        summary = report(env, tmp_path)
        assert summary["sent"] == 80 - len(unknown) and summary["recipients"] == 80
        assert summary.get("unknown", len(unknown)) == len(unknown)


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
