"""`subscribers export`: a list as CSV that round-trips through `import` (both engines)."""
from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest

import subscribers
from subscribers import (
    ListNotFound,
    add_subscriber,
    create_list,
    export_csv,
    import_csv,
    open_database,
    request_subscription,
    show,
    unsubscribe,
)

HEADER = ["email", "name", "status", "alpha", "note", "town", "zeta", "subscribed_at", "unsubscribed_at"]


def populate(db: subscribers.Database) -> None:
    """List `a` with every status, awkward values and custom fields; `b` holds someone else."""
    create_list(db, "a", "List A", double_opt_in=True)
    create_list(db, "b")
    add_subscriber(db, "ada@example.com", "a", "Lovelace, Ada", {"zeta": "z1", "alpha": "a, 1"})
    add_subscriber(db, "Grace@Example.COM", "a", 'Grace "Amazing" Hopper', {"note": "line one\nline two"})
    request_subscription(db, "jose@example.com", "a", "José Núñez", {"town": "Málaga"})  # unconfirmed
    add_subscriber(db, "left@example.com", "a", "Left", {"alpha": "x"})
    unsubscribe(db, "left@example.com", "a")
    add_subscriber(db, "other@example.com", "b", "Only On B", {"secret": "not in a"})
    add_subscriber(db, "both@example.com", "b", "Both")
    add_subscriber(db, "both@example.com", "a", "")


