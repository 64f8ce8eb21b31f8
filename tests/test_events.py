"""SES events: parsing (mailer/events.py), the policy (mailer/policy.py), attribution and the
report (mailer/reports.py), one person's history (mailer/history.py).

Parsing runs over every SES example of the AWS documentation in tests/fixtures/ses (see
SOURCES.md); variants are deep copies of those examples with a few fields edited. The policy
and attribution tests run on SQLite and PostgreSQL (the `db_url` fixture) with the ledger's
migrations, and send a real issue through `run_send` with a small recording transport of the
test's own, so events can name the message ids the ledger holds.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

import mailer
import subscribers as subs
from components import render_issue
from mailer import Envelope, MalformedEvent, MessageTemplate, Policy, parse_body, parse_ses, report, take
from mailer.history import events_of, forget_events
from mailer.policy import is_hard
from mailer.reports import rates
from mailer.reports import warnings as report_warnings
from mailer.schema import deliveries, events, inbound_errors
from mailer.sending import start_send
from subscribers.schema import subscribers as subscribers_table

from .conftest import ISSUES

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
SES_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json") if p.name.startswith(("event-", "notification-")))
SNS_MESSAGE_ID = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"  # sns-notification.json's MessageId

BASE = "https://news.example.org"
ISSUE = "2021-01"
NEXT_ISSUE = "2021-02"
LIST = "members"
SECRET = "k"
DAY0 = dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.UTC)
REPORT_KEYS = {"issue", "list", "recipients", "sent", "failed", "pending", "unknown", "skipped", "delivered",
               "bounced_hard", "bounced_soft", "complained", "unsubscribed"}  # design §4 (plus id, segment, state)


# --- fixtures and payload variants ----------------------------------------------------------------

def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def text_of(name: str) -> str:
    return (FIXTURES / name).read_text()


DROP = object()  # a `variant` value: remove the key


def variant(payload: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy with dotted paths set ("bounce.bounceType": "Transient") or removed (value DROP).

    A path part that is a number indexes a list ("bounce.bouncedRecipients.0.emailAddress").
    """
    out = copy.deepcopy(payload)
    for path, value in changes.items():
        *parents, last = (int(k) if k.isdigit() else k for k in path.split("."))
        node: Any = out
        for key in parents:
            node = node[key]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    return out


def fresh_id() -> str:
    return f"test-{uuid.uuid4().hex}"


