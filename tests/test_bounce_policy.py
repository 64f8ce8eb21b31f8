"""The bounce policy of design §8 from SES payloads seen in practice (tests/fixtures/ses/seen-*.json, see
SOURCES.md), on SQLite and PostgreSQL: a Transient bounce with a 5.x.x DSN status is hard; a notification
without timestamps is dated by its SNS envelope; soft bounces on 4 sends of a list in a row suppress however
far apart; OnAccountSuppressionList bounces suppress and keep their subtype; the "Successfully validated"
notice is ignored quietly.

Sends are real (`run_send` through the ledger with the recording transport of tests/test_events.py), so
events name the message ids and message tags the ledger holds.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

import mailer
import subscribers as subs
from mailer import Policy

from .test_events import (
    BASE,
    DAY0,
    DROP,
    LIST,
    SECRET,
    Recorder,
    delivery,
    error_rows,
    event_rows,
    feed,
    ledger,
    ledger_rows,
    load,
    populate,
    published,
    report_of,
    sns_envelope,
    soft,
    start_send,
    suppression,
    template,
    text_of,
    utc,
    variant,
)

__all__ = ["ledger", "template"]  # fixtures, used by name

MONTH = 31  # days between issues: the 30-day rule never sees two of them


def send_issues(db: Any, template: Any, count: int, list_name: str = LIST,
                first: int = 1) -> list[tuple[int, Recorder]]:
    """`count` issues sent to the list, one after another (issue slugs n01, n02, ... from `first`)."""
    out = []
    for n in range(first, first + count):
        plan = mailer.plan_send(db, f"n{n:02d}", list_name)
        send_id = start_send(db, plan, "subject")
        transport = Recorder()
        mailer.run_send(db, send_id, template, transport, subs.Tokens(SECRET), BASE, rate=10000, workers=2,
                        sleep=lambda s: None)
        out.append((send_id, transport))
    return out


def soft_on(sent: tuple[int, Recorder], who: str, month: int) -> dict[str, Any]:
    """A transient bounce of `who`'s message of this send, `month` months after DAY0, as a configuration set
    publishes it (with the message tags the sender set)."""
    _, transport = sent
    message_id, tags = transport.sent[who]
    return published(soft(who, month * MONTH, message_id=message_id), **tags)


def delivered_on(sent: tuple[int, Recorder], who: str, month: int) -> dict[str, Any]:
    _, transport = sent
    return delivery(who, month * MONTH + 0.1, message_id=transport.message_id(who))


def stored(db: Any, email: str) -> list[dict[str, Any]]:
    return [r for r in event_rows(db) if r["email"] == email]


# --- a Transient bounce whose DSN status is 5.x.x --------------------------------------------------------


def test_a_transient_bounce_with_a_5xx_status_suppresses_at_once_and_is_stored_hard(ledger: Any,
                                                                                     template: Any) -> None:
    people = populate(ledger, 2)
    (send_id, transport), = send_issues(ledger, template, 1)
    payload = load("seen-bounce-transient-5xx.json")  # listmonk #1463: Transient/General, 550 5.4.4
    who = people[0]
    message_id, tags = transport.sent[who]
    payload = variant(payload, {"mail.messageId": message_id, "mail.destination": [who],
                                "bounce.bouncedRecipients.0.emailAddress": who})
    applied = feed(ledger, published(payload, **tags))
    assert applied.suppressed == [who]
    reason = suppression(ledger, who)
    assert reason is not None and "Transient/General" in reason and "5.4.4" in reason
    (row,) = stored(ledger, who)
    assert (row["hard"], row["bounce_type"], row["bounce_subtype"]) == (True, "Transient", "General")
    assert row["detail"]["status"] == "5.4.4"
    counts = report_of(ledger, issue="n01")
    assert (counts["bounced_hard"], counts["bounced_soft"]) == (1, 0)


def test_a_transient_bounce_with_a_4xx_status_stays_soft(ledger: Any) -> None:
    payload = variant(load("seen-bounce-transient-5xx.json"), {
        "bounce.bouncedRecipients.0.status": "4.4.7", "bounce.bouncedRecipients.0.emailAddress": "a@example.org",
        "mail.destination": ["a@example.org"]})
    assert feed(ledger, payload).suppressed == []
    (row,) = stored(ledger, "a@example.org")
    assert row["hard"] is False and suppression(ledger, "a@example.org") is None


# --- dated by the SNS envelope --------------------------------------------------------------------------


def test_a_notification_without_timestamps_is_applied_dated_by_its_envelope(ledger: Any) -> None:
    applied = feed(ledger, text_of("seen-sns-bounce-without-timestamps.json"), source="sqs")
    assert (applied.stored, applied.malformed) == (2, 0)
    assert sorted(applied.suppressed) == ["jane@example.com", "richard@example.com"]  # Permanent
    rows = event_rows(ledger)
    assert {subs.as_utc(r["occurred_at"]) for r in rows} == {utc("2018-03-26T17:58:59.675Z")}
    assert {r["sns_message_id"] for r in rows} == {"19ba9823-d7f2-53c1-860e-cb10e0d13dfc"}
    assert error_rows(ledger) == []


def test_soft_bounces_dated_by_their_envelopes_count_in_the_time_window(ledger: Any) -> None:
    who = "soft@example.org"
    bodies = []
    for day in (0, 10, 20):
        payload = variant(soft(who, day), {"bounce.timestamp": DROP, "mail.timestamp": DROP})
        envelope = json.loads(sns_envelope(payload))
        envelope["Timestamp"] = (DAY0 + dt.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        envelope["MessageId"] = f"sns-{day}"
        bodies.append(json.dumps(envelope))
    assert feed(ledger, *bodies[:2]).suppressed == []
    assert feed(ledger, bodies[2]).suppressed == [who]


# --- soft bounces on 4 sends in a row -------------------------------------------------------------------


def test_soft_bounces_on_four_sends_in_a_row_suppress_however_far_apart(ledger: Any, template: Any) -> None:
    people = populate(ledger, 4)
    sends = send_issues(ledger, template, 4)
    who, broken, late, fine = people
    for month, sent in enumerate(sends[:3]):
        assert feed(ledger, soft_on(sent, who, month)).suppressed == []
    assert suppression(ledger, who) is None  # three, a month apart: neither rule yet
    assert feed(ledger, soft_on(sends[3], who, 3)).suppressed == [who]
    assert suppression(ledger, who) == "bounce: transient bounces on 4 sends of the list in a row"

    # a delivery between breaks the run
    feed(ledger, soft_on(sends[0], broken, 0), soft_on(sends[1], broken, 1), delivered_on(sends[2], broken, 2),
         soft_on(sends[3], broken, 3))
    assert suppression(ledger, broken) is None
    # SQS does not keep order: the same four bounces arriving last-first suppress too
    applied = feed(ledger, *(soft_on(sends[m], late, m) for m in (3, 2, 1, 0)))
    assert applied.suppressed == [late]
    feed(ledger, *(soft_on(sends[m], fine, m) for m in (0, 1, 2)))
    assert suppression(ledger, fine) is None
    assert subs.show(ledger, fine)["suppressed"] is False


def test_a_message_that_went_out_without_bouncing_breaks_the_run(ledger: Any, template: Any) -> None:
    people = populate(ledger, 1)
    sends = send_issues(ledger, template, 5)
    who = people[0]
    # no event at all for send 3: identity notifications often carry no deliveries; it went out
    feed(ledger, *(soft_on(sends[m], who, m) for m in (0, 1, 3, 4)))
    assert suppression(ledger, who) is None
    assert feed(ledger, soft_on(sends[2], who, 2)).suppressed == [who]  # its bounce arrives late: five in a row


def test_only_sends_with_a_ledger_row_for_the_person_count(ledger: Any, template: Any) -> None:
    populate(ledger, 2)
    first = send_issues(ledger, template, 1)
    subs.add_subscriber(ledger, "newcomer@example.org", LIST)  # joins after the first send
    later = send_issues(ledger, template, 4, first=2)
    populate(ledger, 1, "other")  # another list's sends do not interleave
    send_issues(ledger, template, 1, "other")
    assert "newcomer@example.org" not in first[0][1].sent
    assert feed(ledger, *(soft_on(s, "newcomer@example.org", m + 1) for m, s in enumerate(later))).suppressed == [
        "newcomer@example.org"]


def test_a_row_that_never_reached_ses_neither_breaks_nor_extends_a_run(ledger: Any, template: Any) -> None:
    from sqlalchemy import update

    from mailer.schema import deliveries
    people = populate(ledger, 1)
    sends = send_issues(ledger, template, 5)
    who = people[0]
    row_id = ledger_rows(ledger, sends[2][0])[who]["id"]
    with ledger.begin() as conn:  # send 3 failed for them (SES refused it)
        conn.execute(update(deliveries).where(deliveries.c.id == row_id).values(state="failed", message_id=None))
    feed(ledger, *(soft_on(sends[m], who, m) for m in (0, 1, 3)))
    assert suppression(ledger, who) is None
    assert feed(ledger, soft_on(sends[4], who, 4)).suppressed == [who]


def test_the_sends_in_a_row_are_configurable_and_the_time_rule_stays(ledger: Any, template: Any) -> None:
    people = populate(ledger, 3)
    sends = send_issues(ledger, template, 2)
    two = Policy(soft_sends=2)
    assert feed(ledger, soft_on(sends[0], people[0], 0), policy=two).suppressed == []
    assert feed(ledger, soft_on(sends[1], people[0], 1), policy=two).suppressed == [people[0]]
    feed(ledger, soft_on(sends[0], people[1], 0), soft_on(sends[1], people[1], 1))  # default: 4
    assert suppression(ledger, people[1]) is None
    # three soft bounces within 30 days, whatever the sends, still suppress
    feed(ledger, soft(people[2], 0), soft(people[2], 5))
    assert feed(ledger, soft(people[2], 9)).suppressed == [people[2]]
    assert suppression(ledger, people[2]) == "bounce: 3 transient bounces within 30 days"


def test_the_policy_reads_the_setting() -> None:
    from newsletter.config import Settings, load_settings
    from newsletter.wiring import policy
    assert policy(Settings()) == Policy(soft_limit=3, soft_days=30, soft_sends=4)
    env = {"NEWSLETTER_SOFT_BOUNCE_SENDS": "6"}
    assert policy(load_settings(None, env)).soft_sends == 6


# --- OnAccountSuppressionList ---------------------------------------------------------------------------


def test_an_account_suppression_list_bounce_suppresses_and_keeps_its_subtype(ledger: Any, template: Any) -> None:
    people = populate(ledger, 1)
    (send_id, transport), = send_issues(ledger, template, 1)
    who = people[0]
    message_id, tags = transport.sent[who]
    payload = variant(load("seen-bounce-account-suppression.json"), {
        "mail.messageId": message_id, "mail.destination": [who], "bounce.bouncedRecipients.0.emailAddress": who})
    assert feed(ledger, published(payload, **tags)).suppressed == [who]
    assert "OnAccountSuppressionList" in (suppression(ledger, who) or "")
    (row,) = stored(ledger, who)
    assert (row["hard"], row["bounce_type"], row["bounce_subtype"], row["send_id"]) == (
        True, "Permanent", "OnAccountSuppressionList", send_id)


# --- the "Successfully validated" notice ----------------------------------------------------------------


def test_the_validated_topic_notice_is_ignored_quietly(ledger: Any) -> None:
    applied = feed(ledger, text_of("seen-sns-validated-notice.json"), source="sqs")
    assert (applied.stored, applied.malformed, applied.errors) == (0, 0, [])
    assert event_rows(ledger) == [] and error_rows(ledger) == []


@pytest.mark.parametrize("name", ["seen-bounce-transient-5xx.json", "seen-bounce-account-suppression.json"])
def test_seen_payloads_parse_as_sns_delivers_them_too(name: str) -> None:
    assert [e.key for e in mailer.parse_body(sns_envelope(load(name)))] == [
        e.key for e in mailer.parse_body(text_of(name))]
