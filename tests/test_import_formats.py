"""`subscribers import --format`: the exports of Mailchimp, listmonk, Sendy and Substack (design §14).

Every case runs the CLI in-process (click's CliRunner, the same `main` the console script calls)
against SQLite and PostgreSQL, on the fixtures of tests/fixtures/imports/ (each in its tool's
documented layout: SOURCES.md there). The rule above all: nobody a tool says left or was removed is
subscribed here, whichever order the files come in, and the removed are suppressed with the tool
named as the reason.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from mailer.message import Recipient
from newsletter.cli import main
from subscribers import SubscriberNotFound, add_subscriber, list_lists, open_database, show
from subscribers.schema import lists, memberships, suppressions
from subscribers.schema import subscribers as subscribers_table

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
MAILCHIMP = FIXTURES / "mailchimp"
SUBSCRIBED = MAILCHIMP / "subscribed_members_export.csv"
UNSUBSCRIBED = MAILCHIMP / "unsubscribed_members_export.csv"
CLEANED = MAILCHIMP / "cleaned_members_export.csv"
OLDER = MAILCHIMP / "older_unsubscribed_repeated_columns.csv"
LISTMONK = FIXTURES / "listmonk" / "subscribers.csv"
SENDY = FIXTURES / "sendy" / "lvrn-news-all.csv"
SUBSTACK = FIXTURES / "substack" / "email_list.csv"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty folder (no ./newsletter.toml) and no NEWSLETTER_* settings from outside."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli(db_url: str):
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        result = runner.invoke(main, list(args), env={"NEWSLETTER_DATABASE_URL": db_url})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback is a bug: show it
        return result
    return invoke


@pytest.fixture
def db(db_url: str, cli):
    cli("lists", "create", "news")  # the CLI creates the schema first
    database = open_database(db_url)
    yield database
    database.dispose()


def imported(cli, path: Path, *options: str, list_name: str = "news") -> str:
    result = cli("subscribers", "import", str(path), "--list", list_name, *options)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def status(db: Any, email: str, list_name: str = "news") -> str | None:
    try:
        record = show(db, email)
    except SubscriberNotFound:
        return None
    return next((m["status"] for m in record["lists"] if m["list"] == list_name), None)


def suppression(db: Any, email: str) -> str | None:
    try:
        return show(db, email)["suppression_reason"]  # type: ignore[no-any-return]
    except SubscriberNotFound:
        return None


def state(db: Any) -> dict[str, Any]:
    """Who is on which list with which status, and who is suppressed why: what an order may not change."""
    with db.begin() as conn:
        members = sorted(conn.execute(
            select(subscribers_table.c.email_key, lists.c.name, memberships.c.status)
            .select_from(memberships.join(subscribers_table).join(lists))).all())
        suppressed = sorted(conn.execute(select(suppressions.c.email, suppressions.c.reason)).all())
    return {"members": [tuple(r) for r in members], "suppressed": [tuple(r) for r in suppressed]}


def counts(db: Any, name: str = "news") -> dict[str, int]:
    found = {item["name"]: item for item in list_lists(db)}[name]
    return {k: found[k] for k in ("subscribed", "unconfirmed", "unsubscribed", "suppressed")}


# --- auto ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "label", "column"), [
    (SUBSCRIBED, "Mailchimp", "MEMBER_RATING"), (UNSUBSCRIBED, "Mailchimp", "UNSUB_TIME"),
    (CLEANED, "Mailchimp", "CLEAN_TIME"), (OLDER, "Mailchimp", "LEID"), (LISTMONK, "listmonk", "attributes"),
    (SENDY, "Sendy", "Opt-in method"), (SUBSTACK, "Substack", "email_disabled"),
])
def test_auto_recognises_each_tool_by_its_header_and_says_which(cli, db, path, label, column) -> None:
    out = imported(cli, path, "--dry-run")
    first = out.splitlines()[0]
    assert first.startswith(f"Read as {label} (recognised by its columns "), out
    assert column in first, out


def test_a_plain_file_is_read_as_plain(cli, db, tmp_path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,name,status\nada@example.com,Ada,subscribed\n", "utf-8")
    out = imported(cli, path)
    assert out.splitlines()[0] == "Read as plain CSV (no other tool's columns found)."
    assert status(db, "ada@example.com") == "subscribed"


# --- a wrong explicit format: exit 1, nothing imported ---------------------------------------------------

@pytest.mark.parametrize(("path", "wrong", "phrase"), [
    (SUBSCRIBED, "listmonk", "not a listmonk export"),
    (LISTMONK, "mailchimp", "not a Mailchimp export"),
    (SENDY, "substack", "not a Substack export"),
    (SUBSTACK, "sendy", "not a Sendy export"),
    # The worst mistake of all: a tool's unsubscribed people read as a plain list would be subscribed.
    (UNSUBSCRIBED, "plain", "looks like a Mailchimp export"),
    (LISTMONK, "plain", "looks like a listmonk export"),
])
def test_a_wrong_format_is_refused_and_nothing_is_imported(cli, db, path, wrong, phrase) -> None:
    before = state(db)
    result = cli("subscribers", "import", str(path), "--list", "news", "--format", wrong)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert phrase in lines[0] and str(path) in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert state(db) == before


def test_an_unknown_format_is_a_usage_error(cli, db) -> None:
    result = cli("subscribers", "import", str(SENDY), "--list", "news", "--format", "constantcontact")
    assert result.exit_code == 2
    assert "constantcontact" in result.stderr and "mailchimp" in result.stderr


def test_the_right_explicit_format_reads_as_auto_does(cli, db) -> None:
    out = imported(cli, SUBSTACK, "--format", "substack")
    assert out.splitlines()[0] == "Read as Substack (as asked)."
    assert "24 added" in out


# --- Mailchimp -----------------------------------------------------------------------------------------------

# In the subscribed export, and in the unsubscribed or cleaned one (made later); then only in those.
MC_LEFT_LATER = ["j.lee@example.org", "r.shah@example.org", "m.lin@example.org", "n.rahman@example.org"]
MC_LEFT_ONLY = ["o.silva@example.org", "f.andersen@example.org", "e.yilmaz@example.org", "b.costa@example.org"]
MC_CLEANED_LATER = ["l.haddad@example.org", "s.taylor@example.org"]
MC_CLEANED_ONLY = ["c.ruiz@example.org", "t.aziz@example.org", "old.address0@example.net", "old.address5@example.net"]


def test_mailchimp_subscribed_export_summary(cli, db) -> None:
    out = imported(cli, SUBSCRIBED)
    assert "37 rows imported into 'news': 34 added, 0 updated, 0 unchanged, 2 rejected, " \
           "0 skipped (unsubscribed), 0 skipped (suppressed), 1 duplicate rows merged" in out
    assert "  2 rejected: 1 invalid address, 1 no email\n" in out
    assert "2 rows were not imported (run it again with --rejects FILE" in out
    ada = show(db, "A.Lovelace@example.org")
    assert ada["name"] == "Ada Lovelace"
    # Merge fields are fields (the later duplicate row added Company); Mailchimp's bookkeeping is not.
    assert ada["fields"] == {"first_name": "Ada", "last_name": "Lovelace", "company": "Lancashire VRN",
                             "address": "0 Church St  Preston  PR0 0AB  GB", "phone_number": "01772 100000",
                             "birthday": "01/01", "tags": '"Volunteers"'}
    subscribed_at = ada["lists"][0]["subscribed_at"]
    assert subscribed_at.startswith("2022-01-01T08:00:00")  # CONFIRM_TIME, in UTC


def test_mailchimp_empty_first_name_greets_with_the_default_not_the_last_name(cli, db) -> None:
    imported(cli, SUBSCRIBED)
    priya = show(db, "p.patel@example.org")
    assert priya["name"] == ""
    assert priya["fields"]["last_name"] == "Patel" and "first_name" not in priya["fields"]
    # What the mailer's merge sees: no first name, so `{{ first_name | default("friend") }}` says friend.
    values = Recipient(priya["email"], priya["name"], priya["fields"]).values()
    assert values["first_name"] == "" and values["last_name"] == "Patel"


@pytest.mark.parametrize("order", ["subscribed first", "subscribed last"])
def test_mailchimp_nobody_who_left_or_bounced_is_subscribed_whatever_the_order(cli, db, order) -> None:
    files = [SUBSCRIBED, UNSUBSCRIBED, CLEANED]
    outs = {path.name: imported(cli, path) for path in (files if order == "subscribed first" else files[::-1])}
    for email in MC_LEFT_LATER + MC_LEFT_ONLY:
        assert status(db, email) == "unsubscribed", email
        assert suppression(db, email) is None, email
    for email in MC_CLEANED_LATER + MC_CLEANED_ONLY:
        assert status(db, email) == "unsubscribed", email
        assert suppression(db, email) == "cleaned in Mailchimp (bounced)", email
    assert status(db, "a.lovelace@example.org") == "subscribed"
    assert counts(db) == {"subscribed": 28, "unconfirmed": 0, "unsubscribed": 8, "suppressed": 10}
    listed = json.loads(cli("lists", "ls", "--json").stdout)[0]
    assert (listed["subscribed"], listed["unsubscribed"], listed["suppressed"]) == (28, 8, 10)
    sub, unsub, clean = (outs[p.name] for p in files)
    if order == "subscribed first":
        assert "0 added, 0 updated, 0 unchanged, 1 rejected, 8 skipped (unsubscribed)" in unsub
        assert "  8 skipped (unsubscribed): 8 unsubscribed in Mailchimp\n" in unsub
        assert "0 added, 0 updated, 0 unchanged, 0 rejected, 0 skipped (unsubscribed), 10 skipped (suppressed)" \
            in clean
        assert "  10 skipped (suppressed): 10 cleaned in Mailchimp (bounced)" in clean
    else:
        # The ones who left or bounced are named in the subscribed export too: never put back.
        assert "28 added, 0 updated, 0 unchanged, 2 rejected, 4 skipped (unsubscribed), " \
               "2 skipped (suppressed)" in sub
        assert "  4 skipped (unsubscribed): 4 had unsubscribed from this list\n" in sub
        assert "  2 skipped (suppressed): 2 suppressed here\n" in sub


def test_mailchimp_both_orders_end_the_same(db_url, tmp_path, monkeypatch) -> None:
    ends = []
    for n, files in enumerate(([SUBSCRIBED, UNSUBSCRIBED, CLEANED], [CLEANED, UNSUBSCRIBED, SUBSCRIBED])):
        url = db_url if n == 0 else _second_database(db_url, tmp_path)
        runner = CliRunner()
        env = {"NEWSLETTER_DATABASE_URL": url}
        assert runner.invoke(main, ["lists", "create", "news"], env=env).exit_code == 0
        for path in files:
            assert runner.invoke(main, ["subscribers", "import", str(path), "--list", "news"], env=env).exit_code == 0
        database = open_database(url)
        ends.append(state(database))
        database.dispose()
    assert ends[0] == ends[1]
    assert len(ends[0]["suppressed"]) == 10


def _second_database(db_url: str, tmp_path: Path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'second.db'}"
    from sqlalchemy import create_engine, text
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:  # the same test schema, emptied: each run starts from nothing
        conn.execute(text("TRUNCATE lists, subscribers, memberships, suppressions RESTART IDENTITY CASCADE"))
    engine.dispose()
    return db_url


def test_mailchimp_unsubscribed_export_stops_someone_added_here(cli, db) -> None:
    # Added here by hand, then the Mailchimp export says they left there: they leave here too.
    add_subscriber(db, "n.rahman@example.org", "news", "Nadia")
    out = imported(cli, UNSUBSCRIBED)
    assert status(db, "n.rahman@example.org") == "unsubscribed"
    assert "8 skipped (unsubscribed): 8 unsubscribed in Mailchimp" in out


def test_an_older_mailchimp_export_with_repeated_columns_is_read_first_wins(cli, db) -> None:
    result = cli("subscribers", "import", str(OLDER), "--list", "news")
    assert result.exit_code == 0, result.stderr
    assert "column names written more than once: UNSUB_CAMPAIGN_ID, UNSUB_REASON" in result.stderr
    assert "the first column of each name is read" in result.stderr
    assert "12 skipped (unsubscribed): 12 unsubscribed in Mailchimp" in result.stdout
    older = show(db, "older3@example.com")
    assert older["name"] == "Older Reader 3"
    assert older["fields"] == {"zip_code": "PR3 1AA"}
    assert older["lists"][0]["status"] == "unsubscribed"
    assert older["lists"][0]["unsubscribed_at"].startswith("2016-04-04T11:21:39")


# --- listmonk ------------------------------------------------------------------------------------------------

def test_listmonk_statuses_and_attributes(cli, db) -> None:
    out = imported(cli, LISTMONK)
    assert "32 rows imported into 'news': 25 added, 0 updated, 0 unchanged, 2 rejected, " \
           "2 skipped (unsubscribed), 3 skipped (suppressed)" in out
    assert "  2 rejected: 1 invalid address, 1 unknown status\n" in out
    assert "  2 skipped (unsubscribed): 2 disabled in listmonk\n" in out
    assert "  3 skipped (suppressed): 3 blocklisted in listmonk\n" in out
    for i in (3, 11, 19):
        assert suppression(db, f"lm.reader{i}@example.com") == "blocklisted in listmonk"
        assert status(db, f"lm.reader{i}@example.com") == "unsubscribed"
    for i in (5, 23):
        assert status(db, f"lm.reader{i}@example.com") == "unsubscribed"
        assert suppression(db, f"lm.reader{i}@example.com") is None
    first = show(db, "lm.reader0@example.com")
    # attributes' keys are fields ({{ fields.city }}), in field form; nested values stay JSON.
    assert first["fields"] == {"city": "Preston", "home_team": "Preston North End", "prefs": {"digest": True}}
    assert first["name"] == "Ada Kelly"
    assert show(db, "lm.reader10@example.com")["fields"] == {"city": "Burnley", "plan": "free", "projects": "2"}
    assert show(db, "lm.reader8@example.com")["fields"] == {"attributes": "{city: Preston"}  # kept, not lost
    assert show(db, "lm.reader13@example.com")["fields"] == {}
    assert show(db, "lm.reader16@example.com")["name"] == ""
    assert show(db, "lm.reader1@example.com")["lists"][0]["subscribed_at"].startswith("2023-02-02T09:07:13.037117")


def test_a_listmonk_blocklisted_person_is_not_brought_back_by_a_sign_up_or_another_file(cli, db, tmp_path) -> None:
    from subscribers import NotAllowed, sign_up
    imported(cli, LISTMONK)
    with pytest.raises(NotAllowed):
        add_subscriber(db, "lm.reader3@example.com", "news")
    assert sign_up(db, "lm.reader3@example.com", "news").outcome == "confirm"  # only their own confirmation
    plain = tmp_path / "later.csv"
    plain.write_text("email,name\nlm.reader3@example.com,Back\nlm.reader5@example.com,Back\n", "utf-8")
    out = imported(cli, plain)
    assert "0 added" in out and "1 skipped (unsubscribed)" in out and "1 skipped (suppressed)" in out
    assert status(db, "lm.reader3@example.com") == "unsubscribed"
    assert status(db, "lm.reader5@example.com") == "unsubscribed"


# --- Sendy ---------------------------------------------------------------------------------------------------

def test_sendy_statuses_on_a_single_opt_in_list(cli, db) -> None:
    out = imported(cli, SENDY)
    assert "36 rows imported into 'news': 25 added, 0 updated, 0 unchanged, 1 rejected, " \
           "4 skipped (unsubscribed), 3 skipped (suppressed), 3 skipped (other)" in out
    assert "  4 skipped (unsubscribed): 4 unsubscribed in Sendy\n" in out
    assert "  3 skipped (suppressed): 2 bounced in Sendy, 1 marked as spam in Sendy\n" in out
    assert "  3 skipped (other): 3 unconfirmed in Sendy (the list is single opt-in)" in out
    assert status(db, "sendy.0@example.net") == "subscribed"
    assert status(db, "sendy.4@example.net") == "unsubscribed"
    assert suppression(db, "sendy.6@example.net") == "bounced in Sendy"
    assert suppression(db, "sendy.12@example.net") == "marked as spam in Sendy"
    assert status(db, "sendy.12@example.net") == "unsubscribed"
    assert status(db, "sendy.17@example.net") is None  # never confirmed there: not imported at all
    zoe = show(db, "sendy.0@example.net")
    # Name, Email, Status and the list's custom fields; Sendy's own columns (IP, country, …) are not kept.
    assert (zoe["name"], zoe["fields"]) == ("Zoë Kowalski", {"city": "Preston", "membership": "Partner"})
    assert show(db, "sendy.2@example.net")["name"] == "Mohammed Khan, MBE"
    assert counts(db) == {"subscribed": 25, "unconfirmed": 0, "unsubscribed": 4, "suppressed": 3}


def test_sendy_unconfirmed_are_unconfirmed_on_a_double_opt_in_list(cli, db) -> None:
    assert cli("lists", "create", "confirmed", "--double-opt-in").exit_code == 0
    out = imported(cli, SENDY, list_name="confirmed")
    assert "28 added" in out and "skipped (other)" not in out
    assert status(db, "sendy.17@example.net", "confirmed") == "unconfirmed"
    assert counts(db, "confirmed") == {"subscribed": 25, "unconfirmed": 3, "unsubscribed": 4, "suppressed": 3}


# --- Substack ------------------------------------------------------------------------------------------------

def test_substack_email_turned_off_is_unsubscribed_and_free_readers_are_subscribed(cli, db) -> None:
    out = imported(cli, SUBSTACK)
    assert "30 rows imported into 'news': 24 added, 0 updated, 0 unchanged, 0 rejected, " \
           "4 skipped (unsubscribed), 0 skipped (suppressed), 1 skipped (other), 1 duplicate rows merged" in out
    assert "  4 skipped (unsubscribed): 4 email turned off in Substack\n" in out
    assert "  1 skipped (other): 1 deletion requested in Substack" in out
    for i in (2, 9, 15, 22):
        assert status(db, f"ss.reader{i}@example.com") == "unsubscribed"
    assert status(db, "ss.reader1@example.com") == "subscribed"  # free
    assert status(db, "ss.reader7@example.com") == "subscribed"  # free, written "false"
    assert status(db, "ss.reader0@example.com") == "subscribed"  # paid
    assert show(db, "ss.reader0@example.com")["fields"] == {
        "active_subscription": "true", "expiry": "2025-01-01T00:00:00.000Z", "plan": "yearly",
        "first_payment_at": "2021-01-01T10:00:00.000Z"}
    assert status(db, "a1b2c3d4e5@deletion-request.substack.com") is None


def test_substack_reader_who_turned_email_off_stays_off_when_another_tool_lists_them(cli, db, tmp_path) -> None:
    imported(cli, SUBSTACK)
    sendy_like = tmp_path / "sendy.csv"
    sendy_like.write_text('"Name","Email","Joined","Status"\n"Two","ss.reader2@example.com","","Active"\n', "utf-8")
    out = imported(cli, sendy_like)
    assert out.splitlines()[0].startswith("Read as Sendy")
    assert "1 skipped (unsubscribed): 1 had unsubscribed from this list" in out
    assert status(db, "ss.reader2@example.com") == "unsubscribed"


# --- the summary -------------------------------------------------------------------------------------------

def test_dry_run_gives_the_same_summary_and_says_nothing_was_written(cli, db) -> None:
    imported(cli, SUBSCRIBED)
    before = state(db)
    dry = imported(cli, CLEANED, "--dry-run")
    assert state(db) == before
    real = imported(cli, CLEANED)
    assert "10 rows would be imported into 'news'" in dry
    assert dry.rstrip().endswith("Dry run: nothing was written.")
    assert "  10 skipped (suppressed): 10 cleaned in Mailchimp (bounced)" in dry
    # Word for word the real import's summary, but for saying it would be.
    assert dry.replace(" would be imported", " imported").replace("Dry run: nothing was written.\n", "") == real


# --- what comes in from a tool goes out safe to open in a spreadsheet -----------------------------------

def test_formulas_from_a_tool_are_exported_neutralised_and_imported_back_unchanged(cli, db, tmp_path) -> None:
    imported(cli, SUBSCRIBED)
    imported(cli, SENDY)
    out = tmp_path / "news.csv"
    assert cli("subscribers", "export", "--list", "news", "--out", str(out)).exit_code == 0
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    cells = {cell for row in rows for cell in row}
    assert "'=HYPERLINK(\"http://example.net/x\",\"Click\")" in cells and "'+44 1772 000000" in cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
    assert cli("lists", "create", "copy").exit_code == 0
    imported(cli, out, list_name="copy")
    assert show(db, "c.wei@example.org")["fields"]["company"] == '=HYPERLINK("http://example.net/x","Click")'
    assert show(db, "sendy.8@example.net")["fields"]["city"] == "+44 1772 000000"