def stamp(days: float) -> str:
    """An SES timestamp `days` after DAY0."""
    return (DAY0 + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def utc(text: str) -> dt.datetime:
    """An SES timestamp read independently of the code under test."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def sns_envelope(message: dict[str, Any] | str) -> str:
    """An SES payload as SNS delivers it over HTTP or to SQS without raw delivery."""
    envelope = load("sns-notification.json")
    envelope["Message"] = message if isinstance(message, str) else json.dumps(message)
    return json.dumps(envelope)


def bounce(email: str, days: float = 0, *, bounce_type: str = "Permanent", subtype: str = "General",
           feedback_id: str | None = None, message_id: str | None = None) -> dict[str, Any]:
    """An identity bounce notification for one recipient, from the DSN example."""
    permanent = bounce_type == "Permanent"
    person = {"emailAddress": email, "action": "failed" if permanent else "delayed",
              "status": "5.1.1" if permanent else "4.2.2",
              "diagnosticCode": f"smtp; {'550 5.1.1' if permanent else '452 4.2.2'} <{email}>... User"}
    return variant(load("notification-bounce-dsn.json"), {
        "bounce.bounceType": bounce_type, "bounce.bounceSubType": subtype, "bounce.timestamp": stamp(days),
        "bounce.feedbackId": feedback_id or fresh_id(), "bounce.bouncedRecipients": [person],
        "mail.messageId": message_id or fresh_id(), "mail.destination": [email], "mail.timestamp": stamp(days)})


def soft(email: str, days: float, **kwargs: Any) -> dict[str, Any]:
    return bounce(email, days, bounce_type="Transient", subtype="MailboxFull", **kwargs)


def complaint(email: str, days: float = 0, *, message_id: str | None = None) -> dict[str, Any]:
    return variant(load("notification-complaint-feedback.json"), {
        "complaint.complainedRecipients": [{"emailAddress": email}], "complaint.timestamp": stamp(days),
        "complaint.feedbackId": fresh_id(), "mail.messageId": message_id or fresh_id(),
        "mail.destination": [email], "mail.timestamp": stamp(days)})


def delivery(email: str, days: float = 0, *, message_id: str | None = None) -> dict[str, Any]:
    return variant(load("notification-delivery.json"), {
        "delivery.timestamp": stamp(days), "delivery.recipients": [email],
        "mail.messageId": message_id or fresh_id(), "mail.destination": [email], "mail.timestamp": stamp(days)})


def published(payload: dict[str, Any], **tags: str) -> dict[str, Any]:
    """The same SES event as a configuration set publishes it (eventType, tags as lists of strings)."""
    out = copy.deepcopy(payload)
    if "notificationType" in out:
        out["eventType"] = out.pop("notificationType")
    out["mail"]["tags"] = {"ses:configuration-set": ["ConfigSet"], **{k: [v] for k, v in tags.items()}}
    return out


# --- database helpers -----------------------------------------------------------------------------

@pytest.fixture
def ledger(db_url):
    """The audience's tables and the mailer's (ledger, events, inbound_errors)."""
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    yield database
    database.dispose()


def feed(db, *payloads: dict[str, Any] | str | bytes, policy: Policy | None = None,
         source: str = "test") -> mailer.Applied:
    bodies = [p if isinstance(p, str | bytes) else json.dumps(p) for p in payloads]
    return take(db, bodies, policy or Policy(), source)


def suppression(db, email: str) -> str | None:
    with db.begin() as conn:
        return subs.suppression_of(conn, subs.normalise(email))


def list_statuses(db, email: str) -> dict[str, str]:
    return {m["list"]: m["status"] for m in subs.show(db, email)["lists"]}


def event_rows(db) -> list[dict[str, Any]]:
    with db.begin() as conn:
        return [dict(r) for r in conn.execute(select(events).order_by(events.c.id)).mappings()]


def error_rows(db) -> list[dict[str, Any]]:
    with db.begin() as conn:
        return [dict(r) for r in conn.execute(select(inbound_errors).order_by(inbound_errors.c.id)).mappings()]


def join(db, list_name: str, *emails: str) -> None:
    for email in emails:
        subs.add_subscriber(db, email, list_name)


def reader(i: int) -> str:
    return f"reader{i:02d}@example.org"


def populate(db, n: int, list_name: str = LIST) -> list[str]:
    subs.create_list(db, list_name)
    people = [reader(i) for i in range(n)] if list_name == LIST else [f"{list_name}{i}@example.net" for i in range(n)]
    join(db, list_name, *people)
    return people


# --- sending: a real send through the ledger ------------------------------------------------------

class Recorder:
    """A transport of the test's own: accepts every message and returns an SES-like message id."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: dict[str, tuple[str, dict[str, str]]] = {}  # to -> (message id, tags)
        self._lock = threading.Lock()

    def send(self, raw: bytes, to: str, tags: dict[str, str]) -> str:
        message_id = f"0100018e{uuid.uuid4().hex}-000000"
        with self._lock:
            assert to not in self.sent, f"{to} mailed twice"
            self.sent[to] = (message_id, dict(tags))
        return message_id

    def message_id(self, to: str) -> str:
        return self.sent[to][0]


@pytest.fixture(scope="module")
def template():
    rendered = render_issue(ISSUES / f"{ISSUE}.yaml", base_url=BASE)
    return MessageTemplate(rendered, Envelope("News <news@example.org>", f"<{LIST}.example.org>"))


def send_issue(db, template, issue: str = ISSUE, list_name: str = LIST) -> tuple[int, Recorder]:
    plan = mailer.plan_send(db, issue, list_name)
    send_id = start_send(db, plan, "subject")
    transport = Recorder()
    mailer.run_send(db, send_id, template, transport, subs.Tokens(SECRET), BASE, rate=10000, workers=2,
                    sleep=lambda s: None)
    return send_id, transport


def ledger_rows(db, send_id: int) -> dict[str | None, dict[str, Any]]:
    """One send's ledger by subscriber email."""
    with db.begin() as conn:
        found = conn.execute(
            select(deliveries, subscribers_table.c.email)
            .select_from(deliveries.outerjoin(subscribers_table, deliveries.c.subscriber_id == subscribers_table.c.id))
            .where(deliveries.c.send_id == send_id)).mappings().all()
    return {r["email"]: dict(r) for r in found}


def report_of(db, list_name: str = LIST, issue: str = ISSUE) -> dict[str, Any]:
    (row,) = [r for r in report(db, issue) if r["list"] == list_name]
    assert REPORT_KEYS <= set(row)
    return {key: row[key] for key in REPORT_KEYS}


# === 1. parsing the AWS examples ==================================================================

@dataclasses.dataclass(frozen=True)
class Expected:
    kind: str
    emails: tuple[str, ...]
    message_id: str
    at: str  # the payload's own timestamp for this event
    hard: bool | None = None


DOCS_MID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
R = ("recipient@example.com",)
EXPECTED = {
    "event-bounce.json": Expected("bounce", R, DOCS_MID, "2017-08-05T00:41:02.669Z", True),
    "event-click.json": Expected("click", R, DOCS_MID, "2017-08-09T23:51:25.570Z"),
    "event-complaint.json": Expected("complaint", R, DOCS_MID, "2017-08-05T00:41:02.669Z"),
    "event-delivery-delay.json": Expected("delivery_delay", R, DOCS_MID, "2020-06-16T00:25:40.095Z"),
    "event-delivery.json": Expected("delivery", R, DOCS_MID, "2016-10-19T23:21:04.133Z"),
    "event-open.json": Expected("open", R, DOCS_MID, "2017-08-09T22:00:19.652Z"),
    # the docs' quirk: the Reject example's destination is the sender; reject has no timestamp of its own
    "event-reject.json": Expected("reject", ("sender@example.com",), DOCS_MID, "2016-10-14T17:38:15.211Z"),
    "event-rendering-failure.json": Expected("rendering_failure", R, DOCS_MID, "2018-01-22T18:43:06.197Z"),
    "event-send.json": Expected("send", R, DOCS_MID, "2016-10-14T05:02:16.645Z"),
    "event-subscription.json": Expected("subscription", R,
                                        "EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000",
                                        "2022-01-12T01:00:17.910Z"),
    "notification-bounce-dsn.json": Expected("bounce", ("jane@example.com",),
                                             "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
                                             "2016-01-27T14:59:38.237Z", True),
    "notification-bounce.json": Expected("bounce", ("jane@example.com", "richard@example.com"),
                                         "00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000",
                                         "2016-01-27T14:59:38.237Z", True),
    "notification-complaint-feedback.json": Expected(
        "complaint", ("richard@example.com",), "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
        "2016-01-27T14:59:38.237Z"),
    "notification-complaint.json": Expected(
        "complaint", ("richard@example.com",), "0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000",
        "2016-01-27T14:59:38.237Z"),
    "notification-delivery.json": Expected(
        "delivery", ("jane@example.com",), "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        "2016-01-27T14:59:38.237Z"),
}


def test_every_ses_fixture_has_an_expectation():
    assert len(SES_FIXTURES) == 15
    assert set(SES_FIXTURES) == set(EXPECTED)


@pytest.mark.parametrize("name", SES_FIXTURES)
def test_aws_example_parses(name: str):
    payload, want = load(name), EXPECTED[name]
    found = parse_body(text_of(name))
    assert [e.kind for e in found] == [want.kind] * len(want.emails)
    assert tuple(e.email for e in found) == want.emails
    assert {e.message_id for e in found} == {want.message_id}
    for event in found:
        assert event.occurred_at == utc(want.at)
        assert event.occurred_at.utcoffset() == dt.timedelta(0)
        assert is_hard(event) is want.hard
        assert event.sns_message_id is None
        assert json.loads(event.raw) == payload  # the whole payload is kept
    assert len({e.key for e in found}) == len(found)


@pytest.mark.parametrize("name", SES_FIXTURES)
def test_tags_are_parsed_from_event_publishing_only(name: str):
    (first, *_) = parse_body(text_of(name))
    if name.startswith("event-"):
        assert first.tags["ses:configuration-set"] == ["ConfigSet"]
        assert dict(first.tags) == load(name)["mail"]["tags"]
    else:
        assert dict(first.tags) == {}


def test_tags_keep_custom_values_as_lists():
    (event,) = parse_body(text_of("event-click.json"))
    assert event.tags["myCustomTag1"] == ["myCustomValue1"]
    assert event.tags["ses:source-ip"] == ["192.0.2.0"]


def test_multi_recipient_bounce_gives_one_event_per_bounced_recipient():
    found = parse_body(text_of("notification-bounce.json"))
    # mary@example.com was a destination but did not bounce
    assert [e.email for e in found] == ["jane@example.com", "richard@example.com"]
    assert found[0].key != found[1].key
    assert all(e.bounce_type == "Permanent" and e.bounce_subtype == "General" for e in found)
    assert all(e.detail["feedbackId"] == "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000"
               for e in found)
    assert all("status" not in e.detail for e in found)  # this example has no DSN


def test_dsn_status_and_diagnostic_are_kept_per_recipient():
    (event,) = parse_body(text_of("notification-bounce-dsn.json"))
    assert event.detail["status"] == "5.1.1"
    assert event.detail["action"] == "failed"
    assert event.detail["diagnostic"] == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert event.detail["reportingMTA"] == "dns; email.example.com"


def test_dsn_details_follow_their_own_recipient():
    payload = load("notification-bounce-dsn.json")
    other = {"emailAddress": "mary@example.com", "status": "5.2.2", "action": "failed",
             "diagnosticCode": "smtp; 552 5.2.2 mailbox full"}
    found = parse_ses(variant(payload, {"bounce.bouncedRecipients": [*payload["bounce"]["bouncedRecipients"], other]}))
    assert {e.email: (e.detail["status"], e.detail["diagnostic"]) for e in found} == {
        "jane@example.com": ("5.1.1", "smtp; 550 5.1.1 <jane@example.com>... User"),
        "mary@example.com": ("5.2.2", "smtp; 552 5.2.2 mailbox full")}


def test_delivery_delay_keeps_the_recipients_status():
    (event,) = parse_body(text_of("event-delivery-delay.json"))
    assert (event.detail["status"], event.detail["delayType"]) == ("4.4.1", "TransientCommunicationFailure")


@pytest.mark.parametrize(("name", "feedback_type"), [
    ("notification-complaint-feedback.json", "abuse"), ("event-complaint.json", "abuse"),
    ("notification-complaint.json", None)])
def test_complaint_feedback_type_is_kept(name: str, feedback_type: str | None):
    (event,) = parse_body(text_of(name))
    assert event.detail.get("complaintFeedbackType") == feedback_type
    assert is_hard(event) is None


@pytest.mark.parametrize(("bounce_type", "subtype", "status", "hard"), [
    ("Permanent", "General", "5.1.1", True),
    ("Permanent", "NoEmail", "5.1.1", True),
    ("Permanent", "General", None, True),
    ("Transient", "General", "4.4.7", False),
    ("Transient", "MailboxFull", "4.2.2", False),
    ("Transient", "General", None, False),
    # SES refused to send because the address is on a suppression list: permanent whatever the type says
    ("Transient", "Suppressed", None, True),
    ("Transient", "OnAccountSuppressionList", None, True),
    ("Undetermined", "OnAccountSuppressionList", None, True),
    # the receiving server's DSN says permanent (RFC 3463 class 5), whatever SES's type says (listmonk #1463)
    ("Transient", "General", "5.4.4", True),
    ("Transient", "MailboxFull", "5.2.2", True),
    ("Undetermined", "Undetermined", "5.0.0", True),
    ("Transient", "General", "4.5.1", False),
    ("Transient", "General", "5.x", False),  # not a DSN status
])
@pytest.mark.parametrize("name", ["event-bounce.json", "notification-bounce-dsn.json"])
def test_hard_flag_of_bounces(name: str, bounce_type: str, subtype: str, status: str | None, hard: bool):
    changes: dict[str, Any] = {"bounce.bounceType": bounce_type, "bounce.bounceSubType": subtype,
                               "bounce.bouncedRecipients.0.status": status if status else DROP}
    (event,) = parse_ses(variant(load(name), changes))
    assert is_hard(event) is hard
    assert (event.bounce_type, event.bounce_subtype) == (bounce_type, subtype)


def test_bounce_address_with_a_display_name_is_reduced_to_the_address():
    payload = variant(load("notification-bounce-dsn.json"),
                      {"bounce.bouncedRecipients.0.emailAddress": '"Jane Doe" <jane@example.com>'})
    (event,) = parse_ses(payload)
    assert event.email == "jane@example.com"


def test_timestamp_with_an_offset_is_the_same_instant():
    payload = variant(load("notification-bounce-dsn.json"), {"bounce.timestamp": "2016-01-27T16:59:38.237+02:00"})
    (event,) = parse_ses(payload)
    assert event.occurred_at == utc("2016-01-27T14:59:38.237Z")


# === 2. envelopes and malformed bodies ============================================================

@pytest.mark.parametrize("name", SES_FIXTURES)
def test_sns_envelope_gives_the_same_events_plus_the_sns_message_id(name: str):
    raw = parse_body(text_of(name))
    wrapped = parse_body(sns_envelope(load(name)))
    assert [e.key for e in wrapped] == [e.key for e in raw]
    assert {e.sns_message_id for e in wrapped} == {SNS_MESSAGE_ID}
    assert [dataclasses.replace(e, sns_message_id=None, raw="") for e in wrapped] == [
        dataclasses.replace(e, raw="") for e in raw]
    # the raw payload is kept as received (the SNS Message text, or the body itself): the same JSON
    assert [json.loads(e.raw) for e in wrapped] == [json.loads(e.raw) for e in raw]


def test_body_may_be_bytes():
    assert parse_body(text_of("event-bounce.json").encode()) == parse_body(text_of("event-bounce.json"))


SUBSCRIPTION_SUCCEEDED = {
    "notificationType": "AmazonSnsSubscriptionSucceeded",
    "message": "You have successfully subscribed your Amazon SNS topic "
               "'arn:aws:sns:us-east-1:123456789012:bounces' to receive 'Bounce' notifications from "
               "Amazon SES for identity 'example.com'."}


@pytest.mark.parametrize("body", [json.dumps(SUBSCRIPTION_SUCCEEDED), sns_envelope(SUBSCRIPTION_SUCCEEDED)],
                         ids=["raw", "wrapped"])
def test_subscription_succeeded_notice_is_no_event_and_no_error(body: str):
    assert parse_body(body) == []


BOUNCE = load("notification-bounce-dsn.json")
COMPLAINT = load("notification-complaint.json")
MALFORMED = {
    "sns-subscription-confirmation": (text_of("sns-subscription-confirmation.json"), "SubscriptionConfirmation"),
    "sns-unsubscribe-confirmation": (json.dumps(variant(load("sns-subscription-confirmation.json"),
                                                        {"Type": "UnsubscribeConfirmation"})),
                                     "UnsubscribeConfirmation"),
    "sns-message-not-ses": (text_of("sns-notification.json"), "SNS Message is not JSON"),
    "sns-without-message": (json.dumps(variant(load("sns-notification.json"), {"Message": DROP})), "no Message"),
    "not-json": ("<html>502 Bad Gateway</html>", "not JSON"),
    "empty": ("", "not JSON"),
    "json-array": (json.dumps([BOUNCE]), "not an object"),
    "json-string": (json.dumps("Bounce"), "not an object"),
    "unknown-notification-type": (json.dumps(variant(BOUNCE, {"notificationType": "Bogus"})), "'Bogus'"),
    "no-type": (json.dumps(variant(BOUNCE, {"notificationType": DROP})), "unknown type"),
    "unknown-event-type": (json.dumps(variant(load("event-open.json"), {"eventType": "Opened"})), "'Opened'"),
    "no-mail": (json.dumps(variant(BOUNCE, {"mail": DROP})), "mail.messageId"),
    "no-message-id": (json.dumps(variant(BOUNCE, {"mail.messageId": DROP})), "mail.messageId"),
    "message-id-not-text": (json.dumps(variant(BOUNCE, {"mail.messageId": 12345})), "mail.messageId"),
    "bounce-not-an-object": (json.dumps(variant(BOUNCE, {"bounce": "Permanent"})), "bounce is not an object"),
    "no-bounced-recipients": (json.dumps(variant(BOUNCE, {"bounce.bouncedRecipients": DROP})), "bouncedRecipients"),
    "bounced-recipients-not-a-list": (json.dumps(variant(BOUNCE, {"bounce.bouncedRecipients": "jane@example.com"})),
                                      "bouncedRecipients"),
    "bounced-recipients-of-strings": (json.dumps(variant(BOUNCE, {"bounce.bouncedRecipients": ["jane@example.com"]})),
                                      "bouncedRecipients"),
    "no-complained-recipients": (json.dumps(variant(COMPLAINT, {"complaint.complainedRecipients": DROP})),
                                 "complainedRecipients"),
    "bad-timestamp": (json.dumps(variant(BOUNCE, {"bounce.timestamp": "last Tuesday"})), "'last Tuesday'"),
    "no-timestamp": (json.dumps(variant(BOUNCE, {"bounce.timestamp": DROP, "mail.timestamp": DROP})), "timestamp"),
    "delivery-without-recipients": (json.dumps(variant(load("event-send.json"), {"mail.destination": []})),
                                    "no recipient"),
    "non-utf8": ('{"notificationType": "Bounce", "note": "caf\u00e9"}'.encode("latin-1"), "utf-8"),
    "invalid-utf8-byte": (b'{"notificationType": "Bounce\xff"}', "can't decode byte 0xff"),
    "wrapped-without-message-id": (sns_envelope(variant(BOUNCE, {"mail.messageId": DROP})), "mail.messageId"),
    "wrapped-bad-timestamp": (sns_envelope(variant(BOUNCE, {"bounce.timestamp": "2016-13-45T99:00:00Z"})),
                              "timestamp"),
    # the payloads below crashed `events poll` for good before issue 11 (see HOSTILE)
}


def hostile(email: str = "jane@example.com") -> dict[str, tuple[str, str]]:
    """Payloads of the right shape with a field of the wrong kind: name -> (body, what the error names).

    Each is the docs' DSN bounce for `email` with one thing wrong; none may stop a batch.
    """
    dsn = variant(BOUNCE, {"bounce.bouncedRecipients.0.emailAddress": email, "mail.destination": [email],
                           "bounce.feedbackId": fresh_id()})
    delivered = variant(load("notification-delivery.json"), {"delivery.recipients": [email]})

    def edit(changes: dict[str, Any], base: dict[str, Any] = dsn) -> str:
        return json.dumps(variant(base, changes))
    return {
        "numeric-feedback-id": (edit({"bounce.feedbackId": 12345}), "bounce.feedbackId is 12345, not text"),
        "list-bounce-type": (edit({"bounce.bounceType": ["Permanent"]}), "bounce.bounceType is ['Permanent']"),
        "year-9999-timestamp": (edit({"bounce.timestamp": "9999-12-31T23:59:59.999Z"}), "bounce.timestamp"),
        "year-9999-west-of-utc": (edit({"bounce.timestamp": "9999-12-31T23:59:59-05:00"}), "bounce.timestamp"),
        "year-1-east-of-utc": (edit({"bounce.timestamp": "0001-01-01T00:00:00+01:00"}), "bounce.timestamp"),
        "lone-surrogate-in-address": (edit({"bounce.bouncedRecipients.0.emailAddress": "jane\ud800@example.com"}),
                                      "lone surrogate"),
        "lone-surrogate-in-diagnostic": (edit({"bounce.bouncedRecipients.0.diagnosticCode": "550 \udc00"}),
                                         "lone surrogate"),
        "raw-lone-surrogate": (json.dumps(variant(dsn, {"bounce.reportingMTA": "dns; \ud800"}), ensure_ascii=False),
                               "lone surrogate"),
        "address-not-text": (edit({"bounce.bouncedRecipients.0.emailAddress": 42}),
                             "bouncedRecipients[0].emailAddress is 42"),
        "huge-int-feedback-id": (edit({"bounce.feedbackId": 10**40}), "bounce.feedbackId"),
        "nan-feedback-id": (edit({"bounce.feedbackId": float("nan")}), "bounce.feedbackId is nan"),
        "status-not-text": (edit({"bounce.bouncedRecipients.0.status": 5.1}), "bouncedRecipients[0].status"),
        "nested-junk-address": (edit({"bounce.bouncedRecipients.0.emailAddress": {"a": [[{"b": None}]] * 3}}),
                                "bouncedRecipients[0].emailAddress"),
        "type-is-a-list": (edit({"notificationType": ["Bounce"]}), "unknown type ['Bounce']"),
        "type-is-an-object": (edit({"notificationType": {"Bounce": 1}}), "unknown type"),
        "mail-timestamp-number": (edit({"bounce.timestamp": DROP, "mail.timestamp": 1453906778}),
                                  "mail.timestamp 1453906778 is not text"),
        "tags-not-lists": (json.dumps(published(dsn, send_id="1")).replace('"send_id": ["1"]', '"send_id": 1'),
                           "mail.tags.send_id is 1"),
        "tag-values-not-text": (json.dumps(published(dsn)).replace('["ConfigSet"]', '[1e400]'),
                                "mail.tags.ses:configuration-set"),
        "tags-not-an-object": (edit({"mail.tags": ["send_id", "1"]}), "mail.tags"),
        "bool-processing-time": (edit({"delivery.processingTimeMillis": True}, delivered),
                                 "delivery.processingTimeMillis is True"),
        "delivery-recipient-not-text": (edit({"delivery.recipients": [["jane@example.com"]]}, delivered),
                                        "delivery.recipients[0]"),
        "complaint-type-number": (json.dumps(variant(complaint(email), {"complaint.complaintFeedbackType": 7})),
                                  "complaint.complaintFeedbackType"),
    }


HOSTILE = hostile()
MALFORMED.update({f"hostile-{name}": case for name, case in HOSTILE.items()})
MALFORMED.update({f"wrapped-hostile-{name}": (sns_envelope(body), problem) for name, (body, problem) in
                  HOSTILE.items() if name != "raw-lone-surrogate"})


@pytest.mark.parametrize(("body", "problem"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_body_is_refused_naming_the_problem(body: str | bytes, problem: str):
    with pytest.raises(MalformedEvent) as caught:
        parse_body(body)
    assert problem in str(caught.value)
    assert isinstance(caught.value, mailer.MailerError)


def test_a_payload_without_any_timestamp_is_dated_by_its_sns_envelope():
    (jane, richard) = parse_body(text_of("seen-sns-bounce-without-timestamps.json"))
    assert (jane.email, richard.email) == ("jane@example.com", "richard@example.com")
    assert jane.occurred_at == richard.occurred_at == utc("2018-03-26T17:58:59.675Z")
    assert jane.key != richard.key
    # the same envelope delivered again (SNS keeps its Timestamp on retries) is the same event
    assert [e.key for e in parse_body(text_of("seen-sns-bounce-without-timestamps.json"))] == [jane.key, richard.key]


def test_the_envelope_time_is_used_only_when_the_payload_has_none():
    (event,) = parse_body(sns_envelope(BOUNCE))
    assert event.occurred_at == utc(BOUNCE["bounce"]["timestamp"])  # not the envelope's 2012 Timestamp
    only_mail = variant(BOUNCE, {"bounce.timestamp": DROP, "mail.timestamp": "2016-01-27T14:59:38.237Z"})
    (event,) = parse_body(sns_envelope(only_mail))
    assert event.occurred_at == utc("2016-01-27T14:59:38.237Z")
    none = variant(BOUNCE, {"bounce.timestamp": DROP, "mail.timestamp": DROP})
    (event,) = parse_body(sns_envelope(none))
    assert event.occurred_at == utc(load("sns-notification.json")["Timestamp"])
    envelope = json.loads(sns_envelope(none))
    for bad in ("yesterday", 1453906778, None):
        envelope["Timestamp"] = bad
        with pytest.raises(MalformedEvent, match="no timestamp"):
            parse_body(json.dumps(envelope))
    with pytest.raises(MalformedEvent, match="no timestamp"):  # raw delivery: no envelope to date it
        parse_body(json.dumps(none))


def test_the_webhook_passes_the_verified_timestamp():
    none = json.dumps(variant(BOUNCE, {"bounce.timestamp": DROP, "mail.timestamp": DROP}))
    when = dt.datetime(2026, 11, 20, 11, 59, 30, tzinfo=dt.UTC)
    (event,) = mailer.events.parse_message(none, sns_message_id="m", sns_timestamp=when)
    assert (event.occurred_at, event.sns_message_id) == (when, "m")


def test_the_validated_topic_notice_is_no_event_and_no_error():
    assert parse_body(text_of("seen-sns-validated-notice.json")) == []
    assert mailer.events.parse_message("Successfully validated SNS topic for Amazon SES event publishing.",
                                       sns_message_id="x") == []
    with pytest.raises(MalformedEvent, match="not JSON"):  # any other plain text is still unreadable
        parse_body(sns_envelope("Successfully validated nothing"))


def test_a_message_ending_in_a_newline_is_read():
    (event,) = parse_body(sns_envelope(json.dumps(BOUNCE) + "\n"))
    assert event.raw is not None and event.raw.endswith("\n")  # kept as received
    assert [dataclasses.replace(event, raw=None)] == [dataclasses.replace(e, raw=None)
                                                      for e in parse_body(sns_envelope(BOUNCE))]


# === 3. the policy ================================================================================

@pytest.mark.parametrize("reported_as", ["jane.doe@example.org", "JANE.DOE@Example.ORG",
                                         '"Jane Doe" <jane.doe@example.org>'])
@pytest.mark.parametrize(("bounce_type", "subtype"), [
    ("Permanent", "General"), ("Transient", "Suppressed"), ("Transient", "OnAccountSuppressionList")])
def test_a_hard_bounce_suppresses_at_once(ledger, reported_as: str, bounce_type: str, subtype: str):
    subs.create_list(ledger, LIST)
    join(ledger, LIST, "Jane.Doe@example.org", reader(1))
    applied = feed(ledger, bounce(reported_as, bounce_type=bounce_type, subtype=subtype))
    assert (applied.stored, applied.duplicates, applied.malformed) == (1, 0, 0)
    assert len(applied.suppressed) == 1
    shown = subs.show(ledger, "jane.doe@example.org")
    assert shown["suppressed"] is True
    assert bounce_type in shown["suppression_reason"] and subtype in shown["suppression_reason"]
    assert subs.show(ledger, reader(1))["suppressed"] is False


def test_a_complaint_suppresses_and_unsubscribes_from_every_list(ledger):
    subs.create_list(ledger, LIST)
    subs.create_list(ledger, "friends")
    for name in (LIST, "friends"):
        join(ledger, name, "Richard@example.com", reader(1))
    applied = feed(ledger, load("notification-complaint-feedback.json"))
    assert applied.suppressed == ["richard@example.com"]
    shown = subs.show(ledger, "richard@example.com")
    assert shown["suppressed"] is True
    assert "complaint" in shown["suppression_reason"] and "abuse" in shown["suppression_reason"]
    assert list_statuses(ledger, "richard@example.com") == {LIST: "unsubscribed", "friends": "unsubscribed"}
    assert list_statuses(ledger, reader(1)) == {LIST: "subscribed", "friends": "subscribed"}
    with pytest.raises(subs.NotAllowed):  # and nobody can put them back
        subs.add_subscriber(ledger, "richard@example.com", LIST)


def test_two_transient_bounces_do_nothing_the_third_within_30_days_suppresses(ledger):
    who = "soft@example.org"
    for days in (0, 10):
        assert feed(ledger, soft(who, days)).suppressed == []
        assert suppression(ledger, who) is None
    assert feed(ledger, soft(who, 20)).suppressed == [who]
    assert "3 transient bounces within 30 days" in suppression(ledger, who)


def test_transient_bounces_spread_over_more_than_30_days_do_not_suppress(ledger):
    who = "soft@example.org"
    for days in (0, 16, 32):  # at day 32 the window starts at day 2: two of them
        assert feed(ledger, soft(who, days)).suppressed == []
    assert suppression(ledger, who) is None
    assert feed(ledger, soft(who, 40)).suppressed == [who]  # 16, 32 and 40 are within 30 days


def test_a_delivery_between_resets_the_count(ledger):
    who = "soft@example.org"
    feed(ledger, soft(who, 0), soft(who, 1))
    feed(ledger, delivery(who, 2))
    for days in (3, 4):
        assert feed(ledger, soft(who, days)).suppressed == []
    assert suppression(ledger, who) is None
    assert feed(ledger, soft(who, 5)).suppressed == [who]  # three since the delivery


def test_the_policy_limits_are_configurable(ledger):
    policy = Policy(soft_limit=2, soft_days=7)
    assert feed(ledger, soft("a@example.org", 0), policy=policy).suppressed == []
    assert feed(ledger, soft("a@example.org", 3), policy=policy).suppressed == ["a@example.org"]
    feed(ledger, soft("b@example.org", 0), soft("b@example.org", 8), policy=policy)  # 8 days apart
    assert suppression(ledger, "b@example.org") is None
    feed(ledger, soft("c@example.org", 0), soft("c@example.org", 3))  # the default policy wants 3
    assert suppression(ledger, "c@example.org") is None


def test_the_same_body_taken_twice_counts_once(ledger):
    body = json.dumps(soft("soft@example.org", 0))
    feed(ledger, body)
    feed(ledger, body, body)
    assert len(event_rows(ledger)) == 1
    assert suppression(ledger, "soft@example.org") is None  # one transient bounce, not three


def test_the_same_bounce_by_identity_notification_and_event_publishing_counts_once(ledger):
    who = "soft@example.org"
    first, second = soft(who, 0), soft(who, 1)
    feed(ledger, first, sns_envelope(published(first)), published(second), second)
    assert suppression(ledger, who) is None  # two bounces, each seen twice: not four
    assert [(r["source"], r["sns_message_id"]) for r in event_rows(ledger)] == [("test", None)] * 2


def test_applied_counts_redelivered_events_as_duplicates(ledger):
    body = json.dumps(soft("soft@example.org", 0))
    first = feed(ledger, body)
    again = feed(ledger, body, body)
    assert (first.stored, first.duplicates, first.unattributed) == (1, 0, 1)
    assert (again.stored, again.duplicates, again.unattributed) == (0, 2, 0)
    dsn = load("notification-bounce-dsn.json")  # the docs' DSN bounce, then the same bounce as an event
    both = feed(ledger, dsn, sns_envelope(published(dsn)), source="sqs")
    assert (both.stored, both.duplicates) == (1, 1)


def test_an_event_for_an_unknown_message_is_stored_unattributed_and_still_suppresses(ledger):
    subs.create_list(ledger, LIST)
    join(ledger, LIST, reader(1))
    payload = bounce(reader(1))
    applied = feed(ledger, payload)
    assert (applied.stored, applied.unattributed) == (1, 1)
    (row,) = event_rows(ledger)
    assert (row["send_id"], row["delivery_id"]) == (None, None)
    assert row["message_id"] == payload["mail"]["messageId"]
    assert (row["kind"], row["email"], row["hard"], row["source"]) == ("bounce", reader(1), True, "test")
    assert json.loads(row["raw"]) == payload
    assert row["detail"]["status"] == "5.1.1"
    assert subs.show(ledger, reader(1))["suppressed"] is True


def test_an_address_not_in_the_database_is_still_suppressed(ledger):
    feed(ledger, bounce("stranger@example.net"))
    with pytest.raises(subs.SubscriberNotFound, match="suppressed"):
        subs.show(ledger, "stranger@example.net")
    assert suppression(ledger, "stranger@example.net").startswith("bounce")
    subs.create_list(ledger, LIST)
    with pytest.raises(subs.NotAllowed, match="suppressed"):  # and they cannot be added later
        subs.add_subscriber(ledger, "stranger@example.net", LIST)


def test_events_that_are_not_bounces_or_complaints_suppress_nobody(ledger):
    names = [n for n in SES_FIXTURES if EXPECTED[n].kind not in ("bounce", "complaint")]
    applied = feed(ledger, *(text_of(n) for n in names))
    assert applied.stored == len(names) and applied.suppressed == []
    assert suppression(ledger, "recipient@example.com") is None
    assert suppression(ledger, "jane@example.com") is None


def test_a_subscription_succeeded_notice_changes_nothing(ledger):
    applied = feed(ledger, SUBSCRIPTION_SUCCEEDED, sns_envelope(SUBSCRIPTION_SUCCEEDED))
    assert (applied.stored, applied.malformed, applied.errors) == (0, 0, [])
    assert event_rows(ledger) == [] and error_rows(ledger) == []


def test_a_malformed_body_is_recorded_while_the_rest_of_the_batch_is_applied(ledger):
    bad = ["<html>502 Bad Gateway</html>", text_of("sns-subscription-confirmation.json"),
           json.dumps(variant(BOUNCE, {"bounce.bouncedRecipients": DROP}))]
    applied = feed(ledger, bounce("a@example.org"), bad[0], complaint("b@example.org"), bad[1], bad[2],
                   source="sqs")
    assert (applied.stored, applied.malformed) == (2, 3)
    assert sorted(applied.suppressed) == ["a@example.org", "b@example.org"]
    assert len(event_rows(ledger)) == 2
    errors = error_rows(ledger)
    assert [e["body"] for e in errors] == bad
    assert [e["source"] for e in errors] == ["sqs"] * 3
    assert "not JSON" in errors[0]["error"]
    assert "SubscriptionConfirmation" in errors[1]["error"]
    assert "bouncedRecipients" in errors[2]["error"]
    assert applied.errors == [e["error"] for e in errors]


def test_an_undecodable_body_is_kept_readable(ledger):
    applied = feed(ledger, b'{"notificationType": "Bounce\xff"}', bounce("a@example.org"))
    assert (applied.stored, applied.malformed) == (1, 1)
    (error,) = error_rows(ledger)
    assert error["body"] == '{"notificationType": "Bounce\ufffd"}'
    assert "utf-8" in error["error"]


def test_a_malformed_body_with_a_nul_character_does_not_sink_the_batch(ledger):
    # PostgreSQL text cannot hold NUL: storing the body as received would roll back the whole batch.
    applied = feed(ledger, bounce("a@example.org"), "\x00 not json")
    assert (applied.stored, applied.malformed) == (1, 1)
    assert suppression(ledger, "a@example.org") is not None
    assert len(error_rows(ledger)) == 1


def test_transient_bounces_arriving_out_of_order_still_suppress(ledger):
    who = "soft@example.org"
    feed(ledger, soft(who, 20), soft(who, 10), soft(who, 0))
    assert suppression(ledger, who) is not None


REFUSED = "refused@example.org"


def refuse_events_for(db, email: str = REFUSED) -> None:
    """Make the database itself refuse to store an event for `email` (as it refuses a value it cannot take)."""
    assert "'" not in email
    with db.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"CREATE TRIGGER refuse_event BEFORE INSERT ON events WHEN NEW.email = '{email}' "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END")
        else:
            conn.exec_driver_sql(f"CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                 f"IF NEW.email = '{email}' THEN RAISE EXCEPTION 'refused by the test trigger'; "
                                 "END IF; RETURN NEW; END $$")
            conn.exec_driver_sql("CREATE TRIGGER refuse_event BEFORE INSERT ON events FOR EACH ROW "
                                 "EXECUTE FUNCTION refuse_event()")


def test_a_hostile_batch_applies_its_valid_bounce_and_keeps_each_bad_message_alone(ledger):
    refuse_events_for(ledger)
    both = bounce(REFUSED)  # one message naming two people: it fails whole, the other is not suppressed
    both["bounce"]["bouncedRecipients"].append({**both["bounce"]["bouncedRecipients"][0],
                                                "emailAddress": "both@example.org"})
    bad = [body for body, _ in HOSTILE.values()] + [json.dumps(bounce(REFUSED)), json.dumps(both)]
    good = bounce("good@example.org")
    applied = feed(ledger, *bad[:5], good, *bad[5:], complaint("also@example.org"), source="sqs")
    assert (applied.stored, applied.malformed) == (2, len(bad))
    assert sorted(applied.suppressed) == ["also@example.org", "good@example.org"]
    assert [r["email"] for r in event_rows(ledger)] == ["good@example.org", "also@example.org"]
    errors = error_rows(ledger)
    assert len(errors) == len(bad) and {e["source"] for e in errors} == {"sqs"}
    by_body = {e["body"]: e["error"] for e in errors}
    for name, (body, problem) in HOSTILE.items():
        stored = body.encode("utf-8", "replace").decode("utf-8")  # a raw lone surrogate cannot be stored as is
        assert problem in by_body[stored], name
    refused = [e["error"] for e in errors if e["body"] in (bad[-2], bad[-1])]
    assert len(refused) == 2 and all("not applied" in e and "refused by the test trigger" in e for e in refused)
    assert all("INSERT" not in e and "parameters" not in e for e in refused)  # the driver's words, not the SQL
    assert suppression(ledger, "both@example.org") is None  # rolled back with its message
    assert suppression(ledger, REFUSED) is None
    # the same batch again (a redelivery): the good ones are duplicates, the bad ones are kept again
    again = feed(ledger, *bad[:5], good, *bad[5:], complaint("also@example.org"), source="sqs")
    assert (again.stored, again.malformed) == (1, len(bad))  # the complaint builder makes a new feedbackId


def test_a_message_the_database_refuses_does_not_sink_a_settling_batch(ledger, template):
    people = populate(ledger, 3)
    send_id, sent = send_issue(ledger, template)
    rows = ledger_rows(ledger, send_id)
    lost = people[0]
    with ledger.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == rows[lost]["id"])
                     .values(state="sending", message_id=None, sent_at=None))
    refuse_events_for(ledger, people[1])
    _, tags = sent.sent[lost]
    applied = feed(ledger, bounce(people[1], message_id=sent.message_id(people[1])),
                   published(delivery(lost, 0.2, message_id=sent.message_id(lost)), **tags))
    assert (applied.stored, applied.malformed, applied.settled) == (1, 1, 1)
    assert ledger_rows(ledger, send_id)[lost]["state"] == "sent"


def test_an_event_the_database_refuses_changes_nothing_but_inbound_errors(ledger):
    refuse_events_for(ledger)
    applied = feed(ledger, bounce(REFUSED))
    assert (applied.stored, applied.malformed) == (0, 1)
    assert event_rows(ledger) == [] and suppression(ledger, REFUSED) is None
    assert "refused by the test trigger" in error_rows(ledger)[0]["error"]


# === 4. attribution and the report ================================================================

def attributed(db) -> dict[str | None, set[tuple[int | None, int | None]]]:
    """email -> the (send id, delivery id) pairs of its events."""
    out: dict[str | None, set[tuple[int | None, int | None]]] = {}
    for row in event_rows(db):
        out.setdefault(row["email"], set()).add((row["send_id"], row["delivery_id"]))
    return out


def test_events_are_attributed_to_their_ledger_rows_and_counted_in_the_report(ledger, template):
    people = populate(ledger, 10)
    send_id, sent = send_issue(ledger, template)
    mid = sent.message_id
    bodies = [
        delivery(people[0], 0.1, message_id=mid(people[0])),
        published(delivery(people[0], 0.2, message_id=mid(people[0]))),  # a second delivery event: one person
        *(delivery(p, 0.1, message_id=mid(p)) for p in people[1:8]),
        variant(load("event-open.json"), {"mail.messageId": mid(people[1]), "mail.destination": [people[1]],
                                          "open.timestamp": stamp(0.5)}),  # opens are not counted
        bounce(people[8], 0.1, message_id=mid(people[8])),
        soft(people[9], 0.1, message_id=mid(people[9])),
        complaint(people[7], 1, message_id=mid(people[7])),
        bounce("someone@else.example", 0.1),  # not ours: stored, not counted
    ]
    applied = feed(ledger, *bodies)
    assert (applied.stored, applied.unattributed, applied.malformed) == (len(bodies), 1, 0)
    rows = ledger_rows(ledger, send_id)
    links = attributed(ledger)
    for person in people:
        assert links[person] == {(send_id, rows[person]["id"])}
    assert links["someone@else.example"] == {(None, None)}

    row = report_of(ledger)
    assert row == {"issue": ISSUE, "list": LIST, "recipients": 10, "sent": 10, "failed": 0, "pending": 0,
                   "unknown": 0, "skipped": 0,
                   "delivered": 8, "bounced_hard": 1, "bounced_soft": 1, "complained": 1, "unsubscribed": 0}
    assert rates(row) == pytest.approx((0.1, 0.1))
    warned = report_warnings(row)
    assert len(warned) == 2
    assert any("bounce" in w and "5%" in w for w in warned)
    assert any("complaint" in w and "0.1%" in w for w in warned)

    again = feed(ledger, *bodies)  # redelivered by SQS: nothing changes
    assert (again.stored, again.duplicates, again.unattributed) == (0, len(bodies), 0)
    assert report_of(ledger) == row
    assert len(event_rows(ledger)) == len(bodies)


def test_a_clean_send_has_no_warnings(ledger, template):
    people = populate(ledger, 10)
    _, sent = send_issue(ledger, template)
    feed(ledger, *(published(delivery(p, 0.1, message_id=sent.message_id(p))) for p in people))
    row = report_of(ledger)
    assert row["delivered"] == 10
    assert (rates(row), report_warnings(row)) == ((0.0, 0.0), [])


def test_a_send_with_nothing_sent_has_no_rates(ledger, template):
    populate(ledger, 2)
    plan = mailer.plan_send(ledger, ISSUE, LIST)
    start_send(ledger, plan, "subject")  # frozen, nothing sent yet
    row = report_of(ledger)
    assert (row["recipients"], row["sent"], row["pending"]) == (2, 0, 2)
    assert (rates(row), report_warnings(row)) == ((0.0, 0.0), [])


def test_soft_bounces_do_not_count_in_the_bounce_rate(ledger, template):
    people = populate(ledger, 10)
    _, sent = send_issue(ledger, template)
    feed(ledger, *(soft(p, 0.1, message_id=sent.message_id(p)) for p in people[:3]),
         complaint(people[5], 1, message_id=sent.message_id(people[5])))
    row = report_of(ledger)
    assert (row["bounced_soft"], row["bounced_hard"], row["complained"]) == (3, 0, 1)
    assert rates(row) == pytest.approx((0.0, 0.1))
    (warning,) = report_warnings(row)
    assert "complaint" in warning and "0.1%" in warning


def test_a_row_without_message_id_is_found_through_the_message_tags(ledger, template):
    people = populate(ledger, 4)
    friends = populate(ledger, 2, "friends")
    send_id, sent = send_issue(ledger, template)
    other_id, other_sent = send_issue(ledger, template, list_name="friends")
    rows, other_rows = ledger_rows(ledger, send_id), ledger_rows(ledger, other_id)
    lost = people[1]
    with ledger.begin() as conn:  # a crash between SES accepting the message and the ledger recording it
        conn.execute(update(deliveries).where(deliveries.c.id == rows[lost]["id"])
                     .values(message_id=None, state="sending"))
    _, tags = sent.sent[lost]
    assert (tags["send_id"], tags["delivery_id"]) == (str(send_id), str(rows[lost]["id"]))

    applied = feed(ledger, published(bounce(lost, 0.1, message_id=sent.message_id(lost)),
                                     send_id=tags["send_id"], delivery_id=tags["delivery_id"]))
    assert (applied.stored, applied.unattributed) == (1, 0)
    assert attributed(ledger)[lost] == {(send_id, rows[lost]["id"])}
    assert report_of(ledger)["bounced_hard"] == 1

    # tags that name a delivery of another send are not trusted, in either direction
    forged = [
        published(bounce(people[2], 0.2), send_id=str(send_id), delivery_id=str(other_rows[friends[0]]["id"])),
        published(bounce(friends[1], 0.2), send_id=str(other_id), delivery_id=str(rows[people[3]]["id"])),
    ]
    applied = feed(ledger, *forged)
    assert (applied.stored, applied.unattributed) == (2, 2)
    links = attributed(ledger)
    assert links[people[2]] == {(None, None)} and links[friends[1]] == {(None, None)}
    assert report_of(ledger)["bounced_hard"] == 1
    assert report_of(ledger, "friends")["bounced_hard"] == 0
    assert other_sent.sent.keys() == set(friends)


def test_a_message_id_in_the_ledger_wins_over_tags(ledger, template):
    people = populate(ledger, 3)
    send_id, sent = send_issue(ledger, template)
    rows = ledger_rows(ledger, send_id)
    feed(ledger, published(delivery(people[0], 0.1, message_id=sent.message_id(people[0])),
                           send_id=str(send_id), delivery_id=str(rows[people[2]]["id"])))
    assert attributed(ledger)[people[0]] == {(send_id, rows[people[0]]["id"])}


# === 4b. settling unknowns from SES ===============================================================

def leave(db, row_id: int, state: str, *, keep_message_id: bool = False) -> None:
    """What a crash leaves: the row in `state`, its outcome (and maybe its MessageId) never recorded."""
    values: dict[str, Any] = {"state": state, "sent_at": None, "error": "interrupted"}
    if not keep_message_id:
        values["message_id"] = None
    with db.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == row_id).values(**values))


