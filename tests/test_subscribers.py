"""Lists, subscribers, suppression and the rule that who left stays left; on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

import subscribers as subs
from subscribers.db import current_revisions, head_revisions, table_names
from subscribers.schema import memberships, subscribers, suppressions


def _count(db, table) -> int:
    with db.begin() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_migrations_create_the_schema_once(db_url):
    db = subs.open_database(db_url)
    try:
        assert {"lists", "subscribers", "memberships", "suppressions", "alembic_version"} <= set(table_names(db))
        assert current_revisions(db) == head_revisions(db) == {"0007_browse_indexes"}
        assert subs.upgrade(db) is False  # already at head: nothing to do
    finally:
        db.dispose()


def test_sqlite_uses_wal_and_foreign_keys(tmp_path):
    db = subs.open_database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_lists_create_ls_rm(db):
    subs.create_list(db, "news", "LVRN News", double_opt_in=True)
    subs.create_list(db, "events")
    with pytest.raises(subs.ListExists):
        subs.create_list(db, "news")
    with pytest.raises(subs.SubscribersError, match="not a valid list name"):
        subs.create_list(db, "Bad Name!")
    subs.add_subscriber(db, "a@example.org", "news")
    found = {item["name"]: item for item in subs.list_lists(db)}
    assert found["news"]["subscribed"] == 1 and found["news"]["double_opt_in"] is True
    assert found["events"]["subscribed"] == 0 and found["events"]["title"] == "events"
    assert subs.remove_list(db, "news") == (1, 0)
    assert [item["name"] for item in subs.list_lists(db)] == ["events"]
    assert _count(db, subscribers) == 1  # people stay; only the list and its memberships go
    with pytest.raises(subs.ListNotFound, match="events"):
        subs.remove_list(db, "news")


def test_one_person_whatever_the_case_of_their_address(db):
    subs.create_list(db, "news")
    assert subs.add_subscriber(db, "  Ann.Lee@Example.COM ", "news", "Ann") == "added"
    assert subs.add_subscriber(db, "ann.lee@example.com", "news") == "unchanged"
    assert subs.add_subscriber(db, "ANN.LEE@EXAMPLE.COM", "news", fields={"town": "Preston"}) == "updated"
    record = subs.show(db, "ann.lee@EXAMPLE.com")
    assert record["email"] == "Ann.Lee@example.com"  # stored as written, domain lower-cased
    assert record["name"] == "Ann" and record["fields"] == {"town": "Preston"}
    assert _count(db, subscribers) == 1


def test_show_has_the_shape_of_the_design(db):
    subs.create_list(db, "news")
    subs.create_list(db, "events")
    subs.add_subscriber(db, "bo@example.org", "news", "Bo", {"team": "blue"})
    subs.add_subscriber(db, "bo@example.org", "events")
    subs.unsubscribe(db, "bo@example.org", "events")
    record = subs.show(db, "bo@example.org")
    assert set(record) == {"email", "name", "fields", "suppressed", "suppression_reason", "lists"}
    assert record["suppressed"] is False and record["suppression_reason"] is None
    assert [(m["list"], m["status"]) for m in record["lists"]] == [("events", "unsubscribed"), ("news", "subscribed")]
    events = record["lists"][0]
    assert events["unsubscribed_at"].endswith("+00:00") and events["source"] == "admin"


def test_unsubscribe_one_list_or_all_and_idempotent(db):
    for name in ("news", "events"):
        subs.create_list(db, name)
        subs.add_subscriber(db, "cy@example.org", name)
    assert subs.unsubscribe(db, "cy@example.org", "news") == ["news"]
    assert subs.unsubscribe(db, "cy@example.org", "news") == []
    assert subs.unsubscribe(db, "cy@example.org") == ["events"]
    assert {m["status"] for m in subs.show(db, "cy@example.org")["lists"]} == {"unsubscribed"}
    with pytest.raises(subs.SubscriberNotFound):
        subs.unsubscribe(db, "nobody@example.org")
    with pytest.raises(subs.ListNotFound):
        subs.unsubscribe(db, "cy@example.org", "nope")


@pytest.mark.parametrize("path", ["add", "form"])
def test_nobody_who_unsubscribed_is_put_back(db, path):
    subs.create_list(db, "news")
    subs.add_subscriber(db, "di@example.org", "news")
    subs.unsubscribe(db, "di@example.org", "news")
    with pytest.raises(subs.NotAllowed, match="unsubscribed"):
        if path == "add":
            subs.add_subscriber(db, "DI@example.org", "news")
        else:
            subs.request_subscription(db, "di@example.org", "news")
    assert subs.show(db, "di@example.org")["lists"][0]["status"] == "unsubscribed"


@pytest.mark.parametrize("path", ["add", "form"])
def test_nobody_suppressed_is_subscribed(db, path):
    subs.create_list(db, "news")
    with db.begin() as conn:
        from subscribers.suppression import suppress
        suppress(conn, subs.normalise("ed@example.org"), "hard bounce", "bounce")
    with pytest.raises(subs.NotAllowed, match="suppressed"):
        if path == "add":
            subs.add_subscriber(db, "ed@example.org", "news")
        else:
            subs.request_subscription(db, "ed@example.org", "news")
    with pytest.raises(subs.SubscriberNotFound):
        subs.show(db, "ed@example.org")


@pytest.mark.parametrize("why", ["unsubscribed", "suppressed", "list made again"])
def test_every_way_in_asks_the_one_guard_and_gets_the_same_answer(db, tmp_path, why):
    from subscribers.membership import refusals
    subs.create_list(db, "news")
    if why == "suppressed":
        with db.begin() as conn:
            subs.suppress_address(conn, subs.normalise("gil@example.org"), "bounce: Permanent/General", "ses")
    else:
        subs.add_subscriber(db, "gil@example.org", "news")
        subs.unsubscribe(db, "gil@example.org", "news")
        if why == "list made again":  # a removed list keeps who left it
            subs.remove_list(db, "news")
            subs.create_list(db, "news")
    with db.begin() as conn:
        address = subs.normalise("gil@example.org")
        refusal = refusals(conn, subs.get_list(conn, "news"), [address])[address.key]
    assert refusal.kind == ("suppressed" if why == "suppressed" else "unsubscribed")
    before = subs.show(db, "gil@example.org") if why != "suppressed" else None
    # `add` (and the API, through it) and the form's old path refuse with the guard's own words...
    for join in (lambda: subs.add_subscriber(db, "gil@example.org", "news", "Gil"),
                 lambda: subs.request_subscription(db, "gil@example.org", "news")):
        with pytest.raises(subs.NotAllowed) as caught:
            join()
        assert str(caught.value) == refusal.message
    # ...an import skips the row, giving the guard's reason...
    path = tmp_path / "people.csv"
    path.write_text("email,name\ngil@example.org,Gil Again\n", "utf-8")
    report = subs.import_csv(db, path, "news")
    group = "skipped (suppressed)" if why == "suppressed" else "skipped (unsubscribed)"
    assert (report.added, dict(report.reasons)) == (0, {group: {refusal.reason: 1}})
    # ...and the sign-up form asks for their own confirmation from their mailbox.
    assert subs.sign_up(db, "gil@example.org", "news").outcome == "confirm"
    if before is not None:
        after = subs.show(db, "gil@example.org")
        assert (after["name"], after["lists"]) == (before["name"], before["lists"])


def test_the_guard_answers_for_a_whole_batch_in_one_call(db):
    from subscribers.membership import refusals
    subs.create_list(db, "news")
    for i in range(3):
        subs.add_subscriber(db, f"p{i}@example.org", "news")
    subs.unsubscribe(db, "p1@example.org", "news")
    with db.begin() as conn:
        subs.suppress_address(conn, subs.normalise("p2@example.org"), "complaint", "ses")
        found = refusals(conn, subs.get_list(conn, "news"),
                         [subs.normalise(f"p{i}@example.org") for i in range(4)])
    assert {key: r.kind for key, r in found.items()} == {"p1@example.org": "unsubscribed",
                                                         "p2@example.org": "suppressed"}


def test_unsubscribing_from_one_list_does_not_block_another(db):
    subs.create_list(db, "news")
    subs.create_list(db, "events")
    subs.add_subscriber(db, "fi@example.org", "news")
    subs.unsubscribe(db, "fi@example.org", "news")
    assert subs.add_subscriber(db, "fi@example.org", "events") == "added"


def test_form_sign_up_is_unconfirmed_on_a_double_opt_in_list(db):
    subs.create_list(db, "news", double_opt_in=True)
    subs.create_list(db, "open")
    assert subs.request_subscription(db, "gi@example.org", "news", "Gi") == "unconfirmed"
    assert subs.request_subscription(db, "gi@example.org", "open") == "subscribed"
    lists = subs.show(db, "gi@example.org")["lists"]
    statuses = {m["list"]: (m["status"], m["source"], m["confirmed_at"]) for m in lists}
    assert statuses["news"][:2] == ("unconfirmed", "form") and statuses["news"][2] is None
    assert statuses["open"][:2] == ("subscribed", "form") and statuses["open"][2] is not None


def test_forget_erases_everything_but_a_hash(db):
    subs.create_list(db, "news")
    subs.add_subscriber(db, "Hana@Example.org", "news", "Hana", {"town": "Leeds"})
    subs.forget(db, "hana@example.org")
    with pytest.raises(subs.SubscriberNotFound, match="suppressed"):
        subs.show(db, "hana@example.org")
    with db.begin() as conn:
        rows = conn.execute(select(suppressions)).all()
        assert [(r.email, r.email_hash) for r in rows] == [(None, subs.address_hash("hana@example.org"))]
        assert conn.execute(select(func.count()).select_from(memberships)).scalar_one() == 0
        # Nothing personal anywhere in the database.
        for table in (subscribers, memberships, suppressions):
            for row in conn.execute(select(table)):
                assert "hana" not in repr(tuple(row)).lower()
    with pytest.raises(subs.NotAllowed):
        subs.add_subscriber(db, "hana@example.org", "news")
    subs.forget(db, "hana@example.org")  # idempotent


def test_forget_keeps_an_earlier_suppression_reason_without_the_address(db):
    with db.begin() as conn:
        from subscribers.suppression import suppress
        suppress(conn, subs.normalise("io@example.org"), "complaint", "complaint")
    subs.forget(db, "io@example.org")
    with db.begin() as conn:
        row = conn.execute(select(suppressions)).one()
    assert row.email is None and row.reason == "complaint"


def test_invalid_addresses_are_refused_everywhere(db):
    subs.create_list(db, "news")
    for bad in ("", "   ", "no-at-sign", "a@b", "x@localhost", "two@@example.org"):
        with pytest.raises(subs.InvalidAddress):
            subs.add_subscriber(db, bad, "news")
    assert _count(db, subscribers) == 0


def test_a_non_ascii_local_part_is_refused_by_every_way_in(db):
    # SES does not support SMTPUTF8 (design §9): such an address could never be mailed.
    subs.create_list(db, "news")
    for join in (lambda a: subs.add_subscriber(db, a, "news"), lambda a: subs.sign_up(db, a, "news"),
                 lambda a: subs.request_subscription(db, a, "news")):
        with pytest.raises(subs.InvalidAddress, match="non-ASCII characters before the @"):
            join("zoë.brontë@example.org")
    assert _count(db, subscribers) == 0


def test_an_idn_domain_is_one_person_in_either_spelling_and_stored_in_ascii(db):
    subs.create_list(db, "news")
    assert subs.add_subscriber(db, "x@bücher.de", "news", "X") == "added"
    assert subs.add_subscriber(db, "X@XN--BCHER-KVA.DE", "news") == "unchanged"
    assert subs.show(db, "x@xn--bcher-kva.de")["email"] == "x@xn--bcher-kva.de"
    assert subs.unsubscribe(db, "x@bücher.de") == ["news"]
    with pytest.raises(subs.NotAllowed, match="unsubscribed"):
        subs.add_subscriber(db, "x@xn--bcher-kva.de", "news")


def test_confirming_lifts_the_suppression_of_an_idn_address(db):
    import datetime as dt
    subs.create_list(db, "club", "Club", double_opt_in=True)
    with db.begin() as conn:
        subs.suppress_address(conn, subs.normalise("kim@bücher.de"), "hard bounce", "bounce")
    signed = subs.sign_up(db, "kim@xn--bcher-kva.de", "club")
    assert signed.outcome == "confirm"  # suppressed: only their own mailbox can bring them back
    subs.confirm_subscription(db, signed.member.subscriber_id, signed.member.list_id, dt.datetime.now(dt.UTC))
    assert _count(db, suppressions) == 0
    assert subs.show(db, "kim@bücher.de")["suppressed"] is False


def test_forget_reaches_an_address_stored_before_non_ascii_local_parts_were_refused(db):
    import datetime as dt
    subs.create_list(db, "news")
    with db.begin() as conn:  # as the code before migration 0004 stored it
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        conn.execute(subscribers.insert().values(email="zoë@example.org", email_key="zoë@example.org", name="Zoë",
                                                 fields={}, created_at=now, updated_at=now))
    assert subs.show(db, "Zoë@example.org")["name"] == "Zoë"
    subs.forget(db, "zoë@example.org")
    assert _count(db, subscribers) == 0
    with db.begin() as conn:
        assert conn.execute(select(suppressions.c.email_hash)).scalar_one() == subs.address_hash("zoë@example.org")


def test_bad_database_url_is_a_clear_error(tmp_path):
    with pytest.raises(subs.DatabaseError, match="bad database URL"):
        subs.open_database("nosuchdriver://x")
    with pytest.raises(subs.DatabaseError):
        subs.open_database(f"sqlite:///{tmp_path}/missing/dir/x.db")


def test_unsubscribe_tokens_are_itsdangerous_tokens_and_purpose_bound():
    tokens = subs.Tokens("k")
    for ids in ((0, 0), (7, 3), (123456789, 12)):
        token = tokens.unsubscribe(*ids)
        assert token == tokens._unsubscribe.dumps(list(ids))  # the library's own format, made faster
        assert (tokens.read_unsubscribe(token).subscriber_id, tokens.read_unsubscribe(token).list_id) == ids
    with pytest.raises(subs.InvalidToken):
        tokens.read_unsubscribe(tokens.confirm(7, 3))  # a confirmation link is not an unsubscribe link
    with pytest.raises(subs.InvalidToken):
        subs.Tokens("other").read_unsubscribe(tokens.unsubscribe(7, 3))
    with pytest.raises(subs.InvalidToken):
        tokens.read_unsubscribe(tokens.unsubscribe(7, 3)[:-2] + "xx")
    assert tokens.read_unsubscribe(tokens.proof()).is_proof


def test_a_removed_list_created_again_keeps_who_left(db, tmp_path):
    subs.create_list(db, "news")
    for address in ("stay@example.org", "left@example.org"):
        subs.add_subscriber(db, address, "news")
    subs.unsubscribe(db, "left@example.org", "news")
    assert subs.remove_list(db, "news") == (1, 1)
    assert subs.list_lists(db) == []
    with pytest.raises(subs.ListNotFound):
        subs.add_subscriber(db, "stay@example.org", "news")
    subs.create_list(db, "news", "News again")
    assert [item["title"] for item in subs.list_lists(db)] == ["News again"]
    csv = tmp_path / "again.csv"
    csv.write_text("email\nstay@example.org\nleft@example.org\n", "utf-8")
    report = subs.import_csv(db, csv, "news")
    assert (report.added, report.skipped_unsubscribed) == (1, 1)
    with pytest.raises(subs.NotAllowed):
        subs.add_subscriber(db, "left@example.org", "news")
    assert subs.show(db, "left@example.org")["lists"][0]["status"] == "unsubscribed"


def test_a_confirmation_link_made_before_an_unsubscribe_cannot_undo_it(db):
    import datetime as dt
    subs.create_list(db, "club", "Club", double_opt_in=True)
    signed = subs.sign_up(db, "kim@example.org", "club", "Kim")
    assert signed.outcome == "confirm" and signed.member.status == "unconfirmed"
    tokens = subs.Tokens("s")
    target, issued = tokens.read_confirm_issued(tokens.confirm(signed.member.subscriber_id, signed.member.list_id))
    assert abs((dt.datetime.now(dt.UTC) - issued).total_seconds()) < 5
    subs.unsubscribe(db, "kim@example.org", "club")  # they changed their mind before following it
    with pytest.raises(subs.NotAllowed, match="before you unsubscribed"):
        subs.confirm_subscription(db, target.subscriber_id, target.list_id, issued - dt.timedelta(seconds=1))
    assert [m["status"] for m in subs.show(db, "kim@example.org")["lists"]] == ["unsubscribed"]
    # Signing up again mails a fresh link, and that one works.
    again = subs.sign_up(db, "kim@example.org", "club")
    assert again.outcome == "confirm"
    member = subs.confirm_subscription(db, target.subscriber_id, target.list_id, dt.datetime.now(dt.UTC))
    assert member.status == "subscribed"
