"""`newsletter send`, `test-send` and `report` (design §4), on SQLite and PostgreSQL.

In-process through click's CliRunner (the `main` the console script calls),
configured only by NEWSLETTER_* variables as a user would, with the file
transport writing .eml files into tmp_path; a few cases run the installed
`newsletter` script as a real subprocess to check exit status, stderr and
that no traceback escapes.
"""
from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

import mailer
import subscribers as subs
from mailer.schema import deliveries, sends
from newsletter.cli import main

from .conftest import ISSUES

NEWSLETTER = Path(sys.executable).parent / "newsletter"  # /work/main/.venv/bin/newsletter here
BASE = "https://news.example.org"
SECRET = "test-only-signing-key-of-test-cli-send-4Rb8"
REPORT_KEYS = {"id", "issue", "list", "segment", "state", "recipients", "sent", "failed", "pending", "unknown",
               "skipped", "delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed"}
N = 7  # subscribers on the list


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty folder (no ./newsletter.toml) and no NEWSLETTER_* settings from outside (but NEWSLETTER_TEST_*)."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def env(db_url: str, outbox: Path) -> dict[str, str]:
    return {
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_TRANSPORT": "file",
        "NEWSLETTER_OUTBOX": str(outbox),
        "NEWSLETTER_FROM": "News <news@example.org>",
        "NEWSLETTER_SECRET": SECRET,
        "NEWSLETTER_BASE_URL": BASE,
    }


