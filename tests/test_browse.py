"""subscribers.browse: pages of people by keyset, search by address prefix, edits; on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import event, text

import subscribers as subs
from subscribers.browse import search_key


def _people(db, n: int = 120, list_name: str = "news") -> list[str]:
    subs.create_list(db, list_name)
    emails = [f"Person{i:03d}@Example.org" for i in range(n)]
    for email in emails:
        subs.add_subscriber(db, email, list_name, name=f"P {email[6:9]}")
    return emails


def _walk(db, **filters) -> list[list[str]]:
    """Every page, following `after` to the end."""
    pages, page = [], subs.find_people(db, **filters)
    while True:
        pages.append([p.email for p in page.people])
        if page.after is None:
            return pages
        page = subs.find_people(db, after=page.after, **filters)


def test_keyset_pages_forwards_and_backwards_newest_first(db) -> None:
    emails = _people(db)
    newest_first = [e.replace("Example.org", "example.org") for e in reversed(emails)]
    pages = _walk(db, list_name="news")
    assert [len(p) for p in pages] == [50, 50, 20]
    assert sum(pages, []) == newest_first  # every person once, in order
    first = subs.find_people(db, list_name="news")
    assert first.before is None  # the first page has no previous one
    second = subs.find_people(db, list_name="news", after=first.after)
    third = subs.find_people(db, list_name="news", after=second.after)
    assert third.after is None and third.before is not None
    back = subs.find_people(db, list_name="news", before=third.before)
    assert [p.email for p in back.people] == [p.email for p in second.people]
    assert back.after == second.after and back.before is not None
    again = subs.find_people(db, list_name="news", before=back.before)
    assert [p.email for p in again.people] == [p.email for p in first.people]
    assert again.before is None and again.after == first.after
    # Everyone (no list) pages the same way.
    assert sum(_walk(db), []) == newest_first


def test_search_is_an_address_prefix_in_any_case_in_address_order(db) -> None:
    _people(db)
    found = subs.find_people(db, search="  PERSON01 ")
    assert [p.email for p in found.people] == [f"Person01{i}@example.org" for i in range(10)]
    assert found.by_address and found.after is None
    pages = _walk(db, search="person")
    assert [len(p) for p in pages] == [50, 50, 20]
    assert sum(pages, []) == sorted(sum(pages, []), key=str.lower)  # address order, each once
    assert subs.find_people(db, search="person119@example.org").people[0].name == "P 119"
    assert subs.find_people(db, search="nobody").people == []


def test_search_takes_wildcards_and_punctuation_literally(db) -> None:
    subs.create_list(db, "news")
    for email in ("a-b@example.org", "ab@example.org", "a_c@example.org", "axc@example.org", "a%d@example.org"):
        subs.add_subscriber(db, email, "news")
    assert [p.email for p in subs.find_people(db, search="ab").people] == ["ab@example.org"]
    assert [p.email for p in subs.find_people(db, search="a-").people] == ["a-b@example.org"]
    assert [p.email for p in subs.find_people(db, search="a_").people] == ["a_c@example.org"]
    assert [p.email for p in subs.find_people(db, search="a%").people] == ["a%d@example.org"]


def test_search_finds_an_idn_domain_written_in_unicode(db) -> None:
    subs.create_list(db, "news")
    subs.add_subscriber(db, "Anna@Bücher.de", "news")
    assert search_key("ANNA@Bücher.DE") == "anna@xn--bcher-kva.de"
    for typed in ("anna@bücher", "ANNA@BÜCHER.de", "anna@xn--bcher", "ann"):
        found = subs.find_people(db, search=typed).people
        assert [(p.email, p.shown) for p in found] == [("Anna@xn--bcher-kva.de", "Anna@bücher.de")], typed


def test_filters_by_list_and_status(db) -> None:
    _people(db, 30)
    subs.create_list(db, "other")
    subs.add_subscriber(db, "person003@example.org", "other")
    for i in (1, 5, 7):
        subs.unsubscribe(db, f"person{i:03d}@example.org", "news")
    left = subs.find_people(db, list_name="news", status="unsubscribed")
    assert [p.email for p in left.people] == [f"Person{i:03d}@example.org" for i in (7, 5, 1)]
    assert [m.status for m in left.people[0].lists] == ["unsubscribed"]
    assert len(subs.find_people(db, list_name="news", status="subscribed").people) == 27
    assert [p.email for p in subs.find_people(db, list_name="other").people] == ["Person003@example.org"]
    assert [p.email for p in subs.find_people(db, status="unsubscribed").people][0] == "Person007@example.org"
    both = subs.find_people(db, list_name="news", status="unsubscribed", search="person00")
    assert [p.email for p in both.people] == [f"Person{i:03d}@example.org" for i in (1, 5, 7)]
    person = subs.find_people(db, search="person003@").people[0]
    assert [(m.list, m.status) for m in person.lists] == [("news", "subscribed"), ("other", "subscribed")]
    with pytest.raises(subs.SubscribersError, match="not a status"):
        subs.find_people(db, status="gone")
    with pytest.raises(subs.ListNotFound):
        subs.find_people(db, list_name="nope")


def test_a_page_marks_the_suppressed(db) -> None:
    _people(db, 3)
    with db.begin() as conn:
        subs.suppress_address(conn, subs.normalise("person001@example.org"), "bounced", "bounce")
    flags = {p.email: p.suppressed for p in subs.find_people(db).people}
    assert flags == {"Person000@example.org": False, "Person001@example.org": True, "Person002@example.org": False}


def test_a_cursor_whose_person_was_forgotten_starts_again(db) -> None:
    _people(db, 60)
    first = subs.find_people(db, search="person")
    gone = first.people[-1]
    subs.forget(db, gone.email)
    again = subs.find_people(db, search="person", after=first.after)
    assert again.people[0].email == "Person000@example.org" and again.before is None


def _search_plan(db, conn, **query) -> str:  # noqa: ANN001
    """EXPLAIN (QUERY PLAN) of the one statement a search runs."""
    seen: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "email_key" in statement and ">=" in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        subs.find_people(db, **query)
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert len(seen) == 1
    statement, parameters = seen[0]
    if db.is_sqlite:
        return " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    return " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))


def test_the_address_search_is_a_range_of_an_index(db, monkeypatch) -> None:  # noqa: ANN001
    """EXPLAIN of the statement the search runs: an index range, never a scan of every subscriber."""
    from subscribers import browse
    _people(db, 5)
    with db.engine.connect() as conn:
        if db.is_sqlite:
            monkeypatch.setattr(browse, "SMALL", 3)  # the list counts as big: the address index leads
            plan = _search_plan(db, conn, search="person00", list_name="news")
            assert "SEARCH subscribers USING" in plan and "email_key>? AND email_key<?" in plan, plan
            monkeypatch.setattr(browse, "SMALL", 20_000)  # a small list is read from its own index
            plan = _search_plan(db, conn, search="person00", list_name="news")
            assert plan.startswith("SEARCH memberships USING COVERING INDEX") and "(list_id=?)" in plan, plan
            plan = _search_plan(db, conn, search="person00")  # everyone: the address index
            assert "SEARCH subscribers USING" in plan and "email_key>? AND email_key<?" in plan, plan
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")  # tiny tables: ask whether the index CAN serve it
            plan = _search_plan(db, conn, search="person00", list_name="news")
            assert "ix_subscribers_key_bytes" in plan, plan
            conn.execute(text("RESET enable_seqscan"))


def test_parse_fields_as_the_command_line_takes_them() -> None:
    assert subs.parse_fields("City=Preston\n\n Home Town = Leyland \nnote=a=b") == {
        "city": "Preston", "home_town": "Leyland", "note": "a=b"}
    with pytest.raises(subs.SubscribersError) as caught:
        subs.parse_fields("city\n=x\ncity=a\nCity=b")
    message = str(caught.value)
    assert "line 1: 'city' is not KEY=VALUE" in message and "line 2" in message
    assert "line 4: 'city' is given twice" in message


def test_edit_sets_name_and_fields_exactly(db) -> None:
    subs.create_list(db, "news")
    subs.add_subscriber(db, "a@example.org", "news", name="A", fields={"city": "Preston", "team": "youth"})
    person = subs.id_of(db, "A@EXAMPLE.org")
    assert subs.edit_subscriber(db, person, "  Ann   Smith ", {"City": "Chorley"}) == "updated"
    record = subs.show(db, "a@example.org")
    assert (record["name"], record["fields"]) == ("Ann Smith", {"city": "Chorley"})
    assert subs.edit_subscriber(db, person, "Ann Smith", {"city": "Chorley"}) == "unchanged"
    with pytest.raises(subs.SubscribersError, match="at most 300"):
        subs.edit_subscriber(db, person, "x" * 301, {})
    with pytest.raises(subs.SubscriberNotFound):
        subs.edit_subscriber(db, person + 1000, "B", {})


def test_unsubscribe_people_from_one_list(db) -> None:
    _people(db, 5)
    subs.create_list(db, "other")
    subs.add_subscriber(db, "person001@example.org", "other")
    ids = [subs.id_of(db, f"person00{i}@example.org") for i in (1, 2)]
    assert subs.unsubscribe_people(db, ids, "news") == 2
    assert subs.unsubscribe_people(db, ids, "news") == 0  # idempotent
    statuses = {m["list"]: m["status"] for m in subs.show(db, "person001@example.org")["lists"]}
    assert statuses == {"news": "unsubscribed", "other": "subscribed"}
    assert subs.show(db, "person003@example.org")["lists"][0]["status"] == "subscribed"
    with pytest.raises(subs.SubscribersError, match="at most"):
        subs.unsubscribe_people(db, range(1, 1000), "news")


def test_a_search_in_a_small_list_finds_what_the_address_index_finds(db, monkeypatch) -> None:  # noqa: ANN001
    """Both ways of reading a search within a list (the list's index first, or the address index first)
    give the same pages, forwards and back, with a status too."""
    from subscribers import browse
    _people(db, 130)
    subs.create_list(db, "other")
    for i in range(0, 130, 3):
        subs.add_subscriber(db, f"Person{i:03d}@Example.org", "other")
    subs.unsubscribe(db, "Person003@Example.org", "other")

    def pages() -> list[object]:
        out = []
        for query in ({"search": "person", "list_name": "other"}, {"search": "person0", "list_name": "news"},
                      {"search": "PERSON1", "list_name": "other", "status": "subscribed"}):
            walked = _walk(db, **query, limit=7)
            last = subs.find_people(db, **query, limit=7)
            while last.after is not None:
                last = subs.find_people(db, **query, limit=7, after=last.after)
            back = subs.find_people(db, **query, limit=7, before=last.before) if last.before else None
            out.append((walked, [p.email for p in back.people] if back else None))
        return out

    monkeypatch.setattr(browse, "SMALL", 1)  # every list is big: the address index first
    by_address = pages()
    monkeypatch.setattr(browse, "SMALL", 20_000)
    assert pages() == by_address
    everyone_in_other = [email for page in by_address[0][0] for email in page]
    assert len(everyone_in_other) == 44 and everyone_in_other == sorted(everyone_in_other)
