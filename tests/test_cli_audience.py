"""The audience commands of design §4: `lists`, `subscribers`, `db upgrade`, on both engines.

Most cases run in-process through click's CliRunner (the same `main` the
console script calls, with NEWSLETTER_DATABASE_URL in the environment); the
cases about exit status, stderr and tracebacks also run the installed
`newsletter` script as a real subprocess, as a user would.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from newsletter.cli import main
from subscribers import (
    SubscriberNotFound,
    add_subscriber,
    create_list,
    export_csv,
    forget,
    list_lists,
    open_database,
    show,
)
from subscribers.schema import lists, memberships, suppressions
from subscribers.schema import subscribers as subscribers_table

NEWSLETTER = Path(sys.executable).parent / "newsletter"
SHOW_KEYS = {"email", "name", "fields", "suppressed", "suppression_reason", "lists"}


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder (no ./newsletter.toml) with no NEWSLETTER_* settings from outside.

    NEWSLETTER_TEST_* stay: they tell conftest PostgreSQL is required, not optional.
    """
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli(db_url: str):
    """`cli(*args)` runs the command in-process against the test database."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(main, list(args), env={"NEWSLETTER_DATABASE_URL": db_url}, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback is a bug: show it
        return result
    return invoke


@pytest.fixture
def run(db_url: str, tmp_path: Path):
    """`run([args], [args], ...)` runs the real console script as subprocesses against the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_DATABASE_URL"] = db_url

    def processes(*calls: list[str]) -> list[subprocess.CompletedProcess[str]]:
        """Start every call at once (each pays ~1 s of imports), then collect them in order."""
        started = [subprocess.Popen([str(NEWSLETTER), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for args in calls]
        done = []
        for args, proc in zip(calls, started, strict=True):
            out, err = proc.communicate(timeout=60)
            done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
        return done
    return processes


@pytest.fixture
def database(db_url: str):
    """The library's own view of the same database (opened once the CLI may have created it)."""
    opened: list[Any] = []

    def get():
        if not opened:
            opened.append(open_database(db_url))
        return opened[0]
    yield get
    for db in opened:
        db.dispose()


def snapshot(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with db.begin() as conn:
        for table in (lists, subscribers_table, memberships, suppressions):
            out[table.name] = sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
    return out


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def ok(result: Result | subprocess.CompletedProcess[str]) -> str:
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 0, (result.stdout, result.stderr)
    return result.stdout


# --- lists ---------------------------------------------------------------------------------------------

def test_lists_create_ls_and_rm(cli, database) -> None:
    assert "No lists yet" in ok(cli("lists", "ls"))
    assert json.loads(ok(cli("lists", "ls", "--json"))) == []
    created = ok(cli("lists", "create", "news", "--title", "The News", "--double-opt-in"))
    assert "'news'" in created and "double opt-in" in created
    created = ok(cli("lists", "create", "plain"))
    assert "'plain'" in created and "single opt-in" in created
    ok(cli("subscribers", "add", "ada@example.com", "--list", "news"))
    ok(cli("subscribers", "add", "grace@example.com", "--list", "news"))
    ok(cli("subscribers", "unsubscribe", "grace@example.com", "--list", "news"))
    ok(cli("subscribers", "add", "alan@example.com", "--list", "plain"))
    ok(cli("subscribers", "add", "bounced@example.com", "--list", "plain"))
    from subscribers import normalise, suppress_address
    with database().begin() as conn:  # a hard bounce: still subscribed, never mailed
        suppress_address(conn, normalise("bounced@example.com"), "bounce: Permanent/General", "ses")

    found = json.loads(ok(cli("lists", "ls", "--json")))
    assert [(x["name"], x["title"], x["double_opt_in"], x["subscribed"], x["unconfirmed"], x["unsubscribed"],
             x["suppressed"]) for x in found] == [("news", "The News", True, 1, 0, 1, 0),
                                                  ("plain", "plain", False, 1, 0, 0, 1)]
    table = ok(cli("lists", "ls")).splitlines()
    assert table[0].split() == ["list", "subscribed", "unconfirmed", "unsubscribed", "suppressed", "title"]
    assert table[1].split() == ["news", "1", "0", "1", "0", "The", "News"]
    assert table[2].split() == ["plain", "1", "0", "0", "1", "plain"]

    refused = cli("lists", "rm", "news", input="n\n")  # asked, and the answer is no
    assert refused.exit_code == 1
    assert [x["name"] for x in json.loads(ok(cli("lists", "ls", "--json")))] == ["news", "plain"]
    removed = ok(cli("lists", "rm", "news", "--yes"))
    # One membership goes; grace's unsubscription stays, so she is never mailed if "news" comes back.
    assert "'news'" in removed and "1 memberships" in removed and "1 unsubscribed" in removed
    assert [x["name"] for x in json.loads(ok(cli("lists", "ls", "--json")))] == ["plain"]
    # The people stay; only their memberships of that list went.
    shown = json.loads(ok(cli("subscribers", "show", "ada@example.com", "--json")))
    assert shown["lists"] == []
    kept = json.loads(ok(cli("subscribers", "show", "grace@example.com", "--json")))
    assert [(m["list"], m["status"]) for m in kept["lists"]] == [("news", "unsubscribed")]


# --- subscribers add / show ------------------------------------------------------------------------------

def test_add_then_show_json_has_exactly_the_documented_keys(cli) -> None:
    ok(cli("lists", "create", "news"))
    out = ok(cli("subscribers", "add", " Ada@Example.COM ", "--list", "news", "--name", "Ada Lovelace",
                 "--field", "city=London", "--field", " team = blue "))
    assert "added" in out
    shown = json.loads(ok(cli("subscribers", "show", "ada@example.com", "--json")))
    assert set(shown) == SHOW_KEYS
    assert shown["email"] == "Ada@example.com"
    assert shown["name"] == "Ada Lovelace"
    assert shown["fields"] == {"city": "London", "team": "blue"}
    assert shown["suppressed"] is False and shown["suppression_reason"] is None
    assert len(shown["lists"]) == 1
    assert {"list", "status"} <= set(shown["lists"][0])
    assert (shown["lists"][0]["list"], shown["lists"][0]["status"]) == ("news", "subscribed")

    assert "unchanged" in ok(cli("subscribers", "add", "ada@example.com", "--list", "news"))
    assert "updated" in ok(cli("subscribers", "add", "ADA@example.com", "--list", "news", "--field", "city=Leeds"))
    text = ok(cli("subscribers", "show", "ada@example.com"))
    assert "Ada Lovelace" in text and "city: Leeds" in text and "list news: subscribed" in text


def test_a_bad_field_is_a_usage_error(cli, database) -> None:
    ok(cli("lists", "create", "news"))
    before = snapshot(database())
    result = cli("subscribers", "add", "ada@example.com", "--list", "news", "--field", "city")
    assert result.exit_code == 2
    assert "'city' is not KEY=VALUE" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(database()) == before


# --- import / export -------------------------------------------------------------------------------------

PEOPLE = ("email,name,city\n"
          "ada@example.com,Ada,London\n"
          "grace@example.com,Grace,\n"
          "not-an-address,Bad,\n"
          "GRACE@example.com,,New York\n")


def test_import_dry_run_rejects_and_summary(cli, database, tmp_path) -> None:
    ok(cli("lists", "create", "news"))
    path = tmp_path / "people.csv"
    path.write_text(PEOPLE, "utf-8")
    before = snapshot(database())
    dry = ok(cli("subscribers", "import", str(path), "--list", "news", "--dry-run"))
    for part in ("4 rows", "would be", "'news'", "2 added", "0 updated", "0 unchanged", "1 rejected",
                 "0 skipped (unsubscribed)", "0 skipped (suppressed)", "1 duplicate", "nothing was written"):
        assert part in dry
    assert snapshot(database()) == before

    rejects = tmp_path / "rejects.csv"
    out = ok(cli("subscribers", "import", str(path), "--list", "news", "--rejects", str(rejects)))
    for part in ("4 rows", "2 added", "0 updated", "0 unchanged", "1 rejected", "1 duplicate", str(rejects)):
        assert part in out
    assert "would be" not in out and "dry run" not in out
    with open(rejects, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "email", "name", "city"]
    assert rows[1][0] == "4" and rows[1][2:] == ["not-an-address", "Bad", ""]
    assert show(database(), "grace@example.com")["fields"] == {"city": "New York"}

    again = ok(cli("subscribers", "import", str(path), "--list", "news"))
    for part in ("0 added", "0 updated", "2 unchanged", "1 rejected"):
        assert part in again


def test_import_of_a_latin1_file_names_its_rows_in_the_summary(cli, database, tmp_path) -> None:
    ok(cli("lists", "create", "news"))
    path = tmp_path / "latin.csv"
    path.write_bytes("email;name\njose@example.com;José\n".encode("latin-1"))
    result = cli("subscribers", "import", str(path), "--list", "news")
    out = ok(result)
    assert "1 added" in out
    assert "Note: 1 row was not UTF-8 and read as Windows-1252 (Latin-1): line 2;" in out
    assert show(database(), "jose@example.com")["name"] == "José"


def test_export_to_a_file_and_to_stdout(cli, database, tmp_path) -> None:
    ok(cli("lists", "create", "news"))
    ok(cli("subscribers", "add", "ada@example.com", "--list", "news", "--name", "Lovelace, Ada",
           "--field", "city=London"))
    ok(cli("subscribers", "add", "grace@example.com", "--list", "news", "--name", "Grace"))
    ok(cli("subscribers", "unsubscribe", "grace@example.com"))
    out = tmp_path / "news.csv"
    said = ok(cli("subscribers", "export", "--list", "news", "--out", str(out)))
    assert "Exported 2" in said and str(out) in said
    rows = list(csv.reader(io.StringIO(out.read_text("utf-8"), newline="")))
    assert rows[0] == ["email", "name", "status", "city", "subscribed_at", "unsubscribed_at"]
    assert [r[:4] for r in rows[1:]] == [["ada@example.com", "Lovelace, Ada", "subscribed", "London"],
                                         ["grace@example.com", "Grace", "unsubscribed", ""]]
    printed = ok(cli("subscribers", "export", "--list", "news"))
    assert printed == out.read_text("utf-8")
    library = tmp_path / "library.csv"
    export_csv(database(), "news", library)
    assert printed == library.read_text("utf-8")


# --- unsubscribe / forget ----------------------------------------------------------------------------------

def test_unsubscribe_one_list_or_all_and_imports_do_not_undo_it(cli, database, tmp_path) -> None:
    ok(cli("lists", "create", "news"))
    ok(cli("lists", "create", "events"))
    ok(cli("subscribers", "add", "ada@example.com", "--list", "news"))
    ok(cli("subscribers", "add", "ada@example.com", "--list", "events"))
    said = ok(cli("subscribers", "unsubscribe", "ADA@example.com", "--list", "news"))
    assert "unsubscribed from news" in said and "events" not in said
    assert "already unsubscribed" in ok(cli("subscribers", "unsubscribe", "ada@example.com", "--list", "news"))
    statuses = {m["list"]: m["status"] for m in show(database(), "ada@example.com")["lists"]}
    assert statuses == {"news": "unsubscribed", "events": "subscribed"}

    path = tmp_path / "back.csv"
    path.write_text("email,name\nada@example.com,Ada\n", "utf-8")
    assert "1 skipped (unsubscribed)" in ok(cli("subscribers", "import", str(path), "--list", "news"))
    refused = cli("subscribers", "add", "ada@example.com", "--list", "news")
    assert refused.exit_code == 1 and "unsubscribed" in one_error_line(refused.stderr)

    assert "unsubscribed from events" in ok(cli("subscribers", "unsubscribe", "ada@example.com"))
    statuses = {m["list"]: m["status"] for m in show(database(), "ada@example.com")["lists"]}
    assert statuses == {"news": "unsubscribed", "events": "unsubscribed"}


def test_forget_leaves_nothing_personal_and_blocks_the_address(cli, database) -> None:
    ok(cli("lists", "create", "news"))
    ok(cli("subscribers", "add", "ada@example.com", "--list", "news", "--name", "Augusta Byron",
           "--field", "city=Marylebone"))
    assert "forgotten" in ok(cli("subscribers", "forget", "Ada@Example.com"))

    shown = cli("subscribers", "show", "ada@example.com", "--json")
    assert shown.exit_code == 1
    assert shown.stdout == ""
    line = one_error_line(shown.stderr)
    for personal in ("Augusta", "Byron", "Marylebone", "city"):
        assert personal not in line
    added = cli("subscribers", "add", "ada@example.com", "--list", "news", "--name", "Augusta Byron")
    assert added.exit_code == 1
    assert "suppressed" in one_error_line(added.stderr)

    # In the database itself: no subscriber, no membership, a suppression holding a hash and no address.
    state = snapshot(database())
    assert state["subscribers"] == [] and state["memberships"] == []
    assert len(state["suppressions"]) == 1
    assert "ada@example.com" not in repr(state) and "Augusta" not in repr(state)
    with pytest.raises(SubscriberNotFound):
        show(database(), "ada@example.com")


# --- db upgrade ----------------------------------------------------------------------------------------

def test_db_upgrade_migrates_a_fresh_database_then_says_up_to_date(cli, database) -> None:
    first = ok(cli("db", "upgrade"))
    assert "migrated" in first and "up to date" not in first
    assert "up to date" in ok(cli("db", "upgrade"))
    assert list_lists(database()) == []


# --- bad input: exit 1, one line, no traceback, nothing changed -----------------------------------------

def _bad_inputs(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    """(what, arguments, phrase the one error line must hold)."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    binary = folder / "binary.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    no_email = folder / "no-email.csv"
    no_email.write_text("name,city\nAda,London\n", "utf-8")
    malformed = folder / "malformed.csv"
    malformed.write_text('email,name\nada@example.com,"' + "x" * (csv.field_size_limit() + 1) + '"\n', "utf-8")
    good = folder / "good.csv"
    good.write_text("email\nada@example.com\n", "utf-8")
    return [
        ("missing file", ["subscribers", "import", str(folder / "missing.csv"), "--list", "news"], "no such file"),
        ("folder", ["subscribers", "import", str(folder), "--list", "news"], "folder"),
        ("binary file", ["subscribers", "import", str(binary), "--list", "news"], "binary"),
        ("no email column", ["subscribers", "import", str(no_email), "--list", "news"], "no email column"),
        ("malformed csv", ["subscribers", "import", str(malformed), "--list", "news"], "malformed CSV"),
        ("missing list", ["subscribers", "import", str(good), "--list", "nope"], "no list named 'nope'"),
        ("rejects in a missing folder",
         ["subscribers", "import", str(good), "--list", "news", "--rejects", str(folder / "no-such" / "r.csv")],
         "no-such"),
        ("missing list (export)", ["subscribers", "export", "--list", "nope", "--out", str(folder / "out.csv")],
         "no list named 'nope'"),
        ("missing list (add)", ["subscribers", "add", "ada@example.com", "--list", "nope"], "no list named 'nope'"),
        ("invalid address", ["subscribers", "add", "not an email", "--list", "news"],
         "'not an email' is not a valid email address"),
        ("unknown subscriber", ["subscribers", "unsubscribe", "nobody@example.com"],
         "no subscriber nobody@example.com"),
        ("list exists", ["lists", "create", "news"], "already exists"),
        ("bad list name", ["lists", "create", "Bad Name"], "not a valid list name"),
        ("remove missing list", ["lists", "rm", "nope", "--yes"], "no list named 'nope'"),
    ]


def test_bad_input_exits_1_with_one_line_and_changes_nothing(cli, database, tmp_path) -> None:
    ok(cli("lists", "create", "news"))
    ok(cli("subscribers", "add", "grace@example.com", "--list", "news", "--name", "Grace"))
    cases = _bad_inputs(tmp_path)
    before = snapshot(database())
    files_before = sorted(str(p) for p in tmp_path.rglob("*"))
    for what, args, phrase in cases:
        result = cli(*args)
        assert result.exit_code == 1, (what, result.stdout, result.stderr)
        assert phrase in one_error_line(result.stderr), what
        assert result.stdout == "", what
    assert snapshot(database()) == before
    assert sorted(str(p) for p in tmp_path.rglob("*")) == files_before


def test_the_real_script_exit_statuses_and_no_traceback(run, database, tmp_path) -> None:
    """Key cases through the installed console script, run side by side (each costs ~1 s of imports)."""
    db = database()
    create_list(db, "news")
    add_subscriber(db, "grace@example.com", "news", "Grace Hopper", {"city": "Arlington"})
    add_subscriber(db, "ada@example.com", "news", "Augusta Byron", {"city": "Marylebone"})
    forget(db, "ada@example.com")
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    before = snapshot(db)
    calls = {
        "show forgotten": ["subscribers", "show", "ada@example.com", "--json"],
        "binary import": ["subscribers", "import", str(binary), "--list", "news"],
        "upgrade": ["db", "upgrade"],
    }
    results = dict(zip(calls, run(*calls.values()), strict=True))

    forgotten = results["show forgotten"]
    assert forgotten.returncode == 1 and forgotten.stdout == ""
    line = one_error_line(forgotten.stderr)
    assert "no subscriber ada@example.com" in line
    for personal in ("Augusta", "Byron", "Marylebone", "city"):
        assert personal not in line
    assert results["binary import"].returncode == 1
    assert "binary" in one_error_line(results["binary import"].stderr)
    assert "up to date" in ok(results["upgrade"])
    assert snapshot(db) == before
