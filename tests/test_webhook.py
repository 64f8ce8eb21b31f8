"""The SNS webhook's logic (mailer/webhook.py): verified notifications reach the same policy as the
SQS poller; anything that does not verify is refused and changes nothing in the database.

Messages are signed with the test key of tests/test_sns.py and carry the AWS documentation's
SES payloads; the database is a real SQLite file or the PostgreSQL server.
"""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import mailer
import subscribers as subs
from mailer import Policy, SnsRefused, handle_sns
from mailer.schema import events, inbound_errors
from subscribers.schema import suppressions
from tests.test_sns import (
    NOW,
    OTHER_TOPIC,
    SUBSCRIBE_URL,
    FakeWeb,
    Keys,
    confirmation,
    encode,
    keys,
    notification,
    sign,
    sns_time,
    verifier,
    web,
)
from tests.test_web import _plug, now_sns, post_sns, server

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
BOUNCE = (FIXTURES / "event-bounce.json").read_text("utf-8")  # Permanent, recipient@example.com
__all__ = ["keys", "server", "web"]  # fixtures, used by name


@pytest.fixture
def ledger(db_url: str) -> Any:
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    subs.create_list(database, "news")
    subs.add_subscriber(database, "recipient@example.com", "news")
    yield database
    database.dispose()


def counts(db: Any) -> tuple[int, int, int]:
    with db.begin() as conn:
        return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)  # type: ignore[return-value]
                     for t in (events, suppressions, inbound_errors))


def post(db: Any, web: FakeWeb, body: dict[str, Any], header: str | None = "Notification", **options: Any) -> Any:
    return handle_sns(db, verifier(web, **options), encode(body), header, Policy())


def test_a_verified_bounce_suppresses_once_and_keeps_the_sns_message_id(ledger: Any, keys: Keys,
                                                                         web: FakeWeb) -> None:
    body = sign(notification(Message=BOUNCE), keys.key, "2")
    outcome = post(ledger, web, body)
    assert outcome.kind == "notification" and outcome.applied.suppressed == ["recipient@example.com"]
    assert subs.show(ledger, "recipient@example.com")["suppressed"]
    with ledger.begin() as conn:
        assert conn.execute(select(events.c.sns_message_id, events.c.source)).one() == (body["MessageId"], "webhook")
    # SNS delivers at least once: the same POST again is accepted and changes nothing.
    again = post(ledger, web, body)
    assert again.applied.duplicates == 1 and again.applied.stored == 0
    assert counts(ledger) == (1, 1, 0)


def test_a_subscription_is_confirmed_through_the_fetcher_and_stores_nothing(ledger: Any, keys: Keys,
                                                                            web: FakeWeb) -> None:
    outcome = post(ledger, web, sign(confirmation(), keys.key), "SubscriptionConfirmation")
    assert outcome.kind == "subscription-confirmed"
    assert web.fetched.count(SUBSCRIBE_URL) == 1
    assert counts(ledger) == (0, 0, 0)


def test_a_verified_notification_that_is_not_ses_is_kept_and_acknowledged(ledger: Any, keys: Keys,
                                                                          web: FakeWeb) -> None:
    outcome = post(ledger, web, sign(notification(Message="Hello world!"), keys.key))
    assert outcome.applied.malformed == 1
    assert counts(ledger) == (0, 0, 1)


def _forged(keys: Keys) -> dict[str, Any]:
    return sign(notification(Message=BOUNCE), keys.other_key)


def _tampered(keys: Keys) -> dict[str, Any]:
    body = sign(notification(Message=BOUNCE.replace("Permanent", "Transient")), keys.key)
    return {**body, "Message": BOUNCE}


def _wrong_host(keys: Keys) -> dict[str, Any]:
    url = "https://sns.eu-west-2.amazonaws.com.evil.example/SimpleNotificationService-1.pem"
    return sign(notification(Message=BOUNCE, SigningCertURL=url), keys.key)


def _wrong_topic(keys: Keys) -> dict[str, Any]:
    return sign(notification(Message=BOUNCE, TopicArn=OTHER_TOPIC), keys.key)


def _replayed(keys: Keys) -> dict[str, Any]:
    return sign(notification(Message=BOUNCE, Timestamp=sns_time(NOW - timedelta(hours=2))), keys.key)


@pytest.mark.parametrize("make", [_forged, _tampered, _wrong_host, _wrong_topic, _replayed],
                         ids=["forged", "tampered", "wrong-host", "wrong-topic", "replayed"])
def test_what_does_not_verify_is_refused_and_changes_nothing(ledger: Any, keys: Keys, web: FakeWeb,
                                                             make: Any) -> None:
    with pytest.raises(SnsRefused):
        post(ledger, web, make(keys))
    assert counts(ledger) == (0, 0, 0)
    assert not subs.show(ledger, "recipient@example.com")["suppressed"]


def test_a_header_that_disagrees_with_the_body_is_refused(ledger: Any, keys: Keys, web: FakeWeb) -> None:
    with pytest.raises(SnsRefused, match="(?i)type"):
        post(ledger, web, sign(notification(Message=BOUNCE), keys.key), "SubscriptionConfirmation")
    assert counts(ledger) == (0, 0, 0)