def read(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_export_writes_every_member_of_every_status(db, tmp_path) -> None:
    populate(db)
    out = tmp_path / "a.csv"
    assert export_csv(db, "a", out) == 5
    rows = read(out)
    assert rows[0] == HEADER  # custom fields sorted, between status and the timestamps
    body = {r[0]: dict(zip(HEADER, r, strict=True)) for r in rows[1:]}
    assert list(body) == ["ada@example.com", "Grace@example.com", "jose@example.com", "left@example.com",
                          "both@example.com"]
    assert {e: r["status"] for e, r in body.items()} == {
        "ada@example.com": "subscribed", "Grace@example.com": "subscribed", "jose@example.com": "unconfirmed",
        "left@example.com": "unsubscribed", "both@example.com": "subscribed"}
    assert body["ada@example.com"]["name"] == "Lovelace, Ada"
    assert (body["ada@example.com"]["alpha"], body["ada@example.com"]["zeta"]) == ("a, 1", "z1")
    assert body["Grace@example.com"]["name"] == 'Grace "Amazing" Hopper'
    assert body["Grace@example.com"]["note"] == "line one\nline two"
    assert body["jose@example.com"]["town"] == "Málaga"
    assert body["both@example.com"]["name"] == "Both"
    for email, row in body.items():
        membership = {m["list"]: m for m in show(db, email)["lists"]}["a"]
        assert row["subscribed_at"] == membership["subscribed_at"]
        assert dt.datetime.fromisoformat(row["subscribed_at"]).utcoffset() == dt.timedelta(0)
        assert row["unsubscribed_at"] == (membership["unsubscribed_at"] or "")
    assert body["left@example.com"]["unsubscribed_at"] != ""
    assert "secret" not in rows[0] and "other@example.com" not in out.read_text("utf-8")


def test_an_empty_list_exports_just_the_header(db, tmp_path) -> None:
    create_list(db, "empty")
    out = tmp_path / "empty.csv"
    assert export_csv(db, "empty", out) == 0
    assert read(out) == [["email", "name", "status", "subscribed_at", "unsubscribed_at"]]


def test_round_trip_through_a_second_database_and_a_second_list_is_identical(db, tmp_path) -> None:
    populate(db)
    first = tmp_path / "first.csv"
    export_csv(db, "a", first)

    other = open_database(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        create_list(other, "copy")
        report = import_csv(other, first, "copy")
        assert (report.added, report.skipped_unsubscribed, report.rejected) == (4, 1, 0)
        second = tmp_path / "second.csv"
        export_csv(other, "copy", second)
    finally:
        other.dispose()
    assert second.read_bytes() == first.read_bytes()

    # And into another list of the same database, where the people already exist.
    create_list(db, "copy")
    report = import_csv(db, first, "copy")
    assert (report.added, report.updated, report.skipped_unsubscribed) == (4, 0, 1)
    third = tmp_path / "third.csv"
    export_csv(db, "copy", third)
    assert third.read_bytes() == first.read_bytes()


def test_round_trip_of_a_list_built_by_an_import_is_identical(db, tmp_path) -> None:
    # The usual life of a list: imported from a file, exported later, imported elsewhere.
    create_list(db, "a")
    source = tmp_path / "source.csv"
    source.write_text("email,name,city,status\n" + "".join(
        f"p{i}@example.com,Person {i},Town {i % 3},{'unsubscribed' if i % 4 == 0 else ''}\n" for i in range(12)),
        "utf-8")
    import_csv(db, source, "a")
    first = tmp_path / "first.csv"
    export_csv(db, "a", first)
    other = open_database(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        create_list(other, "copy")
        import_csv(other, first, "copy")
        second = tmp_path / "second.csv"
        export_csv(other, "copy", second)
    finally:
        other.dispose()
    assert second.read_text("utf-8") == first.read_text("utf-8")


def test_fields_added_by_hand_and_by_import_export_to_a_file_that_imports_again(db, tmp_path) -> None:
    # `subscribers add --field City=York` and an imported `city` column are one merge field.
    create_list(db, "news")
    add_subscriber(db, "ada@example.com", "news", "Ada", {"City": "York", "Home Town": "Leeds"})
    source = tmp_path / "source.csv"
    source.write_text("email,name,City,Home Town\ngrace@example.com,Grace,Hull,Goole\n", "utf-8")
    import_csv(db, source, "news")
    first = tmp_path / "first.csv"
    export_csv(db, "news", first)
    other = open_database(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        create_list(other, "copy")
        report = import_csv(other, first, "copy")  # must not refuse its own export
        assert (report.added, report.rejected) == (2, 0)
        second = tmp_path / "second.csv"
        export_csv(other, "copy", second)
    finally:
        other.dispose()
    assert second.read_text("utf-8") == first.read_text("utf-8")
    assert show(db, "ada@example.com")["fields"].keys() == show(db, "grace@example.com")["fields"].keys()


def test_round_trip_keeps_timestamps_written_with_an_offset(db, tmp_path) -> None:
    # A file from another tool (or another time zone): the instants must survive, shown in UTC.
    create_list(db, "news")
    source = tmp_path / "in.csv"
    source.write_text("email,name,status,subscribed_at,unsubscribed_at\n"
                      "a@example.com,A,subscribed,2024-01-01T12:00:00+02:00,\n"
                      "b@example.com,B,unsubscribed,2023-06-01T08:30:00.250000+00:00,2024-03-01T23:15:00-05:00\n",
                      "utf-8")
    import_csv(db, source, "news")
    out = tmp_path / "out.csv"
    export_csv(db, "news", out)
    rows = read(out)
    instants = [[dt.datetime.fromisoformat(v) if v else None for v in row[3:]] for row in rows[1:]]
    assert instants == [
        [dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC), None],
        [dt.datetime(2023, 6, 1, 8, 30, 0, 250000, tzinfo=dt.UTC), dt.datetime(2024, 3, 2, 4, 15, tzinfo=dt.UTC)],
    ]
    assert all(v.endswith("+00:00") for row in rows[1:] for v in row[3:] if v)  # shown in UTC


def test_export_timestamps_are_utc_whatever_the_session_time_zone(db_url, tmp_path) -> None:
    # A PostgreSQL server set to local time hands timestamps back in that zone.
    url = db_url + "%20-ctimezone%3DAmerica/New_York" if db_url.startswith("postgresql") else db_url
    database = open_database(url)
    try:
        create_list(database, "news")
        add_subscriber(database, "ada@example.com", "news", "Ada")
        out = tmp_path / "out.csv"
        export_csv(database, "news", out)
        stamp = read(out)[1][3]
        assert stamp.endswith("+00:00"), stamp
        assert show(database, "ada@example.com")["lists"][0]["subscribed_at"].endswith("+00:00")
    finally:
        database.dispose()


def test_export_to_stdout(db, tmp_path, capsys) -> None:
    populate(db)
    out = tmp_path / "a.csv"
    export_csv(db, "a", out)
    capsys.readouterr()
    assert export_csv(db, "a", None) == 5
    printed = capsys.readouterr().out
    assert printed == out.read_bytes().decode("utf-8")
    assert list(csv.reader(io.StringIO(printed, newline="")))[0] == HEADER


def test_a_missing_list_raises_and_writes_no_file(db, tmp_path) -> None:
    create_list(db, "news")
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "out.csv"
    with pytest.raises(ListNotFound, match="'nope'"):
        export_csv(db, "nope", out)
    assert list(folder.iterdir()) == []
    out.write_text("precious\n", "utf-8")
    with pytest.raises(ListNotFound):
        export_csv(db, "nope", out)
    assert out.read_text("utf-8") == "precious\n"


def test_an_interrupted_export_leaves_the_old_file_and_no_partial_one(db, tmp_path) -> None:
    populate(db)
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "out.csv"
    out.write_text("precious\n", "utf-8")

    def interrupt(done: int) -> None:  # Ctrl-C while the rows are being written
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_csv(db, "a", out, on_progress=interrupt)
    assert out.read_text("utf-8") == "precious\n"
    assert sorted(p.name for p in folder.iterdir()) == ["out.csv"]  # no half-written temporary left over


# --- CSV injection (OWASP): nothing a spreadsheet would run, and the import gives it back -------------

RISKY = ['=HYPERLINK("http://example.net/x","Click me")', "+44 1772 000000", "-2+3", "@SUM(A1:A9)",
         "'=already quoted", "''+twice", "'plain quote", "a = b", "-", "=", "safe", ""]


@pytest.mark.parametrize("value", RISKY)
def test_neutralise_is_safe_and_restore_is_its_exact_inverse(value) -> None:
    from subscribers.csv_files import neutralise, restore
    written = neutralise(value)
    assert not written.startswith(("=", "+", "-", "@")), written
    assert restore(written) == value


def test_export_neutralises_formulas_and_the_import_reads_them_back_unchanged(db, tmp_path) -> None:
    create_list(db, "a")
    for i, value in enumerate(RISKY):
        add_subscriber(db, f"p{i}@example.com", "a", value if value else "", {"note": value} if value else {})
    add_subscriber(db, "-dash@example.com", "a", "@handle")  # an address may start with - (dot-atom)
    first = tmp_path / "first.csv"
    export_csv(db, "a", first)
    rows = read(first)
    header = rows[0]
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), (cell, row)
    by_email = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert by_email["p0@example.com"]["note"] == "'" + RISKY[0]
    assert by_email["'-dash@example.com"]["name"] == "'@handle"

    other = open_database(f"sqlite:///{tmp_path / 'second.db'}")
    try:
        create_list(other, "copy")
        assert import_csv(other, first, "copy").added == len(RISKY) + 1
        for i, value in enumerate(RISKY):
            record = show(other, f"p{i}@example.com")
            assert (record["name"], record["fields"].get("note", "")) == (value, value), value
        assert show(other, "-dash@example.com")["name"] == "@handle"
        second = tmp_path / "second.csv"
        export_csv(other, "copy", second)
    finally:
        other.dispose()
    assert second.read_bytes() == first.read_bytes()
