"""`subscribers import`: real CSV files in tmp_path into real databases (SQLite and PostgreSQL).

Every test here takes the parametrised `db` fixture, so each runs on both
engines. The import must never put back anyone who left or is suppressed
(design §8); a file it cannot read changes nothing; it commits batch by batch
(other writers get in between) and a re-run finishes an import that stopped
part-way; its dry run takes no write lock and reports exactly what the real
import does.
"""
from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

import subscribers
from subscribers import (
    ImportFailed,
    ImportReport,
    ListNotFound,
    SubscriberNotFound,
    add_subscriber,
    create_list,
    forget,
    import_csv,
    list_lists,
    show,
    unsubscribe,
)
from subscribers import csv_import as csv_import_module
from subscribers.schema import lists, memberships, suppressions
from subscribers.schema import subscribers as subscribers_table

BATCH = csv_import_module.BATCH


# --- helpers -------------------------------------------------------------------------------------------

def write(tmp_path: Path, text: str, name: str = "people.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def snapshot(db: subscribers.Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: 'the database is exactly as before'."""
    out = {}
    with db.begin() as conn:
        for table, order in ((lists, lists.c.id), (subscribers_table, subscribers_table.c.id),
                             (memberships, (memberships.c.list_id, memberships.c.subscriber_id)),
                             (suppressions, suppressions.c.id)):
            ordering = order if isinstance(order, tuple) else (order,)
            out[table.name] = [tuple(row) for row in conn.execute(select(table).order_by(*ordering))]
    return out


def counts(db: subscribers.Database, name: str) -> dict[str, int]:
    found = {item["name"]: item for item in list_lists(db)}[name]
    return {k: found[k] for k in ("subscribed", "unconfirmed", "unsubscribed")}


def status(db: subscribers.Database, email: str, list_name: str) -> str | None:
    for membership in show(db, email)["lists"]:
        if membership["list"] == list_name:
            return membership["status"]  # type: ignore[no-any-return]
    return None


def tally(report: ImportReport) -> dict[str, int]:
    keys = ("rows", "added", "updated", "unchanged", "rejected", "skipped_unsubscribed", "skipped_suppressed",
            "duplicates")
    return {k: getattr(report, k) for k in keys}


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture
def news(db: subscribers.Database) -> str:
    create_list(db, "news")
    return "news"


# --- columns -------------------------------------------------------------------------------------------

def test_email_column_is_found_whatever_its_case(db, tmp_path) -> None:
    for i, heading in enumerate(["email", "Email", "E-mail", "EMAIL", " Email Address "]):
        create_list(db, f"l{i}")
        path = write(tmp_path, f"{heading},Name\nada@example.com,Ada\n", name=f"{i}.csv")
        report = import_csv(db, path, f"l{i}")
        assert (report.rows, report.added, report.rejected) == (1, 1, 0), heading
        assert status(db, "ada@example.com", f"l{i}") == "subscribed", heading
    record = show(db, "ada@example.com")
    assert record["name"] == "Ada"
    assert record["fields"] == {}  # the email column is never also a custom field
    assert len(record["lists"]) == 5


def test_names_first_and_last_names_and_custom_fields(db, news, tmp_path) -> None:
    path = write(tmp_path,
                 "Email,First Name,Last Name,Home Town,MEMBER id\n"
                 "ada@example.com,Ada,Lovelace,London,7\n"
                 "grace@example.com,Grace,,New York,\n"
                 "alan@example.com,,Turing,,\n")
    report = import_csv(db, path, news)
    assert (report.added, report.rejected) == (3, 0)
    ada = show(db, "ada@example.com")
    assert ada["name"] == "Ada Lovelace"
    assert ada["fields"] == {"first_name": "Ada", "last_name": "Lovelace", "home_town": "London", "member_id": "7"}
    grace = show(db, "grace@example.com")
    assert grace["name"] == "Grace"
    assert grace["fields"] == {"first_name": "Grace", "home_town": "New York"}  # empty cells are not stored
    # A last name alone is no name to greet by ("Dear Turing,"): the merge default greets instead.
    alan = show(db, "alan@example.com")
    assert (alan["name"], alan["fields"]) == ("", {"last_name": "Turing"})


def test_a_name_column_wins_over_first_and_last_name(db, news, tmp_path) -> None:
    path = write(tmp_path, "email,name,first_name,last_name\nada@example.com,Countess Lovelace,Ada,King\n")
    import_csv(db, path, news)
    record = show(db, "ada@example.com")
    assert record["name"] == "Countess Lovelace"
    assert record["fields"] == {"first_name": "Ada", "last_name": "King"}


def test_bom_quotes_newlines_blank_lines_and_padding(db, news, tmp_path) -> None:
    text = ('email,name,note\r\n'
            '\r\n'
            '  ada@example.com  ,"  Lovelace, Ada  ","she said ""hello"", twice"\r\n'
            '\r\n'
            '   \r\n'
            'grace@example.com,Grace Hopper,"first line\r\nsecond line"\r\n'
            '\r\n')
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    report = import_csv(db, path, news)
    assert (report.rows, report.added, report.rejected) == (2, 2, 0)
    ada = show(db, "ada@example.com")
    assert ada["email"] == "ada@example.com"
    assert ada["name"] == "Lovelace, Ada"
    assert ada["fields"] == {"note": 'she said "hello", twice'}
    grace = show(db, "grace@example.com")
    assert grace["fields"] == {"note": "first line\r\nsecond line"}
    assert report.warnings == []  # UTF-8 with a BOM is UTF-8


def test_semicolon_and_tab_delimiters_are_sniffed(db, tmp_path) -> None:
    for name, d in (("semicolons", ";"), ("tabs", "\t")):
        create_list(db, name)
        path = write(tmp_path, f"E-mail{d}Name{d}City\n{name}-ada@example.com{d}Lovelace, Ada{d}London\n"
                               f"{name}-grace@example.com{d}Grace{d}New York, NY\n", name=f"{name}.csv")
        report = import_csv(db, path, name)
        assert (report.added, report.rejected) == (2, 0), name
        assert show(db, f"{name}-ada@example.com")["name"] == "Lovelace, Ada"
        assert show(db, f"{name}-grace@example.com")["fields"] == {"city": "New York, NY"}


def test_latin1_file_is_imported_and_its_rows_named(db, news, tmp_path) -> None:
    path = write(tmp_path, "email,name,town\njose@example.com,José Núñez,Málaga\n", encoding="latin-1")
    report = import_csv(db, path, news)
    assert report.added == 1
    assert report.warnings == []
    assert "Note: 1 row was not UTF-8 and read as Windows-1252 (Latin-1): line 2; check their accented names." \
        in report.summary()
    record = show(db, "jose@example.com")
    assert record["name"] == "José Núñez"
    assert record["fields"] == {"town": "Málaga"}


def test_a_windows_1252_file_from_excel_keeps_its_quotes_and_euro_sign(db, news, tmp_path) -> None:
    # Excel's "CSV" on Western Windows is cp1252: 0x92 is a right quote, 0x80 the euro sign, never
    # the invisible C1 control characters Latin-1 would make of them.
    path = write(tmp_path, "email,name,plan\nob@example.com,Zoë O’Brien,€5 – monthly\n", encoding="cp1252")
    report = import_csv(db, path, news)
    assert report.added == 1 and "line 2" in report.encoding_note
    record = show(db, "ob@example.com")
    assert record["name"] == "Zoë O’Brien"
    assert record["fields"] == {"plan": "€5 – monthly"}


def test_latin1_byte_far_into_the_file_is_still_detected(db, news, tmp_path) -> None:
    # The first 64 KB are plain ASCII; the only Latin-1 byte sits near the end.
    lines = ["email,name"] + [f"person{i:05d}@example.com,Person Number {i:05d}" for i in range(2100)]
    lines.append("jose@example.com,José")
    path = write(tmp_path, "\n".join(lines) + "\n", encoding="latin-1")
    assert path.stat().st_size > 64 * 1024
    report = import_csv(db, path, news)
    assert (report.added, report.rejected) == (2101, 0)
    assert "line 2102;" in report.encoding_note
    assert show(db, "jose@example.com")["name"] == "José"


def test_a_utf8_file_with_one_cp1252_row_reads_every_other_row_as_utf8(db, news, tmp_path) -> None:
    # Two files joined: UTF-8 throughout but for one row pasted from Excel. Reading the whole file as
    # cp1252 would make "ZoÃ«" of every accented name; each row is decoded on its own instead.
    utf8 = "email,name,town\nzoe@example.com,Zoë Brontë,Málaga\n".encode()
    cp1252 = "ob@example.com,Siobhán O’Brien,€ Zürich\n".encode("cp1252")
    tail = "\n".join(f"p{i}@example.com,Renée {i},Köln" for i in range(30)).encode() + b"\n"
    path = tmp_path / "joined.csv"
    path.write_bytes(b"\xef\xbb\xbf" + utf8 + cp1252 + tail + cp1252.replace(b"ob@", b"ob2@"))
    report = import_csv(db, path, news)
    assert (report.added, report.rejected) == (33, 0)
    assert show(db, "zoe@example.com")["name"] == "Zoë Brontë"
    assert show(db, "p29@example.com")["fields"] == {"town": "Köln"}
    assert show(db, "ob@example.com")["name"] == "Siobhán O’Brien"
    assert show(db, "ob@example.com")["fields"] == {"town": "€ Zürich"}
    assert report.encoding_note == ("2 rows were not UTF-8 and read as Windows-1252 (Latin-1): lines 3, 34; "
                                    "check their accented names")


def test_many_rows_not_utf8_are_counted_past_the_first_ten(db, news, tmp_path) -> None:
    text = "email,name\n" + "".join(f"p{i}@example.com,José {i}\n" for i in range(25))
    report = import_csv(db, write(tmp_path, text, encoding="latin-1"), news)
    assert report.encoding_note.startswith("25 rows were not UTF-8 and read as Windows-1252 (Latin-1): "
                                           "lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 15 more;")


# --- rejected rows ---------------------------------------------------------------------------------------

def test_invalid_empty_and_overlong_rows_are_rejected_with_line_and_reason(db, news, tmp_path) -> None:
    text = ("email,name,city\n"                      # line 1
            "ada@example.com,Ada,London\n"           # 2
            "  not-an-email ,Bad,Leeds\n"            # 3
            "\n"                                     # 4 (blank)
            'grace@example.com,"Grace\nHopper",NY\n'  # 5-6 (a quoted newline)
            ",Nobody,York\n"                         # 7
            "alan@example.com,Alan,Wilmslow,extra\n"  # 8
            "bob@exa mple.com,Bob,\n"                # 9
            "carol@example.com,Carol,Hull\n")        # 10
    path = write(tmp_path, text)
    rejects = tmp_path / "rejects.csv"
    report = import_csv(db, path, news, rejects_path=rejects)
    assert (report.rows, report.added, report.rejected) == (7, 3, 4)
    rows = read_csv(rejects)
    assert rows[0] == ["line", "reason", "email", "name", "city"]
    assert [r[0] for r in rows[1:]] == ["3", "7", "8", "9"]
    # Each rejected row exactly as it was in the file, padding and all.
    assert [r[2:] for r in rows[1:]] == [
        ["  not-an-email ", "Bad", "Leeds"],
        ["", "Nobody", "York"],
        ["alan@example.com", "Alan", "Wilmslow", "extra"],
        ["bob@exa mple.com", "Bob", ""],
    ]
    reasons = [r[1] for r in rows[1:]]
    assert "@-sign" in reasons[0]
    assert "empty" in reasons[1]
    assert "4 values" in reasons[2] and "3 columns" in reasons[2]
    assert reasons[3]
    with pytest.raises(SubscriberNotFound):
        show(db, "alan@example.com")  # a row with more values than the header is not guessed at
    assert counts(db, news) == {"subscribed": 3, "unconfirmed": 0, "unsubscribed": 0}


def test_the_rejects_file_runs_no_formula_in_a_spreadsheet_and_imports_again_as_it_was(db, news, tmp_path) -> None:
    path = write(tmp_path, 'email,name,note\n=1+1,"=HYPERLINK(""http://example.net"",""x"")",@cmd\n'
                           "ok@example.com,-Ok,+1\n")
    rejects = tmp_path / "rejects.csv"
    report = import_csv(db, path, news, rejects_path=rejects)
    assert (report.added, report.rejected) == (1, 1)
    rows = read_csv(rejects)
    assert rows[1][0] == "2"
    assert rows[1][2:] == ["'=1+1", "'=HYPERLINK(\"http://example.net\",\"x\")", "'@cmd"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert show(db, "ok@example.com")["name"] == "-Ok"  # a file we did not write is read as it is


def test_rejects_file_has_the_header_even_with_no_rejected_rows(db, news, tmp_path) -> None:
    rejects = tmp_path / "rejects.csv"
    report = import_csv(db, write(tmp_path, "Email,Name\nada@example.com,Ada\n"), news, rejects_path=rejects)
    assert report.rejected == 0
    assert read_csv(rejects) == [["line", "reason", "Email", "Name"]]


# --- duplicates --------------------------------------------------------------------------------------

def test_duplicates_in_a_file_are_merged_later_non_empty_values_winning(db, news, tmp_path) -> None:
    path = write(tmp_path,
                 "email,name,city,team\n"
                 "ada@example.com,Ada,London,\n"
                 "ADA@Example.com,,Leeds,blue\n"
                 "grace@example.com,Grace,,\n"
                 " ada@EXAMPLE.COM ,Ada Lovelace,,\n")
    report = import_csv(db, path, news)
    assert tally(report) == {"rows": 4, "added": 2, "updated": 0, "unchanged": 0, "rejected": 0,
                             "skipped_unsubscribed": 0, "skipped_suppressed": 0, "duplicates": 2}
    record = show(db, "Ada@example.com")
    assert record["email"] == "ada@example.com"  # as first written
    assert record["name"] == "Ada Lovelace"
    assert record["fields"] == {"city": "Leeds", "team": "blue"}
    assert counts(db, news)["subscribed"] == 2


def test_duplicates_more_than_one_batch_apart_are_merged_too(db, news, tmp_path) -> None:
    unique = BATCH + 400
    lines = ["email,name,team,city", "dup@example.com,First,red,"]
    lines += [f"p{i}@example.com,P {i},," for i in range(unique - 1)]
    lines.append("DUP@example.com,Second,,York")  # more than BATCH rows after the first
    report = import_csv(db, write(tmp_path, "\n".join(lines) + "\n"), news)
    assert report.rows == unique + 1
    assert (report.added, report.duplicates, report.rejected) == (unique, 1, 0)
    assert (report.updated, report.unchanged) == (0, 0)
    record = show(db, "dup@example.com")
    assert record["name"] == "Second"
    assert record["fields"] == {"team": "red", "city": "York"}
    assert [m["list"] for m in record["lists"]] == [news]
    assert counts(db, news)["subscribed"] == unique


# --- counts, re-imports and the rule above all ----------------------------------------------------------

MIXED = ("email,name,city\n"
         "keep@example.com,Keep,\n"          # unchanged
         "upd@example.com,New Name,Leeds\n"  # updated (name and a new field)
         "left@example.com,Left,\n"          # unsubscribed from news: skipped
         "GONE@example.com,Gone,\n"          # forgotten (suppressed): skipped
         "other@example.com,Other,\n"        # exists, but only on another list: added
         "new1@example.com,New One,Hull\n"   # added
         "new2@example.com,,\n"              # added
         "bad-address,Bad,\n"                # rejected
         ",Empty,\n")                        # rejected


def _mixed_setup(db, news) -> None:
    create_list(db, "other")
    add_subscriber(db, "keep@example.com", news, "Keep")
    add_subscriber(db, "upd@example.com", news, "Old Name")
    add_subscriber(db, "left@example.com", news, "Left")
    unsubscribe(db, "left@example.com", news)
    add_subscriber(db, "gone@example.com", news, "Gone")
    forget(db, "gone@example.com")
    add_subscriber(db, "other@example.com", "other", "Other")


MIXED_TALLY = {"rows": 9, "added": 3, "updated": 1, "unchanged": 1, "rejected": 2,
               "skipped_unsubscribed": 1, "skipped_suppressed": 1, "duplicates": 0}


def test_summary_counts_are_exact_in_a_mixed_file(db, news, tmp_path) -> None:
    _mixed_setup(db, news)
    report = import_csv(db, write(tmp_path, MIXED), news)
    assert tally(report) == MIXED_TALLY
    assert counts(db, news) == {"subscribed": 5, "unconfirmed": 0, "unsubscribed": 1}
    assert show(db, "upd@example.com")["name"] == "New Name"
    assert show(db, "upd@example.com")["fields"] == {"city": "Leeds"}
    assert {m["list"]: m["status"] for m in show(db, "other@example.com")["lists"]} == {
        "news": "subscribed", "other": "subscribed"}
    summary = report.summary()
    for part in ("9 rows", "3 added", "1 updated", "1 unchanged", "2 rejected",
                 "1 skipped (unsubscribed)", "1 skipped (suppressed)"):
        assert part in summary


def test_reimporting_the_same_file_adds_nothing_and_changes_nothing(db, news, tmp_path) -> None:
    path = write(tmp_path, "email,first_name,last_name,city\n" + "".join(
        f"p{i}@example.com,P{i},Q{i},Town {i % 7}\n" for i in range(50)) + "P3@EXAMPLE.com,P3,Q3,\n")
    first = import_csv(db, path, news)
    assert (first.added, first.duplicates) == (50, 1)
    before = snapshot(db)
    again = import_csv(db, path, news)
    assert (again.added, again.updated, again.unchanged, again.rejected) == (0, 0, 50, 0)
    assert snapshot(db) == before


def test_an_import_never_resubscribes_someone_who_left_or_was_forgotten(db, news, tmp_path) -> None:
    add_subscriber(db, "left@example.com", news, "Left", {"city": "Leeds"})
    add_subscriber(db, "also-left@example.com", news, "Also")
    unsubscribe(db, "left@example.com", news)
    unsubscribe(db, "also-left@example.com")  # from every list
    add_subscriber(db, "gone@example.com", news, "Gone", {"city": "York"})
    forget(db, "gone@example.com")
    path = write(tmp_path,
                 "email,name,city,status\n"
                 "LEFT@example.com,Left Again,Hull,subscribed\n"
                 "also-left@example.com,Also,,\n"
                 "gone@example.com,Gone Again,York,subscribed\n"
                 "Gone@Example.COM,,,\n")
    report = import_csv(db, path, news)
    assert (report.added, report.updated, report.skipped_unsubscribed, report.skipped_suppressed) == (0, 0, 2, 1)
    assert status(db, "left@example.com", news) == "unsubscribed"
    assert status(db, "also-left@example.com", news) == "unsubscribed"
    left = show(db, "left@example.com")
    assert (left["name"], left["fields"]) == ("Left", {"city": "Leeds"})  # the skipped row changed nothing
    with pytest.raises(SubscriberNotFound):
        show(db, "gone@example.com")  # forgotten stays forgotten: no record was re-created
    assert counts(db, news) == {"subscribed": 0, "unconfirmed": 0, "unsubscribed": 2}


def test_dry_run_reports_the_same_counts_and_writes_nothing(db, news, tmp_path) -> None:
    _mixed_setup(db, news)
    big = MIXED + "".join(f"bulk{i}@example.com,Bulk {i},\n" for i in range(BATCH + 100))
    path = write(tmp_path, big + "BULK7@example.com,Bulk Seven,Leeds\n")
    lists_before, before = list_lists(db), snapshot(db)
    dry = import_csv(db, path, news, dry_run=True)
    assert dry.dry_run
    assert list_lists(db) == lists_before
    assert snapshot(db) == before
    with pytest.raises(SubscriberNotFound):
        show(db, "new1@example.com")
    with pytest.raises(SubscriberNotFound):
        show(db, "bulk0@example.com")
    real = import_csv(db, path, news)
    expected = dict(MIXED_TALLY, rows=MIXED_TALLY["rows"] + BATCH + 101, added=3 + BATCH + 100, duplicates=1)
    assert tally(dry) == tally(real) == expected
    assert "nothing was written" in dry.summary()
    assert counts(db, news)["subscribed"] == 5 + BATCH + 100


def _refuse(db: subscribers.Database, email: str) -> None:
    """A real fault inside the database: a trigger that refuses to store one address."""
    with db.begin() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON subscribers WHEN NEW.email_key = '{email}' "
                                 "BEGIN SELECT RAISE(ABORT, 'the disk caught fire'); END")
        else:
            conn.exec_driver_sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                 f"IF NEW.email_key = '{email}' THEN RAISE EXCEPTION 'the disk caught fire'; END IF; "
                                 "RETURN NEW; END $$")
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON subscribers "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_an_import_that_fails_part_way_says_what_was_written_and_a_rerun_finishes_it(db, news, tmp_path) -> None:
    add_subscriber(db, "existing@example.com", news, "Existing")
    lines = ["email,name"] + [f"p{i}@example.com,P {i}" for i in range(BATCH + 50)]
    lines += ["existing@example.com,Renamed", "p1@example.com,P One Again"]  # p1: a repeat of batch 1
    path = write(tmp_path, "\n".join(lines) + "\n")
    _refuse(db, f"p{BATCH + 10}@example.com")  # in the second batch
    with pytest.raises(subscribers.ImportIncomplete) as caught:
        import_csv(db, path, news)
    message = str(caught.value)
    assert caught.value.rows_written == BATCH
    assert f"first {BATCH:,} rows were imported" in message and "the disk caught fire" in message
    assert "run the same import again" in message
    # The first batch is committed; nothing of the second.
    assert counts(db, news)["subscribed"] == BATCH + 1
    assert show(db, "existing@example.com")["name"] == "Existing"
    with pytest.raises(SubscriberNotFound):
        show(db, f"p{BATCH}@example.com")

    with db.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse" if db.is_sqlite else "DROP TRIGGER refuse ON subscribers")
    again = import_csv(db, path, news)
    assert (again.added, again.updated, again.unchanged, again.duplicates) == (50, 1, BATCH, 1)
    # The same end as one import that never failed.
    create_list(db, "clean")
    add_subscriber(db, "existing@example.com", "clean", "Existing")
    import_csv(db, path, "clean")
    assert counts(db, news) == counts(db, "clean") == {"subscribed": BATCH + 51, "unconfirmed": 0, "unsubscribed": 0}
    assert show(db, "existing@example.com")["name"] == "Renamed"
    assert show(db, "p1@example.com")["name"] == "P One Again"


