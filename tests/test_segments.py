"""Segments (design §15) on SQLite and PostgreSQL: every operator, who is never picked, bad files, the CLI.

Real databases (the `db_url` fixture), segment files written to tmp_path and read
from disk, a real send of issue 2021-01 through the file transport, and real SES
notifications (the AWS examples in tests/fixtures/ses) applied with mailer.take.
"""
from __future__ import annotations

import ast
import copy
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import bindparam, delete, func, inspect, select, update

import mailer
import subscribers as subs
from components import render_issue
from mailer import Envelope, MessageTemplate, Policy, SegmentInvalid, SegmentNotFound, TransportError
from mailer.schema import deliveries, sends
from mailer.segments import compile_rule, count_members, find_segment, load_segment, segment_members
from newsletter.cli import main
from subscribers.schema import memberships, suppressions
from subscribers.schema import subscribers as subscribers_table
from subscribers.suppression import suppress

from .conftest import ISSUES, ROOT

LIST = "members"
OTHER = "friends"
ISSUE = "2021-01"
BASE = "https://news.example.org"
SES = Path(__file__).parent / "fixtures" / "ses"
NEWSLETTER = Path(sys.executable).parent / "newsletter"

# The audience every operator test reads: name -> custom fields.
PEOPLE: dict[str, dict[str, Any]] = {
    "ann": {"team": "youth", "city": "Preston", "role": "staff"},
    "bob": {"team": "youth", "city": "Chorley", "role": "volunteer"},
    "cat": {"team": "  youth ", "city": "Lancaster", "role": "volunteer"},  # stored with spaces: trimmed
    "dan": {"team": "adults"},  # no city, no role
    "eve": {},  # no fields at all
    "fay": {"team": "Youth"},  # exact: not youth
    "gus": {"team": 5, "city": None},  # not text: matches no value, so matches every `not`
}


def email(name: str) -> str:
    return f"{name}@example.org"


@pytest.fixture
def ledger(db_url):
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield database
    database.dispose()


@pytest.fixture
def audience(ledger):
    subs.create_list(ledger, LIST)
    for name, fields in PEOPLE.items():
        subs.add_subscriber(ledger, email(name), LIST, name=name.title(), fields=fields)
    return ledger


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "segments"
    path.mkdir()
    return path


def write(folder: Path, text: str, name: str = "seg") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text, "utf-8")
    return path


def segment_of(folder: Path, where: str, name: str = "seg") -> mailer.Segment:
    indented = "\n".join("  " + line for line in where.strip("\n").splitlines())
    return load_segment(write(folder, f"title: A test\nwhere:\n{indented}\n", name))


def picked(db, segment: mailer.Segment, list_name: str = LIST) -> set[str]:
    """Who the segment picks, by the part of the address before the @, checked three ways."""
    found = mailer.segment_addresses(db, segment, list_name)
    with db.begin() as conn:
        list_id = subs.get_list(conn, list_name).id
        ids = list(conn.execute(segment_members(conn, segment, list_id)).scalars())
        count = count_members(conn, segment, list_id)
        emails = dict(conn.execute(select(subscribers_table.c.id, subscribers_table.c.email)).all())
    assert ids == sorted(ids), "members come ordered by id"
    assert [emails[i] for i in ids] == found
    assert count == len(ids) == mailer.segment_count(db, segment, list_name)
    return {e.split("@")[0] for e in found}


# --- every operator ---------------------------------------------------------------------------------