def send_event(email: str, days: float, *, message_id: str) -> dict[str, Any]:
    """The docs' Send event for one of our messages."""
    return variant(load("event-send.json"), {"mail.messageId": message_id, "mail.destination": [email],
                                             "mail.timestamp": stamp(days), "mail.tags": {}})


def test_events_settle_unknown_and_pending_rows_as_sent_and_the_report_follows(ledger, template):
    people = populate(ledger, 6)
    send_id, sent = send_issue(ledger, template)
    rows = ledger_rows(ledger, send_id)
    unknown, pending, known_id, failed, opened, untouched = people
    leave(ledger, rows[unknown]["id"], "sending")
    leave(ledger, rows[pending]["id"], "pending")
    leave(ledger, rows[known_id]["id"], "sending", keep_message_id=True)
    leave(ledger, rows[failed]["id"], "failed")
    leave(ledger, rows[opened]["id"], "sending")
    before = report_of(ledger)
    assert (before["sent"], before["unknown"], before["pending"], before["failed"]) == (1, 3, 1, 1)

    tags = {p: sent.sent[p][1] for p in people}
    assert set(tags[unknown]) >= {"send_id", "delivery_id", "subscriber_id"}  # what the sender tags
    mid = sent.message_id
    applied = feed(ledger,
                   published(delivery(unknown, 0.3, message_id=mid(unknown)), **tags[unknown]),
                   published(send_event(unknown, 0.1, message_id=mid(unknown)), **tags[unknown]),  # the earliest
                   published(send_event(pending, 0.1, message_id=mid(pending)), **tags[pending]),
                   delivery(known_id, 0.2, message_id=mid(known_id)),  # no tags: found by its MessageId
                   published(delivery(failed, 0.2, message_id=mid(failed)), **tags[failed]),
                   published(variant(load("event-open.json"), {  # an open proves nothing the ledger needs
                       "mail.messageId": mid(opened), "mail.destination": [opened], "open.timestamp": stamp(1)}),
                       **tags[opened]))
    assert applied.settled == 3
    after = ledger_rows(ledger, send_id)
    for person, at in ((unknown, 0.1), (pending, 0.1), (known_id, 0.2)):
        row = after[person]
        assert (row["state"], row["message_id"], row["error"]) == ("sent", mid(person), None), person
        assert subs.as_utc(row["sent_at"]) == DAY0 + dt.timedelta(days=at)
    assert (after[failed]["state"], after[opened]["state"]) == ("failed", "sending")
    assert after[untouched] == rows[untouched]
    row = report_of(ledger)
    assert (row["sent"], row["unknown"], row["pending"], row["failed"], row["delivered"]) == (4, 1, 0, 1, 3)
    assert sum(row[k] for k in ("sent", "failed", "pending", "unknown", "skipped")) == row["recipients"]
    assert feed(ledger, published(send_event(pending, 0.1, message_id=mid(pending)), **tags[pending])).settled == 0