@pytest.fixture
def cli(env):
    """`cli(*args, input=..., unset=(...))` runs the command in-process; a traceback is re-raised."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, unset: tuple[str, ...] = ()) -> Result:
        environ: dict[str, str | None] = {**env, **dict.fromkeys(unset)}
        result = runner.invoke(main, list(args), env=environ, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result
    return invoke


@pytest.fixture
def script(env, tmp_path: Path):
    """`script(*args)` or `script([args], [args], ...)`: the installed console script as real subprocesses.

    Several calls start at once (each pays about a second of imports) and are collected in order.
    """
    def run(*calls, unset: tuple[str, ...] = ()):
        single = all(isinstance(c, str) for c in calls)
        argvs = [list(calls)] if single else [list(c) for c in calls]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")
                   or k.startswith("NEWSLETTER_TEST_")}
        environ.update({k: v for k, v in env.items() if k not in unset})
        started = [subprocess.Popen([str(NEWSLETTER), *argv], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for argv in argvs]
        done = []
        for argv, proc in zip(argvs, started, strict=True):
            out, err = proc.communicate(timeout=120)
            assert "Traceback" not in err, err
            done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
        return done[0] if single else done
    return run


@pytest.fixture
def db(db_url: str):
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield database
    database.dispose()


@pytest.fixture
def members(db) -> list[str]:
    """A list `members` of N subscribers, plus one unsubscribed and one on another list."""
    subs.create_list(db, "members")
    subs.create_list(db, "others")
    people = []
    for i in range(N):
        subs.add_subscriber(db, f"reader{i}@example.org", "members", name=f"Reader{i} Person",
                            fields={"town": f"Town{i}"})
        people.append(f"reader{i}@example.org")
    subs.add_subscriber(db, "left@example.org", "members")
    subs.unsubscribe(db, "left@example.org", "members")
    subs.add_subscriber(db, "elsewhere@example.org", "others")
    return people


@pytest.fixture
def issues(tmp_path: Path) -> Path:
    """Copies of the example issue with its images, and one with a check error (an unknown merge field)."""
    folder = tmp_path / "issues"
    folder.mkdir()
    shutil.copy(ISSUES / "2021-01.yaml", folder / "2021-01.yaml")
    shutil.copytree(ISSUES / "2021-01", folder / "2021-01")
    text = (ISSUES / "2021-01.yaml").read_text("utf-8")
    assert 'Dear {{ first_name | default("friend") }},' in text
    (folder / "typo.yaml").write_text(text.replace('Dear {{ first_name | default("friend") }},',
                                                   "Dear {{ firstname }},"), "utf-8")
    shutil.copytree(ISSUES / "2021-01", folder / "typo")
    return folder


def eml(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(outbox.rglob("*.eml"))]


def recipients(outbox: Path) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in eml(outbox))


def ledger_rows(db) -> int:
    with db.begin() as conn:
        return len(conn.execute(select(deliveries)).all()) + len(conn.execute(select(sends)).all())


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: "), result.stderr
    return result.stderr


# --- send -----------------------------------------------------------------------------------------

def test_dry_run_prints_counts_and_a_sample_subject_and_sends_nothing(cli, db, members, issues, outbox):
    out = ok(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--dry-run"))
    assert f"{N} recipients" in out
    assert "1 unsubscribed" in out and "0 unconfirmed" in out and "0 suppressed" in out
    assert re.search(r"sample subject: \S+, your January news is here", out)
    assert "nothing was sent" in out.lower()
    assert not outbox.exists() or list(outbox.rglob("*.eml")) == []
    assert ledger_rows(db) == 0
    assert json.loads(ok(cli("report", "2021-01", "--json"))) == []


def test_send_asks_first_and_no_sends_nothing(cli, db, members, issues, outbox):
    result = cli("send", str(issues / "2021-01.yaml"), "--list", "members", input="n\n")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"to {N} recipients?" in result.output
    assert "nothing sent" in result.output.lower()
    assert list(outbox.rglob("*.eml")) == []
    assert ledger_rows(db) == 0


def test_send_yes_mails_each_subscriber_once_and_a_second_run_sends_nothing(cli, db, members, issues, outbox):
    out = ok(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes", "--rate", "10000"))
    assert f"{N} sent, 0 failed" in out
    assert recipients(outbox) == sorted(members)
    for message in eml(outbox):
        i = message["To"].addresses[0].addr_spec[6]
        assert message["Subject"] == f"Reader{i}, your January news is here"
        assert message["From"] == "News <news@example.org>"
        assert message["List-Id"] == "<members.example.org>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        (url,) = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        assert url.startswith(f"{BASE}/u/")
        target = subs.Tokens(SECRET).read_unsubscribe(url.rsplit("/", 1)[1])
        assert not target.is_proof
        body = message.get_body(("html",)).get_content()
        assert f"Town{i}" in body and f'href="{url}"' in body

    again = ok(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes"))
    assert "Nothing to send" in again
    assert len(list(outbox.rglob("*.eml"))) == N

    (row,) = json.loads(ok(cli("report", "2021-01", "--json")))
    assert set(row) == REPORT_KEYS
    with db.begin() as conn:
        send_id = conn.execute(select(sends.c.id)).scalar_one()
    assert row == {**dict.fromkeys(REPORT_KEYS, 0), "id": send_id, "issue": "2021-01", "list": "members",
                   "segment": None, "state": "finished", "recipients": N, "sent": N}
    plain = ok(cli("report", "2021-01"))
    header, _, members_row, *after = plain.splitlines()
    assert header.split()[:7] == ["list", "recipients", "sent", "failed", "pending", "unknown", "skipped"]
    assert members_row.split()[:7] == ["members", str(N), str(N), "0", "0", "0", "0"]
    assert "may have missed" not in plain and "--recipients" not in plain
    assert any("Everyone" in line for line in after)


def test_send_at_the_default_rate_of_the_file_transport(cli, members, issues, outbox):
    out = ok(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes", "--workers", "2"))
    assert "through file" in out
    assert recipients(outbox) == sorted(members)


def test_send_refuses_an_issue_with_check_errors_unless_forced(cli, db, members, issues, outbox):
    stderr = error(cli("send", str(issues / "typo.yaml"), "--list", "members", "--yes"))
    assert "check errors" in stderr and "--force" in stderr
    assert "{{ firstname }}" in stderr and "typo.yaml" in stderr
    assert list(outbox.rglob("*.eml")) == [] and ledger_rows(db) == 0

    ok(cli("send", str(issues / "typo.yaml"), "--list", "members", "--yes", "--force", "--rate", "10000"))
    assert recipients(outbox) == sorted(members)
    for message in eml(outbox):
        assert "{{" not in message.get_body(("html",)).get_content()
    assert [r["issue"] for r in json.loads(ok(cli("report", "typo", "--json")))] == ["typo"]


@pytest.mark.parametrize("variable", ["NEWSLETTER_FROM", "NEWSLETTER_SECRET"])
def test_send_needs_a_sender_and_a_secret(cli, db, members, issues, outbox, variable):
    stderr = error(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes", unset=(variable,)))
    assert variable in stderr
    assert list(outbox.rglob("*.eml")) == [] and ledger_rows(db) == 0


def test_send_to_an_unknown_list(cli, db, members, issues, outbox):
    stderr = error(cli("send", str(issues / "2021-01.yaml"), "--list", "nope", "--yes"))
    assert "nope" in stderr
    assert list(outbox.rglob("*.eml")) == []


def test_send_of_a_missing_issue_file(cli, members, tmp_path):
    stderr = error(cli("send", str(tmp_path / "missing.yaml"), "--list", "members", "--yes"))
    assert "missing.yaml" in stderr


def test_rows_left_sending_are_reported_and_resent_only_with_retry_unknown(cli, db, members, issues, outbox):
    ok(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes", "--rate", "10000"))
    with db.begin() as conn:  # as if the process died after claiming two rows
        first = conn.execute(select(deliveries.c.id).order_by(deliveries.c.id).limit(2)).scalars().all()
        conn.execute(update(deliveries).where(deliveries.c.id.in_(first)).values(state="sending"))
    out = ok(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes"))
    assert "2 unknown" in out and "--retry-unknown" in out and "Nothing to send" in out
    assert len(list(outbox.rglob("*.eml"))) == N
    (row,) = json.loads(ok(cli("report", "2021-01", "--json")))
    assert (row["sent"], row["pending"], row["unknown"]) == (N - 2, 0, 2)  # unknown is not pending
    plain = ok(cli("report", "2021-01"))
    assert "2 people may have missed this issue: 2 unknown." in plain
    assert "newsletter report 2021-01 --recipients unknown" in plain and "--retry-unknown" in plain

    out = ok(cli("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes", "--retry-unknown",
                 "--rate", "10000"))
    assert "2 sent" in out
    assert len(list(outbox.rglob("*.eml"))) == N + 2  # asked for: the two unknown went again
    (row,) = json.loads(ok(cli("report", "2021-01", "--json")))
    assert (row["sent"], row["pending"], row["unknown"]) == (N, 0, 0)


# --- test-send ------------------------------------------------------------------------------------

def test_test_send_writes_proofs_and_no_ledger_rows(cli, db, members, issues, outbox):
    out = ok(cli("test-send", str(issues / "2021-01.yaml"), "--to", "a@example.org", "--to", "b@example.org"))
    assert "a@example.org" in out and "b@example.org" in out
    assert recipients(outbox) == ["a@example.org", "b@example.org"]
    for message in eml(outbox):
        (url,) = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        assert subs.Tokens(SECRET).read_unsubscribe(url.rsplit("/", 1)[1]).is_proof
    assert ledger_rows(db) == 0
    assert json.loads(ok(cli("report", "2021-01", "--json"))) == []


def test_test_send_refuses_a_bad_address_and_sends_nothing(cli, db, members, issues, outbox):
    stderr = error(cli("test-send", str(issues / "2021-01.yaml"), "--to", "a@example.org", "--to", "not an address"))
    assert "not an address" in stderr
    assert list(outbox.rglob("*.eml")) == []


def test_test_send_refuses_check_errors_unless_forced(cli, db, issues, outbox):
    stderr = error(cli("test-send", str(issues / "typo.yaml"), "--to", "a@example.org"))
    assert "{{ firstname }}" in stderr
    ok(cli("test-send", str(issues / "typo.yaml"), "--to", "a@example.org", "--force"))
    assert recipients(outbox) == ["a@example.org"]


def test_test_send_needs_the_secret(cli, issues, outbox):
    stderr = error(cli("test-send", str(issues / "2021-01.yaml"), "--to", "a@example.org",
                       unset=("NEWSLETTER_SECRET",)))
    assert "NEWSLETTER_SECRET" in stderr


# --- report ---------------------------------------------------------------------------------------

def test_report_of_an_unknown_slug(cli, db):
    assert json.loads(ok(cli("report", "1999-01", "--json"))) == []
    assert "1999-01" in error(cli("report", "1999-01"))


# --- the real console script ----------------------------------------------------------------------

def test_script_sends_once_to_each_subscriber(script, cli, db, members, issues, outbox):
    sent = script("send", str(issues / "2021-01.yaml"), "--list", "members", "--yes", "--rate", "10000")
    assert sent.returncode == 0, sent.stderr
    assert f"{N} sent" in sent.stdout
    assert recipients(outbox) == sorted(members)
    (row,) = json.loads(ok(cli("report", "2021-01", "--json")))
    assert set(row) == REPORT_KEYS and row["sent"] == N


def test_script_user_errors_exit_1_with_a_message(script, db, members, issues, outbox):
    missing, unknown = script(
        ["send", str(issues / "2021-01.yaml"), "--list", "members", "--yes"], ["report", "1999-01"],
        unset=("NEWSLETTER_SECRET",))
    assert missing.returncode == 1 and missing.stderr.startswith("Error: ")
    assert "NEWSLETTER_SECRET" in missing.stderr
    assert unknown.returncode == 1 and unknown.stderr.startswith("Error: ") and "1999-01" in unknown.stderr
    assert list(outbox.rglob("*.eml")) == []