def test_an_unsubscribe_confirmation_is_never_followed(ledger: Any, keys: Keys, web: FakeWeb) -> None:
    outcome = post(ledger, web, sign(confirmation("UnsubscribeConfirmation"), keys.key), "UnsubscribeConfirmation")
    assert outcome.kind == "ignored" and SUBSCRIBE_URL not in web.fetched
    assert json.loads(BOUNCE)["bounce"]["bounceType"] == "Permanent"  # the fixture the other tests rely on


# --- any payload (issue 11): a verified notification never raises, whatever its Message holds -----------


def test_every_hostile_payload_is_kept_and_answered_while_the_valid_bounce_applies(ledger: Any, keys: Keys,
                                                                                   web: FakeWeb) -> None:
    from tests.test_events import HOSTILE, REFUSED, bounce, refuse_events_for
    refuse_events_for(ledger)
    subs.add_subscriber(ledger, REFUSED, "news")
    bad = {name: body for name, (body, _) in HOSTILE.items() if name != "raw-lone-surrogate"}
    bad["refused by the database"] = json.dumps(bounce(REFUSED))
    for n, (name, body) in enumerate(bad.items()):
        outcome = post(ledger, web, sign(notification(Message=body, MessageId=f"sns-{n}"), keys.key))
        assert outcome.kind == "notification", name
        assert (outcome.applied.stored, outcome.applied.malformed) == (0, 1), name
    good = post(ledger, web, sign(notification(Message=BOUNCE, MessageId="sns-good"), keys.key))
    assert good.applied.suppressed == ["recipient@example.com"]
    assert counts(ledger) == (1, 1, len(bad))
    assert not subs.show(ledger, REFUSED)["suppressed"]


def test_a_lone_surrogate_in_the_envelope_is_refused_not_a_crash(ledger: Any, keys: Keys, web: FakeWeb) -> None:
    body = {**sign(notification(), keys.key), "Message": json.loads('"\\ud800"')}
    with pytest.raises(SnsRefused, match="not Unicode"):
        handle_sns(ledger, verifier(web), encode(body), "Notification", Policy())
    assert counts(ledger) == (0, 0, 0)


def test_a_payload_without_timestamps_is_dated_by_the_verified_envelope(ledger: Any, keys: Keys,
                                                                       web: FakeWeb) -> None:
    bounce = json.loads(BOUNCE)
    del bounce["bounce"]["timestamp"], bounce["mail"]["timestamp"]
    when = NOW - timedelta(seconds=30)
    outcome = post(ledger, web, sign(notification(Message=json.dumps(bounce) + "\n", Timestamp=sns_time(when)),
                                     keys.key))
    assert (outcome.applied.stored, outcome.applied.malformed) == (1, 0)
    with ledger.begin() as conn:
        assert subs.as_utc(conn.execute(select(events.c.occurred_at)).scalar_one()) == when
    assert subs.show(ledger, "recipient@example.com")["suppressed"]


def test_the_validated_topic_notice_is_ignored_quietly(ledger: Any, keys: Keys, web: FakeWeb) -> None:
    notice = json.loads((FIXTURES / "seen-sns-validated-notice.json").read_text("utf-8"))["Message"]
    outcome = post(ledger, web, sign(notification(Message=notice), keys.key))
    assert outcome.kind == "notification"
    assert (outcome.applied.stored, outcome.applied.malformed, outcome.applied.errors) == (0, 0, [])
    assert counts(ledger) == (0, 0, 0)


@pytest.fixture
def site(db_url: str, server: Any, web: FakeWeb) -> Any:
    """The app of `newsletter serve` on a real loopback HTTP server (tests/test_web.py's), on both databases."""
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    subs.create_list(database, "news")
    subs.add_subscriber(database, "recipient@example.com", "news")
    switch, port = server
    yield _plug(switch, port, database, db_url, web)
    switch.app = None
    database.dispose()


def test_over_http_every_hostile_payload_is_answered_200(site: Any, keys: Keys) -> None:
    from tests.test_events import HOSTILE
    for n, (name, (body, _)) in enumerate(HOSTILE.items()):
        if name == "raw-lone-surrogate":
            continue  # cannot be signed (see the test below)
        signed = sign(notification(Message=body, MessageId=f"sns-{n}", Timestamp=now_sns()), keys.key)
        answer = post_sns(site, signed)
        assert (answer.status, answer.text) == (200, "notification"), name
    good = post_sns(site, sign(notification(Message=BOUNCE, MessageId="sns-good", Timestamp=now_sns()), keys.key))
    assert (good.status, good.text) == (200, "notification")
    assert subs.show(site.db, "recipient@example.com")["suppressed"]
    surrogate = post_sns(site, {**sign(notification(Timestamp=now_sns()), keys.key),
                                "Message": json.loads('"\\ud800"')})
    assert surrogate.status == 403 and "Unicode" in surrogate.text
    assert site.switch.raised == []
    assert counts(site.db) == (1, 1, len(HOSTILE) - 1)