def test_a_row_sent_with_another_message_id_is_not_touched(ledger, template):
    people = populate(ledger, 2)
    send_id, sent = send_issue(ledger, template)
    rows = ledger_rows(ledger, send_id)
    who = people[0]
    _, tags = sent.sent[who]
    other = f"0100018e{uuid.uuid4().hex}-000000"  # a second message tagged as this row (a duplicate send)
    applied = feed(ledger, published(delivery(who, 0.5, message_id=other), **tags))
    assert (applied.settled, applied.unattributed) == (0, 1)
    assert ledger_rows(ledger, send_id)[who] == rows[who]


def test_tags_of_another_subscriber_settle_nothing(ledger, template):
    people = populate(ledger, 2)
    send_id, sent = send_issue(ledger, template)
    rows = ledger_rows(ledger, send_id)
    leave(ledger, rows[people[0]]["id"], "sending")
    tags = {**sent.sent[people[0]][1], "subscriber_id": str(rows[people[1]]["subscriber_id"])}
    assert feed(ledger, published(delivery(people[0], 0.5, message_id=fresh_id()), **tags)).settled == 0
    assert ledger_rows(ledger, send_id)[people[0]]["state"] == "sending"


@pytest.mark.parametrize("tag", ["", "x1", "99999999999999999999999999999", "-1", "١٢"])
def test_tags_that_are_not_our_ids_name_nothing(ledger, template, tag: str):
    people = populate(ledger, 1)
    send_id, sent = send_issue(ledger, template)
    leave(ledger, ledger_rows(ledger, send_id)[people[0]]["id"], "sending")
    tags = {**sent.sent[people[0]][1], "delivery_id": tag}
    applied = feed(ledger, published(delivery(people[0], 0.5, message_id=fresh_id()), **tags))
    assert (applied.stored, applied.settled, applied.malformed) == (1, 0, 0)