def test_another_writer_gets_in_between_batches_and_its_unsubscribe_stands(db, news, tmp_path) -> None:
    # The import's own progress callback (called while it reads, between its transactions) plays
    # the other writer: someone from the first batch unsubscribes while the import runs, and a
    # later row of the file with their address must not put them back. In one long transaction,
    # that unsubscribe would wait for the import (SQLite: "database is locked") or not find them.
    # Someone else asks to be forgotten meanwhile: the first suppression ever, which the import
    # must notice although there was none when it started.
    lines = ["email,name"] + [f"p{i}@example.com,P {i}" for i in range(3 * BATCH)]
    lines += ["P0@example.com,P Zero Again", "p1@example.com,P One Again"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    size, done = path.stat().st_size, []

    def progress(read: int, total: int) -> None:
        assert total == size
        if read > total * 3 // 4 and not done:  # well past the first batch, committed by now
            done.append(unsubscribe(db, "p0@example.com", news))
            forget(db, "p1@example.com")

    report = import_csv(db, path, news, on_progress=progress)
    assert done, "the progress callback never ran"
    assert status(db, "p0@example.com", news) == "unsubscribed"
    with pytest.raises(SubscriberNotFound):
        show(db, "p1@example.com")
    assert (report.added, report.duplicates) == (3 * BATCH, 2)
    assert counts(db, news) == {"subscribed": 3 * BATCH - 2, "unconfirmed": 0, "unsubscribed": 1}


def test_a_dry_run_never_takes_the_write_lock(db, news, tmp_path) -> None:
    _mixed_setup(db, news)
    big = MIXED + "".join(f"bulk{i}@example.com,Bulk {i},\n" for i in range(2 * BATCH))
    path = write(tmp_path, big + "BULK7@example.com,Bulk Seven,Leeds\nkeep@example.com,Keep,\n")
    expected = dict(MIXED_TALLY, rows=MIXED_TALLY["rows"] + 2 * BATCH + 2, added=3 + 2 * BATCH, duplicates=2)
    held, finished = threading.Event(), threading.Event()
    outcome: list[bool] = []

    def hold_the_write_lock() -> None:
        # Another writer in the middle of a long transaction; it lets go once the dry run is
        # over (or after a while, so a dry run that waits for it fails instead of hanging).
        engine = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            if db.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")
                conn.exec_driver_sql("LOCK TABLE subscribers, memberships IN EXCLUSIVE MODE")  # reads go on
            held.set()
            outcome.append(finished.wait(timeout=30))
            conn.exec_driver_sql("ROLLBACK")
        engine.dispose()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert held.wait(timeout=10)
        dry = import_csv(db, path, news, dry_run=True)
    finally:
        finished.set()
        holder.join()
    assert outcome == [True]  # the dry run was over while the other transaction still held the lock
    assert tally(dry) == expected
    assert tally(import_csv(db, path, news)) == expected


# --- files that cannot be imported at all ---------------------------------------------------------------

def _bad_file(kind: str, folder: Path) -> Path:
    path = folder / f"{kind.replace(' ', '-')}.csv"
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank lines only":
        path.write_bytes(b"\n  \n\r\n")
    elif kind == "no email column":
        path.write_text("name,phone\nAda,0123\n", "utf-8")
    elif kind == "malformed":
        big = "x" * (csv.field_size_limit() + 10)
        path.write_text(f'email,name\nada@example.com,Ada\ngrace@example.com,"{big}"\n', "utf-8")
    return path


BAD_FILES = [
    ("missing", "no such file"),
    ("folder", "folder"),
    ("binary", "binary"),
    ("empty", "empty"),
    ("blank lines only", "empty"),
    ("no email column", "no email column"),
    ("malformed", "malformed CSV"),
]


def test_files_that_cannot_be_imported_raise_import_failed_and_change_nothing(db, news, tmp_path) -> None:
    add_subscriber(db, "existing@example.com", news, "Existing")
    folder = tmp_path / "inputs"
    folder.mkdir()
    before = snapshot(db)
    rejects = tmp_path / "rejects.csv"
    for kind, phrase in BAD_FILES:
        path = _bad_file(kind, folder)
        for dry_run in (False, True):
            with pytest.raises(ImportFailed) as caught:
                import_csv(db, path, news, dry_run=dry_run, rejects_path=rejects)
            message = str(caught.value)
            assert str(path) in message, (kind, message)
            assert phrase in message, (kind, message)
            assert "\n" not in message, (kind, message)
    assert snapshot(db) == before
    assert not rejects.exists()


def test_an_unwritable_rejects_file_fails_before_anything_is_imported(db, news, tmp_path) -> None:
    path = write(tmp_path, "email,name\nada@example.com,Ada\nnot-an-address,Bad\n")
    rejects = tmp_path / "no-such-folder" / "rejects.csv"
    before = snapshot(db)
    with pytest.raises((ImportFailed, OSError)):
        import_csv(db, path, news, rejects_path=rejects)
    assert snapshot(db) == before  # the caller was told it failed: so it must not have happened


def test_a_missing_list_raises_list_not_found_and_changes_nothing(db, news, tmp_path) -> None:
    path = write(tmp_path, "email\nada@example.com\n")
    before = snapshot(db)
    with pytest.raises(ListNotFound, match="'nope'"):
        import_csv(db, path, "nope")
    assert snapshot(db) == before


# --- files exported earlier: a status column ------------------------------------------------------------

def test_status_column_records_unsubscribed_and_rejects_unknown_statuses(db, news, tmp_path) -> None:
    add_subscriber(db, "leaving@example.com", news, "Leaving")
    path = write(tmp_path,
                 "email,name,status\n"
                 "sub@example.com,Sub,subscribed\n"
                 "unsub@example.com,Unsub,unsubscribed\n"
                 "pending@example.com,Pending,Unconfirmed\n"
                 "odd@example.com,Odd,banned\n"
                 "plain@example.com,Plain,\n"
                 "leaving@example.com,Leaving,unsubscribed\n"
                 "UNSUB@example.com,Unsub,subscribed\n")  # leaving wins over a later row
    rejects = tmp_path / "rejects.csv"
    report = import_csv(db, path, news, rejects_path=rejects)
    # leaving@: on the list, and the file says they left: unsubscribed, counted with those who left.
    assert (report.added, report.skipped_unsubscribed, report.updated, report.rejected) == (3, 2, 0, 1)
    assert report.duplicates == 1
    assert status(db, "sub@example.com", news) == "subscribed"
    assert status(db, "unsub@example.com", news) == "unsubscribed"
    assert show(db, "unsub@example.com")["lists"][0]["unsubscribed_at"] is not None
    assert status(db, "pending@example.com", news) == "unconfirmed"
    assert status(db, "plain@example.com", news) == "subscribed"
    assert status(db, "leaving@example.com", news) == "unsubscribed"
    with pytest.raises(SubscriberNotFound):
        show(db, "odd@example.com")
    rows = read_csv(rejects)
    assert rows[1][0] == "5" and "banned" in rows[1][1]
    assert rows[1][2:] == ["odd@example.com", "Odd", "banned"]
    assert counts(db, news) == {"subscribed": 2, "unconfirmed": 1, "unsubscribed": 2}


def test_timestamps_with_an_offset_are_stored_as_the_same_instant(db, news, tmp_path) -> None:
    import datetime as dt
    path = write(tmp_path,
                 "email,status,subscribed_at,unsubscribed_at\n"
                 "a@example.com,subscribed,2024-01-01T12:00:00+02:00,\n"
                 "b@example.com,unsubscribed,2023-06-01T08:30:00+00:00,2024-03-01T23:15:00-05:00\n")
    import_csv(db, path, news)
    a = show(db, "a@example.com")["lists"][0]
    b = show(db, "b@example.com")["lists"][0]
    assert dt.datetime.fromisoformat(a["subscribed_at"]) == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(b["subscribed_at"]) == dt.datetime(2023, 6, 1, 8, 30, tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(b["unsubscribed_at"]) == dt.datetime(2024, 3, 2, 4, 15, tzinfo=dt.UTC)


def test_a_bad_timestamp_rejects_the_row(db, news, tmp_path) -> None:
    path = write(tmp_path, "email,subscribed_at\na@example.com,yesterday\nb@example.com,2024-01-01T00:00:00+00:00\n")
    report = import_csv(db, path, news)
    assert (report.added, report.rejected) == (1, 1)
    with pytest.raises(SubscriberNotFound):
        show(db, "a@example.com")