EVERYONE = set(PEOPLE)
OPERATOR_CASES = [
    ("field: team\nis: youth", {"ann", "bob", "cat"}),
    ("field: team\nis: '  youth\t'", {"ann", "bob", "cat"}),  # the rule's value is trimmed too
    ("field: team\nis: Youth", {"fay"}),
    ("field: team\nin: [adults, youth]", {"ann", "bob", "cat", "dan"}),
    ("field: team\nin: [nobody]", set()),
    ("field: team\nis: '5'", set()),  # gus holds the number 5, not the text
    ("field: city\nis: Preston", {"ann"}),
    ("not: {field: city, is: Preston}", EVERYONE - {"ann"}),  # dan, eve, gus have no city: they match `not`
    ("not: {field: city, in: [Preston, Chorley]}", {"cat", "dan", "eve", "fay", "gus"}),
    ("not: {field: team, is: '5'}", EVERYONE),
    ("not: {not: {field: role, is: volunteer}}", {"bob", "cat"}),
    ("all:\n  - {field: team, is: youth}\n  - not: {field: role, is: volunteer}", {"ann"}),
    ("any:\n  - {field: city, is: Chorley}\n  - {field: team, is: adults}", {"bob", "dan"}),
    ("all:\n  - {field: team, is: youth}\n  - any:\n      - {field: city, in: [Preston, Chorley]}\n"
     "      - not: {field: role, is: volunteer}", {"ann", "bob"}),
    ("not:\n  any:\n    - {field: team, is: youth}\n    - {field: team, is: adults}", {"eve", "fay", "gus"}),
    ("not:\n  all:\n    - {field: team, is: youth}\n    - {field: role, is: volunteer}", EVERYONE - {"bob", "cat"}),
    ("field: no_such_field\nis: x", set()),
    ("not: {field: no_such_field, is: x}", EVERYONE),
]


@pytest.mark.parametrize(("where", "expected"), OPERATOR_CASES, ids=[c[0].split("\n")[0] for c in OPERATOR_CASES])
def test_each_operator_picks_exactly_who_it_says(audience, folder, where, expected):
    assert picked(audience, segment_of(folder, where)) == expected


def test_the_example_of_the_design_reads_and_describes(folder):
    segment = load_segment(write(folder, (ROOT / "segments" / "youth-workers-preston.yaml").read_text("utf-8"),
                                 "youth"))
    assert segment.name == "youth"
    assert segment.title == "Youth workers in Preston"
    assert segment.describe().splitlines() == [
        "all of:",
        '  - field team is "youth"',
        "  - any of:",
        '      - field city is one of "Preston", "Chorley"',
        '      - not: field role is "volunteer"',
        "  - joined the list after 2025-01-01 (UTC)",
        "  - had issue 2020-12 delivered"]


