"""The base URL rule (design §4): through SES, `send` and `test-send` refuse a base URL that is not https or
not public unless --force; `check` warns about it whatever the transport.

RFC 8058's one-click unsubscribe is a POST that Gmail's and Yahoo's servers make to the List-Unsubscribe
URL: it must be https and reachable from the internet. SES is moto's server over HTTP (tests/ses_peer.py).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

import mailer
import subscribers as subs
from mailer.schema import sends
from newsletter.cli import main
from newsletter.sending import base_url_problem
from tests import ses_peer
from tests.ses_peer import FROM, ISSUE, SECRET, MotoServer, parse

# The SES peer's fixtures, used by name.
moto, ses = ses_peer.moto, ses_peer.ses

DEFAULT = "http://127.0.0.1:8025"  # what a fresh install sends with
PUBLIC = "https://news.example.org"
PEOPLE = ["a@example.com", "b@example.com"]


@pytest.mark.parametrize(("url", "why"), [
    ("http://news.example.org", "is not https"),
    (DEFAULT, "is not https"),
    ("https://127.0.0.1:8025", "loopback"),
    ("https://127.1", "loopback"),  # the short forms HTTP clients still read
    ("https://2130706433/", "loopback"),
    ("https://localhost", "loopback"),
    ("https://LOCALHOST./x", "loopback"),
    ("https://news.localhost", "loopback"),
    ("https://[::1]:8443", "loopback"),
    ("https://[::ffff:127.0.0.1]", "loopback"),
    ("https://10.0.0.5", "private"),
    ("https://172.16.0.1", "private"),
    ("https://172.31.255.254", "private"),
    ("https://192.168.1.20", "private"),
    ("https://[fc00::1]", "private"),
    ("https://[fd12:3456::1]", "private"),
    ("https://169.254.169.254", "link-local"),
    ("https://[fe80::1]", "link-local"),
    ("https://0.0.0.0", "unspecified"),
    ("https://[::]", "unspecified"),
    ("https://100.64.0.1", "not a public address"),  # carrier-grade NAT
    ("https://", "names no host"),
])
def test_refused_base_urls_and_why(url, why):
    problem = base_url_problem(url)
    assert problem is not None and why in problem


@pytest.mark.parametrize("url", [PUBLIC, "https://news.example.org:8443/newsletter/", "https://93.184.216.34",
                                 "https://172.32.0.1", "https://[2606:4700:4700::1111]", "https://localhost.example.org",
                                 "https://cafe.example"])
def test_public_https_base_urls_pass(url):
    assert base_url_problem(url) is None


# --- send and test-send through SES (moto) -------------------------------------------------------------

@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'news.db'}"
    db = subs.open_database(url, extra_migrations=(mailer.MIGRATIONS,))
    subs.create_list(db, "news")
    for email in PEOPLE:
        subs.add_subscriber(db, email, "news")
    db.dispose()
    return url


def run(database_url: str, *args: str, transport: str = "ses", base_url: str | None = None) -> Result:
    """The command in-process; boto3 reaches moto through AWS_* variables the `ses` fixture set."""
    env = {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_TRANSPORT": transport, "NEWSLETTER_FROM": FROM,
           "NEWSLETTER_SECRET": SECRET, "NEWSLETTER_SES_MAX_RATE": "50", "NEWSLETTER_OUTBOX": "outbox"}
    if base_url is not None:
        env["NEWSLETTER_BASE_URL"] = base_url
    result = CliRunner().invoke(main, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def send_count(database_url: str) -> int:
    db = subs.open_database(database_url, extra_migrations=(mailer.MIGRATIONS,))
    try:
        with db.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(sends)).scalar_one())
    finally:
        db.dispose()


def unsubscribe_urls(ses: MotoServer) -> set[str]:
    return {re.fullmatch(r"<(.+)/u/[^/]+>", parse(m["raw_data"])["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
            for m in ses.raw_messages()}


def assert_refused(result: Result, url: str, why: str) -> None:
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr
    assert message.startswith("Error: ") and f"base URL {url!r} {why}" in message
    for needed in ("RFC 8058", "https", "Gmail and Yahoo", "NEWSLETTER_BASE_URL", "--force"):
        assert needed in message, needed


@pytest.mark.parametrize(("url", "why"), [(None, "is not https"), ("https://10.0.0.5", "is a private address"),
                                          ("https://localhost:8025", "is on loopback")])
def test_send_through_ses_refuses_a_base_url_the_world_cannot_reach(ses, database_url, url, why):
    result = run(database_url, "send", str(ISSUE), "--list", "news", "--yes", base_url=url)
    assert_refused(result, url or DEFAULT, why)
    assert ses.raw_messages() == [] and send_count(database_url) == 0


def test_send_through_ses_with_force_sends_and_warns(ses, database_url):
    result = run(database_url, "send", str(ISSUE), "--list", "news", "--yes", "--force")
    assert result.exit_code == 0, result.output
    assert "Warning: base URL 'http://127.0.0.1:8025' is not https" in result.stderr
    assert "Done: 2 sent" in result.stdout
    assert unsubscribe_urls(ses) == {DEFAULT}  # forced: what was configured, as asked


def test_send_through_ses_with_a_public_https_base_url(ses, database_url):
    result = run(database_url, "send", str(ISSUE), "--list", "news", "--yes", base_url=PUBLIC)
    assert result.exit_code == 0, result.output
    assert "base URL" not in result.stderr
    assert unsubscribe_urls(ses) == {PUBLIC}


def test_dry_run_through_ses_warns_and_sends_nothing(ses, database_url):
    result = run(database_url, "send", str(ISSUE), "--list", "news", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Warning: base URL 'http://127.0.0.1:8025' is not https" in result.stderr
    assert ses.raw_messages() == [] and send_count(database_url) == 0


def test_test_send_through_ses_refuses_unless_forced(ses, database_url):
    refused = run(database_url, "test-send", str(ISSUE), "--to", "proof@example.com", base_url="https://192.168.1.2")
    assert_refused(refused, "https://192.168.1.2", "is a private address")
    assert ses.raw_messages() == []
    forced = run(database_url, "test-send", str(ISSUE), "--to", "proof@example.com", "--force",
                 base_url="https://192.168.1.2")
    assert forced.exit_code == 0, forced.output
    assert "Warning: base URL 'https://192.168.1.2' is a private address" in forced.stderr
    assert unsubscribe_urls(ses) == {"https://192.168.1.2"}


def test_the_file_transport_sends_with_a_local_base_url(database_url, tmp_path):
    # A local trial (make demo): nothing leaves the machine, so nothing to refuse.
    result = run(database_url, "send", str(ISSUE), "--list", "news", "--yes", "--rate", "1000", transport="file")
    assert result.exit_code == 0, result.output
    assert "base URL" not in result.stderr
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 2


# --- check ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["file", "ses"])
def test_check_warns_about_the_base_url_whatever_the_transport(transport):
    result = CliRunner().invoke(main, ["check", "--json", str(ISSUE)], env={"NEWSLETTER_TRANSPORT": transport})
    assert result.exit_code == 0, result.output  # a warning: check passes
    found = [f for f in json.loads(result.stdout) if f["rule"] == "base-url"]
    assert len(found) == 1
    (finding,) = found
    assert (finding["level"], finding["file"], finding["line"]) == ("warning", str(ISSUE), 1)
    assert "'http://127.0.0.1:8025' is not https" in finding["message"]
    assert "NEWSLETTER_BASE_URL" in finding["message"] and "--force" in finding["message"]

    text = CliRunner().invoke(main, ["check", str(ISSUE)], env={"NEWSLETTER_TRANSPORT": transport})
    assert "warnings: base-url" in text.output


def test_check_is_quiet_about_a_public_https_base_url():
    result = CliRunner().invoke(main, ["check", "--json", str(ISSUE)], env={"NEWSLETTER_BASE_URL": PUBLIC})
    assert result.exit_code == 0, result.output
    assert [f for f in json.loads(result.stdout) if f["rule"] == "base-url"] == []
