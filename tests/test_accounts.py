"""The console's accounts (design §13): users, roles, sessions, login limits, API tokens, the audit log.

The library on SQLite and PostgreSQL with an injected clock (limits and idle
expiry run instantly), then the `users` and `tokens` commands of design §4.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

import mailer
import subscribers as subs
from newsletter.cli import main
from subscribers.accounts import ACCOUNT_FAILURES, CLIENT_FAILURES, WINDOW, api_tokens, audit_log, user_sessions, users

PASSWORD = "correct horse battery staple"
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime = T0):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def rows(db: Any, table: Any) -> list[Any]:
    with db.begin() as conn:
        return list(conn.execute(select(table)))


def audit(db: Any) -> list[tuple[str, str, str]]:
    with db.begin() as conn:
        return [(r.actor, r.action, r.detail) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))]


# --- users, passwords, roles ----------------------------------------------------------------------------


def test_passwords_are_argon2_hashes_and_only_the_right_one_signs_in(db: Any) -> None:
    subs.add_user(db, "Ada@Example.org", "editor", PASSWORD)
    [row] = rows(db, users)
    assert row.email == "ada@example.org" and row.role == "editor"
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    session = subs.login(db, "ADA@example.org ", PASSWORD, "client-1")
    assert session.user.email == "ada@example.org" and session.user.role == "editor"
    assert session.token and session.csrf and session.token != session.csrf
    with pytest.raises(subs.LoginFailed) as wrong:
        subs.login(db, "ada@example.org", PASSWORD + "!", "client-1")
    with pytest.raises(subs.LoginFailed) as nobody:
        subs.login(db, "bob@example.org", PASSWORD, "client-1")
    assert str(wrong.value) == str(nobody.value)  # nobody learns which accounts exist


def test_roles_and_their_order(db: Any) -> None:
    assert subs.ROLES == ("viewer", "editor", "sender", "admin")
    assert subs.may("admin", "sender") and subs.may("sender", "editor") and subs.may("editor", "viewer")
    assert not subs.may("viewer", "editor") and not subs.may("editor", "sender") and not subs.may("sender", "admin")
    assert not subs.may("root", "viewer")
    with pytest.raises(subs.InvalidRole):
        subs.add_user(db, "a@example.org", "root", PASSWORD)
    with pytest.raises(subs.BadPassword):
        subs.add_user(db, "a@example.org", "viewer", "short")
    subs.add_user(db, "a@example.org", "viewer", PASSWORD)
    with pytest.raises(subs.UserExists):
        subs.add_user(db, "A@EXAMPLE.ORG", "admin", PASSWORD)
    assert [(u.email, u.role) for u in subs.list_users(db)] == [("a@example.org", "viewer")]


# --- sessions ---------------------------------------------------------------------------------------------


def test_sessions_end_after_the_idle_time_not_while_used(db: Any, clock: Clock) -> None:
    subs.add_user(db, "a@example.org", "viewer", PASSWORD)
    token = subs.login(db, "a@example.org", PASSWORD, "c", clock=clock).token
    assert token is not None
    [stored] = rows(db, user_sessions)
    assert stored.id_hash == hashlib.sha256(token.encode()).hexdigest()  # the cookie's value is not stored
    for _ in range(3):  # used every 11 hours: it lives on
        clock.advance(hours=11)
        found = subs.session_of(db, token, hours=12, clock=clock)
        assert found is not None and found.user.email == "a@example.org" and found.csrf == stored.csrf
    clock.advance(hours=12, seconds=1)
    assert subs.session_of(db, token, hours=12, clock=clock) is None
    assert rows(db, user_sessions) == []
    assert subs.session_of(db, "made-up", clock=clock) is None


def test_sign_out_ends_one_session_passwd_and_rm_end_them_all(db: Any) -> None:
    subs.add_user(db, "a@example.org", "admin", PASSWORD)
    subs.add_user(db, "b@example.org", "viewer", PASSWORD)
    first, second, third = (subs.login(db, "a@example.org", PASSWORD, "c").token for _ in range(3))
    other = subs.login(db, "b@example.org", PASSWORD, "c").token
    assert subs.end_session(db, first or "")
    assert subs.session_of(db, first or "") is None and subs.session_of(db, second or "") is not None
    assert subs.set_password(db, "a@example.org", PASSWORD + " two") == 2
    assert subs.session_of(db, second or "") is None and subs.session_of(db, third or "") is None
    with pytest.raises(subs.LoginFailed):
        subs.login(db, "a@example.org", PASSWORD, "c")
    fourth = subs.login(db, "a@example.org", PASSWORD + " two", "c").token
    assert subs.remove_user(db, "a@example.org") == 1
    assert subs.session_of(db, fourth or "") is None
    with pytest.raises(subs.LoginFailed):
        subs.login(db, "a@example.org", PASSWORD + " two", "c")
    assert subs.session_of(db, other or "") is not None  # someone else's session stays
    with pytest.raises(subs.UserNotFound):
        subs.remove_user(db, "a@example.org")


# --- login limits -----------------------------------------------------------------------------------------


def test_ten_failures_lock_the_account_for_fifteen_minutes_even_with_the_right_password(
        db: Any, clock: Clock) -> None:
    subs.add_user(db, "a@example.org", "viewer", PASSWORD)
    subs.add_user(db, "b@example.org", "viewer", PASSWORD)
    for n in range(ACCOUNT_FAILURES):
        clock.advance(seconds=60)  # spread over ten minutes: all within the window
        with pytest.raises(subs.LoginFailed):
            subs.login(db, "a@example.org", "wrong password", f"client-{n}", clock=clock)
    locked_at = clock.now
    clock.advance(seconds=1)
    with pytest.raises(subs.LoginLocked) as refused:
        subs.login(db, "a@example.org", PASSWORD, "a-fresh-client", clock=clock)
    assert 0 < refused.value.retry_after <= WINDOW.total_seconds()
    assert subs.login(db, "b@example.org", PASSWORD, "client-0", clock=clock).token  # others are not locked
    clock.now = locked_at + WINDOW - dt.timedelta(seconds=1)
    with pytest.raises(subs.LoginLocked):
        subs.login(db, "a@example.org", PASSWORD, "a-fresh-client", clock=clock)
    clock.now = locked_at + WINDOW + dt.timedelta(seconds=1)
    assert subs.login(db, "a@example.org", PASSWORD, "a-fresh-client", clock=clock).token


def test_nine_failures_do_not_lock_and_old_failures_do_not_count(db: Any, clock: Clock) -> None:
    subs.add_user(db, "a@example.org", "viewer", PASSWORD)
    for _ in range(ACCOUNT_FAILURES - 1):
        with pytest.raises(subs.LoginFailed):
            subs.login(db, "a@example.org", "wrong password", "c", clock=clock)
    clock.advance(minutes=16)  # the nine are out of the window: nine more do not lock either
    for _ in range(ACCOUNT_FAILURES - 1):
        with pytest.raises(subs.LoginFailed):
            subs.login(db, "a@example.org", "wrong password", "c", clock=clock)
    assert subs.login(db, "a@example.org", PASSWORD, "c", clock=clock).token


def test_a_client_that_fails_on_many_accounts_is_locked(db: Any, clock: Clock) -> None:
    subs.add_user(db, "a@example.org", "viewer", PASSWORD)
    for n in range(CLIENT_FAILURES):  # guessing accounts: each account stays under its own limit
        with pytest.raises(subs.LoginFailed):
            subs.login(db, f"guess{n}@example.org", "wrong password", "attacker", clock=clock)
    with pytest.raises(subs.LoginLocked):
        subs.login(db, "a@example.org", PASSWORD, "attacker", clock=clock)
    assert subs.login(db, "a@example.org", PASSWORD, "colleague", clock=clock).token


# --- API tokens and the audit log ------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_revocable(db: Any, clock: Clock) -> None:
    token = subs.create_token(db, "ci", "editor", clock=clock)
    assert len(token) >= 43
    [row] = rows(db, api_tokens)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert all(token not in str(value) for value in row)
    found = subs.token_of(db, token, clock=clock)
    assert found is not None and (found.name, found.role) == ("ci", "editor")
    assert subs.token_of(db, token[:-1], clock=clock) is None
    assert [t.last_used_at for t in subs.list_tokens(db)] == [T0]
    with pytest.raises(subs.TokenExists):
        subs.create_token(db, "ci", "viewer")
    with pytest.raises(subs.InvalidRole):
        subs.create_token(db, "other", "root")
    subs.revoke_token(db, "ci")
    assert subs.token_of(db, token) is None and subs.list_tokens(db) == []
    with pytest.raises(subs.TokenNotFound):
        subs.revoke_token(db, "ci")


def test_every_account_change_is_in_the_audit_log(db: Any, clock: Clock) -> None:
    subs.add_user(db, "a@example.org", "admin", PASSWORD, clock=clock)
    subs.login(db, "a@example.org", PASSWORD, "c", clock=clock)
    subs.set_password(db, "a@example.org", PASSWORD + "2", actor="user:a@example.org", clock=clock)
    subs.create_token(db, "ci", "viewer", clock=clock)
    subs.revoke_token(db, "ci", clock=clock)
    subs.remove_user(db, "a@example.org", clock=clock)
    subs.audit(db, "user:b@example.org", "lists.create", "news", clock=clock)
    assert audit(db) == [("cli", "users.add", "a@example.org (admin)"), ("user:a@example.org", "login", ""),
                         ("user:a@example.org", "users.passwd", "a@example.org"),
                         ("cli", "tokens.create", "ci (viewer)"), ("cli", "tokens.revoke", "ci"),
                         ("cli", "users.rm", "a@example.org"), ("user:b@example.org", "lists.create", "news")]
    newest = subs.audit_entries(db, limit=3)
    assert [e.action for e in newest] == ["lists.create", "users.rm", "tokens.revoke"]
    assert newest[0].at == T0
    older = subs.audit_entries(db, limit=3, before=newest[-1].id)
    assert [e.action for e in older] == ["tokens.create", "users.passwd", "login"]


def test_a_failed_change_leaves_no_audit_row(db: Any) -> None:
    subs.add_user(db, "a@example.org", "admin", PASSWORD)
    with pytest.raises(subs.UserExists):
        subs.add_user(db, "a@example.org", "admin", PASSWORD)
    with pytest.raises(subs.UserNotFound):
        subs.set_password(db, "nobody@example.org", PASSWORD)
    assert [row[1] for row in audit(db)] == ["users.add"]


# --- the commands (design §4) ----------------------------------------------------------------------------


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(main, list(args), env={"NEWSLETTER_DATABASE_URL": db_url}, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback is a bug: show it
        return result
    yield invoke


@pytest.fixture
def cli_db(db_url: str) -> Iterator[Any]:
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield database
    database.dispose()


def test_users_add_reads_one_line_from_stdin(cli: Any, cli_db: Any) -> None:
    result = cli("users", "add", "ada@example.org", "--role", "editor", "--password-stdin",
                 input=f"{PASSWORD}\nsecond line\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert subs.login(cli_db, "ada@example.org", PASSWORD, "c").user.role == "editor"  # no newline in it
    result = cli("users", "add", "bob@example.org", "--role", "viewer", "--password-stdin", input="")
    assert result.exit_code == 1 and "no password" in result.output


def test_users_add_without_stdin_prints_a_generated_password_once(cli: Any, cli_db: Any) -> None:
    result = cli("users", "add", "ada@example.org", "--role", "admin")
    assert result.exit_code == 0, result.output
    password = result.output.split("Password (shown once): ")[1].strip()
    assert len(password) >= 16
    assert subs.login(cli_db, "ada@example.org", password, "c").user.role == "admin"
    listed = cli("users", "ls")
    assert "ada@example.org" in listed.output and "admin" in listed.output and password not in listed.output


def test_users_passwd_and_rm_end_sessions(cli: Any, cli_db: Any) -> None:
    cli("users", "add", "ada@example.org", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    token = subs.login(cli_db, "ada@example.org", PASSWORD, "c").token or ""
    result = cli("users", "passwd", "ada@example.org", "--password-stdin", input="another long password\n")
    assert result.exit_code == 0 and "1 session(s) ended" in result.output
    assert subs.session_of(cli_db, token) is None
    token = subs.login(cli_db, "ada@example.org", "another long password", "c").token or ""
    result = cli("users", "rm", "ada@example.org")
    assert result.exit_code == 0 and "1 session(s) ended" in result.output
    assert subs.session_of(cli_db, token) is None and subs.list_users(cli_db) == []
    assert [e.action for e in subs.audit_entries(cli_db)][:3] == ["users.rm", "login", "users.passwd"]


def test_users_errors_are_one_line_and_exit_1_or_2(cli: Any) -> None:
    assert cli("users", "add", "a@example.org", "--role", "root").exit_code == 2
    result = cli("users", "add", "a@example.org", "--role", "viewer", "--password-stdin", input="short\n")
    assert result.exit_code == 1 and "at least 12 characters" in result.output
    result = cli("users", "rm", "nobody@example.org")
    assert result.exit_code == 1 and "no user nobody@example.org" in result.output
    result = cli("users", "passwd", "nobody@example.org", "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "No users yet" in cli("users", "ls").output


def test_tokens_commands(cli: Any, cli_db: Any) -> None:
    result = cli("tokens", "create", "zapier", "--role", "editor")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    found = subs.token_of(cli_db, token)
    assert found is not None and found.role == "editor"
    listed = cli("tokens", "ls")
    assert "zapier" in listed.output and "editor" in listed.output and token not in listed.output
    assert cli("tokens", "create", "zapier", "--role", "viewer").exit_code == 1
    assert cli("tokens", "create", "x", "--role", "root").exit_code == 2
    result = cli("tokens", "revoke", "zapier")
    assert result.exit_code == 0 and subs.token_of(cli_db, token) is None
    result = cli("tokens", "revoke", "zapier")
    assert result.exit_code == 1 and "no token 'zapier'" in result.output


def test_the_real_script_reads_stdin_and_fails_without_a_traceback(db_url: str, tmp_path: Path, cli_db: Any) -> None:
    import subprocess
    import sys
    script = Path(sys.executable).parent / "newsletter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_DATABASE_URL"] = db_url

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], input=stdin, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    added = run("users", "add", "ada@example.org", "--role", "sender", "--password-stdin", stdin=PASSWORD + "\r\n")
    assert added.returncode == 0, added.stderr
    assert subs.login(cli_db, "ada@example.org", PASSWORD, "c").user.role == "sender"
    missing = run("users", "rm", "nobody@example.org")
    assert missing.returncode == 1 and "no user nobody@example.org" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_forget_erases_the_address_from_the_audit_log_and_keeps_what_was_done(db: Any) -> None:
    subs.create_list(db, "news")
    subs.add_subscriber(db, "Ann.Lee@Example.org", "news")
    subs.audit(db, "token:crm", "subscribers.add", "news: ann.lee@example.org (added)")
    subs.audit(db, "token:crm", "subscribers.add", "news: bob@example.org (added)")
    subs.forget(db, "ann.lee@example.org")
    with db.begin() as conn:
        details = [d for (d,) in conn.execute(select(audit_log.c.detail).order_by(audit_log.c.id))]
    assert details[-2:] == ["news: [forgotten] (added)", "news: bob@example.org (added)"]
    assert not any("ann.lee" in d.lower() for d in details)