@pytest.mark.parametrize("path", sorted((ROOT / "segments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_segment_is_valid(path):
    assert load_segment(path).describe()


# --- never outside the list's subscribed, unsuppressed members ---------------------------------------

def test_a_segment_never_reaches_past_the_lists_subscribed_unsuppressed_members(audience, folder):
    subs.create_list(audience, OTHER, double_opt_in=True)
    subs.add_subscriber(audience, email("other"), OTHER, fields={"team": "youth"})  # another list only
    subs.unsubscribe(audience, email("bob"), LIST)
    assert subs.request_subscription(audience, email("una"), LIST, fields={"team": "youth"}) == "subscribed"
    subs.create_list(audience, "double", double_opt_in=True)
    assert subs.request_subscription(audience, email("una"), "double") == "unconfirmed"
    with audience.begin() as conn:
        suppress(conn, subs.normalise(email("cat")), "bounce: Permanent/General", "bounce")
    everyone = segment_of(folder, "not: {field: no_such_field, is: x}")  # matches anyone it may see

    assert picked(audience, everyone) == EVERYONE - {"bob", "cat"} | {"una"}
    assert picked(audience, segment_of(folder, "field: team\nis: youth")) == {"ann", "una"}
    assert picked(audience, everyone, "double") == set()  # unconfirmed is not subscribed
    assert picked(audience, everyone, OTHER) == {"other"}
    with audience.begin() as conn:  # lifting the suppression brings cat back
        conn.execute(delete(suppressions))
    assert "cat" in picked(audience, everyone)


def test_the_sender_freezes_exactly_the_segments_members(audience, folder):
    """What mailer/sending.py does at a send's start, with the segment's SELECT in place of the whole list."""
    segment = segment_of(folder, "field: team\nis: youth")
    with audience.begin() as conn:
        suppress(conn, subs.normalise(email("bob")), "complaint", "complaint")
        list_id = subs.get_list(conn, LIST).id
        send_id = conn.execute(sends.insert().values(
            issue=ISSUE, list_id=list_id, list_name=LIST, subject="s", state="running",
            created_at=dt.datetime.now(dt.UTC))).inserted_primary_key[0]
        rows = segment.members(conn, list_id).add_columns(
            bindparam("s", send_id), bindparam("st", "pending"), bindparam("a", 0), func.current_timestamp())
        conn.execute(deliveries.insert().from_select(["subscriber_id", "send_id", "state", "attempts",
                                                      "updated_at"], rows))
        frozen = conn.execute(select(subscribers_table.c.email).join(
            deliveries, deliveries.c.subscriber_id == subscribers_table.c.id).where(
            deliveries.c.send_id == send_id).order_by(deliveries.c.id)).scalars().all()
    assert frozen == [email("ann"), email("cat")]


# --- joined dates -----------------------------------------------------------------------------------

JOINED = {
    "ann": dt.datetime(2024, 12, 31, 23, 59, tzinfo=dt.UTC),
    "bob": dt.datetime(2025, 1, 1, 0, 0, tzinfo=dt.UTC),
    "cat": dt.datetime(2025, 1, 1, 23, 59, 59, tzinfo=dt.UTC),
    "dan": dt.datetime(2025, 1, 2, 0, 0, tzinfo=dt.UTC),
    "eve": dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC),
    "fay": None,  # imported without a date: joins no date range, so matches `not`
}
JOINED_CASES = [  # gus joined on 2020-01-01
    ("joined: {after: 2025-01-01}", {"dan", "eve"}),  # after the whole (UTC) day
    ("joined: {before: 2025-01-01}", {"ann", "gus"}),
    ("joined: {after: 2024-12-31, before: 2025-01-02}", {"bob", "cat"}),
    ("joined: {after: '2025-01-01'}", {"dan", "eve"}),  # quoted: the same date
    ("joined: {after: 2025-01-01T23:59:59Z}", {"dan", "eve"}),  # a time: strictly after it
    ("joined: {after: 2025-01-02T00:59:00+01:00}", {"cat", "dan", "eve"}),  # 23:59 UTC
    ("joined: {before: 2025-01-01T00:00:01Z}", {"ann", "bob", "gus"}),
    ("not: {joined: {after: 2025-01-01}}", {"ann", "bob", "cat", "fay", "gus"}),
    ("not: {joined: {before: 2030-01-01}}", {"fay"}),  # no date: in no range
]


@pytest.mark.parametrize(("where", "expected"), JOINED_CASES, ids=[c[0] for c in JOINED_CASES])
def test_joined_compares_the_date_of_joining_this_list(audience, folder, where, expected):
    with audience.begin() as conn:
        conn.execute(update(memberships).values(subscribed_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
        for name, when in JOINED.items():
            person = select(subscribers_table.c.id).where(subscribers_table.c.email == email(name)).scalar_subquery()
            conn.execute(update(memberships).where(memberships.c.subscriber_id == person).values(subscribed_at=when))
    assert picked(audience, segment_of(folder, where)) == expected


# --- past events of an issue ------------------------------------------------------------------------

def _body(name: str, changes: dict[str, Any]) -> str:
    payload = json.loads((SES / name).read_text())
    payload = copy.deepcopy(payload)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = payload
        for key in parents:
            node = node[key]
        node[last] = value
    return json.dumps(payload)


def delivered(to: str, message_id: str) -> str:
    return _body("notification-delivery.json", {
        "delivery.recipients": [to], "mail.messageId": message_id, "mail.destination": [to]})


def bounced(to: str, message_id: str) -> str:  # transient: counted, not suppressed
    return _body("notification-bounce-dsn.json", {
        "bounce.bounceType": "Transient", "bounce.bounceSubType": "MailboxFull", "bounce.feedbackId": uuid.uuid4().hex,
        "bounce.bouncedRecipients": [{"emailAddress": to, "action": "delayed", "status": "4.2.2"}],
        "mail.messageId": message_id, "mail.destination": [to]})


def complained(to: str, message_id: str) -> str:
    return _body("notification-complaint-feedback.json", {
        "complaint.complainedRecipients": [{"emailAddress": to}], "complaint.feedbackId": uuid.uuid4().hex,
        "mail.messageId": message_id, "mail.destination": [to]})


class RefusesOne:
    """The file transport, except that one address is refused for good (its ledger row ends `failed`)."""

    name = "file"

    def __init__(self, inner: Any, refused: str):
        self.inner, self.refused = inner, refused

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        if to == self.refused:
            raise TransportError("554 Message rejected: Email address is not verified")
        return self.inner.send(raw, to, tags)


def send_to_list(db, tmp_path: Path, issue: str, list_name: str, refused: str = "") -> dict[str, str]:
    """A real send through the ledger and the file transport; returns the message id per address."""
    rendered = render_issue(ISSUES / f"{ISSUE}.yaml", base_url=BASE)
    template = MessageTemplate(rendered, Envelope("News <news@example.org>", f"<{list_name}.example.org>"))
    plan = mailer.plan_send(db, issue, list_name)
    send_id = mailer.start_send(db, plan, "subject")
    transport = RefusesOne(mailer.make_transport("file", outbox=str(tmp_path / "outbox")), refused)
    mailer.run_send(db, send_id, template, transport, subs.Tokens("k"), BASE, rate=10000, workers=2,
                    sleep=lambda s: None)
    with db.begin() as conn:
        return dict(conn.execute(select(subscribers_table.c.email, deliveries.c.message_id).join(
            deliveries, deliveries.c.subscriber_id == subscribers_table.c.id).where(
            deliveries.c.send_id == send_id, deliveries.c.message_id.is_not(None))).all())


def test_events_of_a_given_issue(audience, folder, tmp_path):
    subs.create_list(audience, OTHER)
    for name in ("ann", "bob", "cat", "dan"):
        subs.add_subscriber(audience, email(name), OTHER)
    ids = send_to_list(audience, tmp_path, ISSUE, LIST, refused=email("eve"))
    assert set(ids) == {email(n) for n in EVERYONE - {"eve"}}
    applied = mailer.take(audience, [delivered(email("ann"), ids[email("ann")]),
                                     delivered(email("bob"), ids[email("bob")]),
                                     bounced(email("cat"), ids[email("cat")]),
                                     delivered(email("dan"), "not-a-message-of-ours")], Policy(), "test")
    assert (applied.stored, applied.unattributed) == (4, 1)
    # dan leaves LIST through the issue's link (the web app does both): still on OTHER.
    assert mailer.record_unsubscribe(audience, subscriber_id(audience, email("dan")), list_id(audience, LIST),
                                     email("dan"))
    subs.unsubscribe(audience, email("dan"), LIST, source="one-click")
    # The next issue, to the other list: its events are not ISSUE's.
    later = send_to_list(audience, tmp_path, "2021-02", OTHER)
    mailer.take(audience, [bounced(email("ann"), later[email("ann")])], Policy(), "test")

    def on(where: str, list_name: str = LIST) -> set[str]:
        return picked(audience, segment_of(folder, where), list_name)

    assert on(f"event: {{kind: sent, issue: {ISSUE}}}") == EVERYONE - {"eve", "dan"}  # eve's row failed
    assert on(f"not: {{event: {{kind: sent, issue: {ISSUE}}}}}") == {"eve"}
    assert on(f"event: {{kind: delivered, issue: {ISSUE}}}") == {"ann", "bob"}  # dan's event was not ours
    assert on(f"event: {{kind: bounced, issue: {ISSUE}}}") == {"cat"}  # not ann's bounce of 2021-02
    assert on("event: {kind: bounced, issue: 2021-02}") == {"ann"}  # an issue's events, whatever the list
    assert on("event: {kind: bounced, issue: 2021-02}", OTHER) == {"ann"}
    assert on(f"event: {{kind: unsubscribed, issue: {ISSUE}}}", OTHER) == {"dan"}
    assert on(f"event: {{kind: unsubscribed, issue: {ISSUE}}}") == set()  # dan left this list
    assert on(f"event: {{kind: complained, issue: {ISSUE}}}") == set()
    assert on(f"event: {{kind: delivered, issue: {ISSUE}}}", OTHER) == {"ann", "bob"}
    assert on("event: {kind: sent, issue: 2020-12}") == set()  # never sent
    assert on("event: {kind: sent, issue: 2021-02}") == {"ann", "bob", "cat"}  # dan left LIST

    # A complaint suppresses at once: the complainer leaves every segment, even one asking for complaints.
    mailer.take(audience, [complained(email("bob"), ids[email("bob")])], Policy(), "test")
    assert on(f"event: {{kind: complained, issue: {ISSUE}}}", OTHER) == set()
    assert "bob" not in on(f"event: {{kind: delivered, issue: {ISSUE}}}", OTHER)
    bob, other = subscriber_id(audience, email("bob")), list_id(audience, OTHER)
    with audience.begin() as conn:  # by hand (nothing lifts a complaint): the event itself still counts
        conn.execute(delete(suppressions))
        conn.execute(update(memberships).where(memberships.c.subscriber_id == bob, memberships.c.list_id == other)
                     .values(status="subscribed"))
    assert on(f"event: {{kind: complained, issue: {ISSUE}}}", OTHER) == {"bob"}


def subscriber_id(db, address: str) -> int:
    with db.begin() as conn:
        return int(conn.execute(select(subscribers_table.c.id).where(
            subscribers_table.c.email == address)).scalar_one())


def list_id(db, name: str) -> int:
    with db.begin() as conn:
        return subs.get_list(conn, name).id


# --- hostile names and values are bound, never SQL ----------------------------------------------------

HOSTILE_NAMES = ["o'brien\";drop_table_subscribers;--", "$.\"a\".b[0]", "naïve_champ_🎉", "back\\slash",
                 "%(list_id_1)s", "?"]
HOSTILE_VALUES = ["'; DROP TABLE subscribers; --", "Robert'); DROP TABLE memberships;--", "\" OR 1=1 --",
                  "ünïcödé 🎉 ¿", "%s", "?", "\\'"]
PLACEHOLDERS = {"?", "%s", "%(list_id_1)s"}  # these spell the drivers' own placeholders: found in any SQL


def quoted(value: Any) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(value, ensure_ascii=False)


def test_hostile_field_names_and_values_are_bound_parameters(audience, folder):
    for i, name in enumerate(HOSTILE_NAMES):
        subs.add_subscriber(audience, f"h{i}@example.org", LIST, fields={name: HOSTILE_VALUES[i]})
    subs.add_subscriber(audience, "all@example.org", LIST, fields={HOSTILE_NAMES[0]: HOSTILE_VALUES[1]})
    for i, name in enumerate(HOSTILE_NAMES):
        value = HOSTILE_VALUES[i]
        segment = segment_of(folder, f"field: {quoted(name)}\nis: {quoted(value)}")
        assert picked(audience, segment) == {f"h{i}"}, name
        others = segment_of(folder, f"not: {{field: {quoted(name)}, in: {quoted(HOSTILE_VALUES)}}}")
        assert f"h{i}" not in picked(audience, others) and "ann" in picked(audience, others)
        members_of = list_id(audience, LIST)
        with audience.begin() as conn:
            compiled = segment_members(conn, segment, members_of).compile(dialect=conn.dialect)
        sql = str(compiled)
        assert all(s not in sql for s in {name, value} - PLACEHOLDERS), sql
        bound = [b for v in compiled.params.values() for b in (v if isinstance(v, list) else [v])]
        assert name in bound and value in bound
    mixed = segment_of(folder, f"field: {quoted(HOSTILE_NAMES[0])}\nin: {quoted(HOSTILE_VALUES)}")
    assert picked(audience, mixed) == {"h0", "all"}
    with audience.begin() as conn:  # and every table is still there
        assert {"subscribers", "memberships", "deliveries"} <= set(inspect(conn).get_table_names())


def test_the_compiler_writes_no_sql_text():
    tree = ast.parse((ROOT / "mailer" / "segments.py").read_text("utf-8"))
    called = {n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
              for n in ast.walk(tree) if isinstance(n, ast.Call)}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not {"text", "literal_column", "exec_driver_sql", "format"} & (called | imported)


def test_compile_rule_is_usable_on_its_own(audience, folder):
    segment = segment_of(folder, "field: team\nis: adults")
    members_of = list_id(audience, LIST)
    with audience.begin() as conn:
        members = subs.subscribed_members(conn, members_of)
        found = conn.execute(select(members.c.email).where(
            compile_rule(segment.where, members, conn.dialect.name))).scalars().all()
    assert found == [email("dan")]


# --- bad files ----------------------------------------------------------------------------------------

def problems_of(path: Path) -> list[str]:
    with pytest.raises(SegmentInvalid) as caught:
        load_segment(path)
    lines = [str(p) for p in caught.value.problems]
    assert str(caught.value) == "\n".join(lines)
    return lines


BAD = [
    ("titel: x\nwhere: {field: a, is: b}\n",
     "1:1: titel: unknown key 'titel' in a segment file; did you mean `title`?"),
    ("title: x\n", "1:1: `where:` is missing"),
    ("", "1:1: a segment file is a mapping"),
    ("- field: a\n", "1:1: a segment file is a mapping"),
    ("where:\n  feild: team\n  is: youth\n", "2:3: where.feild: unknown key 'feild' in a rule; did you mean `field`?"),
    ("where:\n  field: team\n  is: [a, b]\n", "3:7: where.is: `is` takes one value; for several, write `in: [A, B]`"),
    ("where:\n  field: team\n  in: youth\n", "3:7: where.in: `in` takes a list; for one value write `is: youth`"),
    ("where:\n  field: team\n  in: []\n", "3:7: where.in: `in` is empty"),
    ("where:\n  field: team\n  is: a\n  in: [b]\n", "4:3: where.in: give `is` (one value) or `in` (a list), not both"),
    ("where:\n  field: team\n", "2:3: where: field 'team': say what to compare with"),
    ("where:\n  field: Home Town\n  is: x\n", "2:10: where.field: field names are kept lower-case with "
                                              "underscores: write `field: home_town`"),
    ("where:\n  field: ok\n  is: yes\n", "3:7: where.is: YAML reads this as true"),
    ("where:\n  field: ok\n  is: 5\n", "3:7: where.is: YAML reads this as a number (5)"),
    ("where:\n  field: ok\n  is: 2020-01-01\n", "3:7: where.is: YAML reads this as a date"),
    ("where:\n  field: ok\n  is:\n", "3:6: where.is: `is` has no value"),
    ("where:\n  is: x\n", "2:3: where: `is` and `in` compare a field: add `field: NAME`"),
    ("where:\n  all: []\n", "2:8: where.all: `all` is empty: give it at least one rule"),
    ("where:\n  any: []\n", "2:8: where.any: `any` is empty"),
    ("where:\n  all: {field: a, is: b}\n", "2:8: where.all: `all` takes a list of rules"),
    ("where:\n  not: [{field: a, is: b}]\n", "2:8: where.not: `not` takes one rule, not a list"),
    ("where:\n  all: [{field: a, is: b}]\n  any: [{field: a, is: b}]\n",
     "3:3: where.any: `all` and `any` in one item: one rule per item"),
    ("where:\n  field: a\n  is: b\n  not: {field: c, is: d}\n", "4:3: where.not: `not` beside `field`"),
    ("where:\n  joined: {after: 2025-13-01}\n", "2:19: where.joined.after: invalid value '2025-13-01'"),
    ("where:\n  joined: {after: soon}\n", "2:19: where.joined.after: not a date: write YYYY-MM-DD"),
    ("where:\n  joined: {after: 2025-01-01T09:00:00}\n", "2:19: where.joined.after: a time needs its offset"),
    ("where:\n  joined: {since: 2025-01-01}\n", "2:11: where.joined: `joined` takes `after: DATE` and/or"),
    ("where:\n  joined: {after: 2025-02-01, before: 2025-02-02}\n",
     "2:39: where.joined.before: nobody can join after 2025-02-01 (UTC) and before 2025-02-02 (UTC)"),
    ("where:\n  event: {kind: delivery, issue: 2020-12}\n",
     "2:17: where.event.kind: unknown event kind 'delivery'; did you mean `delivered`?"),
    ("where:\n  event: {kind: opened, issue: 2020-12}\n", "known: sent, delivered, bounced, complained, unsubscribed"),
    ("where:\n  event: {kind: sent}\n", "2:10: where.event: `event` needs `issue:`"),
    ("where:\n  event: {issue: 2020-12}\n", "2:10: where.event: `event` needs `kind:`"),
    ("where:\n  event: {kind: sent, issue: [a]}\n", "2:30: where.event.issue: `issue` is an issue's slug"),
    ("where: &a {field: a, is: b}\n", "1:8: where: anchor &a: anchors and aliases"),
    ("where:\n  field: a\n  field: b\n  is: c\n", "3:3: where.field: given twice, at lines 2 and 3"),
    ("where: [\n", "YAML syntax error"),
    ("where:\n  any:\n    - {field: a, is: b}\n    - 12\n", "4:7: where.any[1]: a rule is one of:"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_a_bad_file_is_refused_with_the_place_of_each_problem(folder, text, expected):
    path = write(folder, text)
    found = problems_of(path)
    assert any(line.startswith(f"{path}:") for line in found)
    assert any(expected in line for line in found), found
    if expected[0].isdigit():
        assert any(line.startswith(f"{path}:{expected}") for line in found), found


def test_every_problem_of_a_file_is_reported_in_order(folder):
    path = write(folder, "titel: Broken\nwhere:\n  all:\n    - {field: Team, is: yes}\n    - any: []\n"
                         "    - event: {kind: openned, issue: 2020-12}\n    - joined: {after: 2025-02-30}\n")
    found = problems_of(path)
    assert [line.split(": ")[0] for line in found] == [
        f"{path}:1:1", f"{path}:4:15", f"{path}:4:25", f"{path}:5:12", f"{path}:6:21", f"{path}:7:23"]


def test_values_are_capped(folder):
    values = ", ".join(f"v{i}" for i in range(999))
    items = "\n".join(f"    - {{field: a, in: [{values}]}}" for _ in range(6))
    found = problems_of(write(folder, f"where:\n  any:\n{items}\n"))
    assert any("more than 5,000 values in one segment" in line for line in found)


def test_unknown_names_list_the_known_ones(folder):
    write(folder, "where: {field: a, is: b}\n", "youth")
    write(folder, "where: {field: a, is: b}\n", "adults")
    with pytest.raises(SegmentNotFound, match=r"no segment 'yuoth' \(did you mean 'youth'\?\); "
                                              r"known segments: adults, youth"):
        find_segment(folder, "yuoth")
    with pytest.raises(SegmentNotFound, match="known segments: adults, youth"):
        find_segment(folder, "../segments/youth")  # a name, never a path
    assert find_segment(folder, "youth").name == "youth"
    with pytest.raises(SegmentNotFound, match="holds no .yaml file"):
        find_segment(folder / "missing", "youth")


# --- the command line -----------------------------------------------------------------------------------

@pytest.fixture
def cli(db_url, tmp_path, monkeypatch):
    """`cli(*args)` runs `newsletter` in-process, in a project folder with segments/, on the test database."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and not name.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(name)
    project = tmp_path / "project"
    (project / "segments").mkdir(parents=True)
    monkeypatch.chdir(project)
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(main, list(args), env={"NEWSLETTER_DATABASE_URL": db_url})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result
    return invoke


def test_cli_ls_lists_names_titles_files_and_the_first_problem_of_a_broken_one(cli):
    assert cli("segments", "ls").output == "No segments: segments/ holds no .yaml file.\n"
    write(Path("segments"), "title: Youth workers\nwhere: {field: team, is: youth}\n", "youth")
    write(Path("segments"), "where:\n  all: []\n  feild: x\n", "broken")
    result = cli("segments", "ls")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "broken  BROKEN  [segments/broken.yaml]",
        "        segments/broken.yaml:2:8: where.all: `all` is empty: give it at least one rule",
        "youth   Youth workers  [segments/youth.yaml]"]


def test_cli_show_prints_the_rule_the_members_and_the_count(cli, ledger):
    subs.create_list(ledger, LIST)
    for name, fields in PEOPLE.items():
        subs.add_subscriber(ledger, email(name), LIST, fields=fields)
    subs.unsubscribe(ledger, email("ann"), LIST)
    write(Path("segments"), (ROOT / "segments" / "youth-workers-preston.yaml").read_text("utf-8"), "preston")
    write(Path("segments"), "title: Young\nwhere:\n  field: team\n  in: [youth]\n", "young")

    shown = cli("segments", "show", "preston")
    assert shown.exit_code == 0
    assert shown.output.startswith("preston: Youth workers in Preston  [segments/preston.yaml]\n")
    assert '      - not: field role is "volunteer"\n' in shown.output

    members = cli("segments", "show", "young", "--list", LIST)
    assert members.exit_code == 0, members.output
    assert members.output.endswith(f"\n2 on {LIST}:\n  {email('bob')}\n  {email('cat')}\n")
    counted = cli("segments", "show", "young", "--list", LIST, "--count")
    assert (counted.exit_code, counted.output) == (0, "2\n")
    assert cli("segments", "show", "preston", "--list", LIST, "--count").output == "0\n"


def test_cli_show_refuses_unknown_names_broken_files_and_lists(cli, ledger):
    write(Path("segments"), "where: {field: team, is: youth}\n", "young")
    write(Path("segments"), "where:\n  field: team\n  is: [a]\n  in: x\n", "broken")
    unknown = cli("segments", "show", "yung")
    assert unknown.exit_code == 1
    assert unknown.output == "Error: no segment 'yung' (did you mean 'young'?); known segments: broken, young\n"
    broken = cli("segments", "show", "broken")
    assert broken.exit_code == 1
    assert "segments/broken.yaml:4:3: where.in: give `is` (one value) or `in` (a list), not both" in broken.output
    no_list = cli("segments", "show", "young", "--list", "nope", "--count")
    assert no_list.exit_code == 1 and "nope" in no_list.output and "Traceback" not in no_list.output
    usage = cli("segments", "show", "young", "--count")
    assert usage.exit_code == 2 and "--count needs --list" in usage.output


def test_cli_finds_segments_beside_the_config_file(cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "segments").mkdir(parents=True)
    (elsewhere / "newsletter.toml").write_text("")
    write(elsewhere / "segments", "title: Far\nwhere: {field: a, is: b}\n", "far")
    write(Path("segments"), "title: Near\nwhere: {field: a, is: b}\n", "near")
    assert "far" in cli("--config", str(elsewhere / "newsletter.toml"), "segments", "ls").output
    assert "near" in cli("segments", "ls").output


def test_the_installed_command_exits_1_without_a_traceback(tmp_path):
    (tmp_path / "segments").mkdir()
    write(tmp_path / "segments", "where:\n  event: {kind: opened, issue: 2020-12}\n", "bad")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run([str(NEWSLETTER), "segments", "show", "bad"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("Error: segments/bad.yaml:2:17: where.event.kind: unknown event kind 'opened'; "
                             "known: sent, delivered, bounced, complained, unsubscribed\n")