def test_retry_unknown_resends_only_rows_no_event_settled(ledger, template):
    people = populate(ledger, 4)
    send_id, sent = send_issue(ledger, template)
    rows = ledger_rows(ledger, send_id)
    for person in people[:3]:
        leave(ledger, rows[person]["id"], "sending")
    feed(ledger, published(delivery(people[0], 0.1, message_id=sent.message_id(people[0])), **sent.sent[people[0]][1]),
         published(bounce(people[1], 0.1, message_id=sent.message_id(people[1])), **sent.sent[people[1]][1]))
    again = Recorder()
    mailer.run_send(ledger, send_id, template, again, subs.Tokens(SECRET), BASE, rate=10000, workers=2,
                    retry_unknown=True, sleep=lambda s: None)
    assert set(again.sent) == {people[2]}


def statements(db, run: Callable[[], object]) -> list[str]:
    """The SQL statements `run` sends to the database (an executemany is one)."""
    from sqlalchemy import event as sa_event
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(" ".join(statement.split()))
    sa_event.listen(db.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", record)
    return seen


def test_one_ledger_look_up_and_at_most_one_update_per_batch(ledger, template):
    people = populate(ledger, 10)
    send_id, sent = send_issue(ledger, template)
    mid = sent.message_id
    common = statements(ledger, lambda: feed(ledger, *(published(delivery(p, 0.1, message_id=mid(p)),
                                                                 **sent.sent[p][1]) for p in people)))
    assert len([q for q in common if "FROM deliveries" in q]) == 1
    assert [q for q in common if q.startswith("UPDATE deliveries")] == []
    assert not any(q.startswith("SAVEPOINT") for q in common)  # the common path needs none

    rows = ledger_rows(ledger, send_id)
    for person in people:
        leave(ledger, rows[person]["id"], "sending")
    settling = statements(ledger, lambda: feed(ledger, *(published(send_event(p, 0.05, message_id=mid(p)),
                                                                   **sent.sent[p][1]) for p in people)))
    assert len([q for q in settling if "FROM deliveries" in q]) == 1
    assert len([q for q in settling if q.startswith("UPDATE deliveries")]) == 1
    assert report_of(ledger)["sent"] == 10


# === 5. the next send ============================================================================

def test_suppressed_addresses_are_not_mailed_the_next_issue(ledger, template):
    people = populate(ledger, 6)
    _, sent = send_issue(ledger, template)
    mid = sent.message_id
    feed(ledger,
         bounce(people[1], 1, message_id=mid(people[1])),  # hard: suppressed
         complaint(people[2], 1, message_id=mid(people[2])),  # suppressed and unsubscribed
         soft(people[3], 1, message_id=mid(people[3])), soft(people[3], 2), soft(people[3], 3),  # three soft
         soft(people[4], 1, message_id=mid(people[4])),  # one soft: still mailed
         delivery(people[5], 1, message_id=mid(people[5])))
    plan = mailer.plan_send(ledger, NEXT_ISSUE, LIST)
    assert plan.statuses == {"subscribed": 5, "unsubscribed": 1}
    assert (plan.suppressed, plan.to_send) == (2, 3)

    next_id, next_sent = send_issue(ledger, template, NEXT_ISSUE)
    assert set(next_sent.sent) == {people[0], people[4], people[5]}
    rows = ledger_rows(ledger, next_id)
    assert {p: rows[p]["state"] for p in (people[1], people[3])} == {people[1]: "skipped", people[3]: "skipped"}
    assert people[2] not in rows  # unsubscribed: never frozen into the send
    assert report_of(ledger, issue=NEXT_ISSUE)["sent"] == 3


# === 6. one person's history =====================================================================

def test_events_of_lists_a_persons_events_oldest_first_with_their_send(ledger, template):
    people = populate(ledger, 3)
    _, sent = send_issue(ledger, template)
    who, mid = people[1], sent.message_id(people[1])
    delay = variant(load("event-delivery-delay.json"), {
        "mail.messageId": mid, "mail.destination": [who], "deliveryDelay.timestamp": stamp(0.1),
        "deliveryDelay.delayedRecipients.0.emailAddress": who})
    feed(ledger, bounce(who, 3, message_id=mid), soft(who, 1, message_id=mid), delay,  # arrive out of order
         bounce(who, 5), delivery(people[2], 1, message_id=sent.message_id(people[2])))
    found = events_of(ledger, who.upper())
    assert [e["kind"] for e in found] == ["delivery_delay", "bounce", "bounce", "bounce"]
    assert [e["send"] for e in found] == [f"{ISSUE} -> {LIST}"] * 3 + [None]  # the last one is not ours
    assert [e.get("hard") for e in found] == [None, False, True, True]
    assert (found[1]["bounce_type"], found[1]["status"]) == ("Transient", "4.2.2")
    assert found[2]["diagnostic"] == f"smtp; 550 5.1.1 <{who}>... User"
    assert found[0]["status"] == "4.4.1"
    assert [dt.datetime.fromisoformat(e["at"]) for e in found] == [DAY0 + dt.timedelta(days=d) for d in (0.1, 1, 3, 5)]
    assert events_of(ledger, people[0]) == []


def test_forget_events_erases_the_person_but_keeps_the_counts(ledger, template):
    people = populate(ledger, 3)
    _, sent = send_issue(ledger, template)
    who = people[1]
    feed(ledger, delivery(who, 0.1, message_id=sent.message_id(who)),
         bounce(who, 1, message_id=sent.message_id(who)), complaint(who, 2, message_id=sent.message_id(who)),
         delivery(people[2], 0.1, message_id=sent.message_id(people[2])))
    before = report_of(ledger)
    assert (before["delivered"], before["bounced_hard"], before["complained"]) == (2, 1, 1)

    assert forget_events(ledger, who) == 3
    theirs = [r for r in event_rows(ledger) if r["email_hash"] == subs.normalise(who).hash]
    assert len(theirs) == 3
    assert all(r["email"] is None and r["raw"] is None and r["detail"] == {} for r in theirs)
    (kept,) = [r for r in event_rows(ledger) if r["email"] == people[2]]
    assert kept["raw"] is not None
    assert report_of(ledger) == before
    assert [e["kind"] for e in events_of(ledger, who)] == ["delivery", "bounce", "complaint"]
    assert all("diagnostic" not in e for e in events_of(ledger, who))


def test_forget_events_leaves_the_address_in_no_column(ledger):
    who = "jane.doe@example.org"
    feed(ledger, bounce(who, 0), delivery(who, 1), complaint(who, 2))
    forget_events(ledger, who)
    assert [r["id"] for r in event_rows(ledger) if "jane.doe" in json.dumps(r, default=str).lower()] == []


def test_the_report_function_is_not_shadowed_by_its_module():
    code = "from mailer.reports import timeline\nimport mailer\nprint(callable(mailer.report))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "True"


# the builders above are what most tests stand on: they must yield exactly one event for the address
def test_payload_builders_make_valid_ses_payloads():
    builders: list[Callable[[], dict[str, Any]]] = [
        lambda: bounce("a@example.org"), lambda: soft("a@example.org", 1), lambda: complaint("a@example.org"),
        lambda: delivery("a@example.org"), lambda: published(delivery("a@example.org"), send_id="1")]
    for build in builders:
        (event,) = parse_body(json.dumps(build()))
        assert event.email == "a@example.org"


def test_a_forgotten_persons_sends_do_not_pass_to_whoever_gets_their_id_next(ledger, template):
    """SQLite gives the id of the last row deleted to the next row added: the ledger must not point at it
    (its foreign key to the person is ON DELETE SET NULL)."""
    from mailer.history import forget_person
    from mailer.person_events import deliveries_of
    people = populate(ledger, 3)
    send_id, _ = send_issue(ledger, template)
    last = max(people, key=lambda who: subs.id_of(ledger, who))  # SQLite hands out their id again
    before = report_of(ledger)
    forget_person(ledger, last)
    assert report_of(ledger) == before  # the send's counts stay
    subs.add_subscriber(ledger, "newcomer@example.org", LIST)
    newcomer = subs.id_of(ledger, "newcomer@example.org")
    assert deliveries_of(ledger, newcomer) == []
    assert None in ledger_rows(ledger, send_id)  # the forgotten person's row, linked to nobody
