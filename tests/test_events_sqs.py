"""SES events end to end: send through moto's SES, publish SES-shaped events to an SNS topic that
moto forwards to an SQS queue in the real SNS envelope, then `newsletter events poll` applies them.

moto's configuration-set event destinations never fire and its bounce simulator sends a canned
payload (design §9), so the test publishes the AWS documentation's own payloads (tests/fixtures/ses/),
re-addressed to the messages the send really produced.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests import ses_peer
from tests.ses_peer import ISSUE, MotoServer, aws_env, cli_env, ledger, newsletter, write_subscribers
from tests.test_events import HOSTILE, REFUSED, bounce, refuse_events_for

moto, ses = ses_peer.moto, ses_peer.ses

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
SECOND_ISSUE = ISSUE.parent / "2020-12.yaml"


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text("utf-8")))


def addressed(payload: dict[str, Any], message_id: str, email: str, **detail: Any) -> dict[str, Any]:
    """A documentation payload, re-pointed at one of our messages and its recipient."""
    out = copy.deepcopy(payload)
    out["mail"]["messageId"] = message_id
    out["mail"]["destination"] = [email]
    kind = out.get("eventType", out.get("notificationType"))
    body = out[kind[0].lower() + kind[1:]]
    for key in ("bouncedRecipients", "complainedRecipients"):
        if key in body:
            body[key] = [{**body[key][0], "emailAddress": email}]
    if "recipients" in body:
        body["recipients"] = [email]
    body.update(detail)
    return out


@pytest.fixture
def wired(ses: MotoServer, tmp_path: Path) -> dict[str, Any]:
    """A sent list, and an SNS topic delivering to an SQS queue (as the README wires a real account)."""
    database_url = f"sqlite:///{tmp_path / 'news.db'}"
    env = cli_env(database_url, NEWSLETTER_TRANSPORT="ses", NEWSLETTER_SES_MAX_RATE="50",
                  NEWSLETTER_BASE_URL="https://news.example.org", **aws_env(ses.url))  # ses refuses a loopback one
    addresses = write_subscribers(tmp_path / "people.csv", 8)
    for name in ("news", "events"):
        newsletter(["lists", "create", name], env, tmp_path)
        newsletter(["subscribers", "import", str(tmp_path / "people.csv"), "--list", name], env, tmp_path)
    newsletter(["send", str(ISSUE), "--list", "news", "--yes"], env, tmp_path)
    sns, sqs = ses.client("sns"), ses.client("sqs")
    topic = sns.create_topic(Name="ses-events")["TopicArn"]
    queue = sqs.create_queue(QueueName="ses-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    ids = {row["email"]: row["message_id"] for row in ledger(database_url)}
    return {"env": env, "cwd": tmp_path, "db": database_url, "addresses": addresses, "ids": ids,
            "sns": sns, "sqs": sqs, "topic": topic, "queue": queue}


def publish(w: dict[str, Any], payload: dict[str, Any]) -> None:
    w["sns"].publish(TopicArn=w["topic"], Message=json.dumps(payload))


def poll(w: dict[str, Any]) -> Any:
    return newsletter(["events", "poll", "--once", "--queue-url", w["queue"]], w["env"], w["cwd"])


def show(w: dict[str, Any], email: str) -> dict[str, Any]:
    return dict(json.loads(newsletter(["subscribers", "show", email, "--json"], w["env"], w["cwd"]).stdout))


def report(w: dict[str, Any], slug: str = "2021-01") -> list[dict[str, Any]]:
    return list(json.loads(newsletter(["report", slug, "--json"], w["env"], w["cwd"]).stdout))


def queue_depth(w: dict[str, Any]) -> int:
    attributes = w["sqs"].get_queue_attributes(
        QueueUrl=w["queue"], AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def test_events_from_sqs_suppress_report_and_protect_the_next_send(wired: dict[str, Any], ses: MotoServer) -> None:
    w = wired
    hard, complainer, soft, *rest = w["addresses"]
    publish(w, addressed(fixture("event-bounce.json"), w["ids"][hard], hard))  # Permanent/General
    publish(w, addressed(fixture("notification-complaint-feedback.json"), w["ids"][complainer], complainer))
    for n in range(3):  # three transient bounces in a month, no delivery between
        publish(w, addressed(fixture("notification-bounce.json"), w["ids"][soft], soft, bounceType="Transient",
                             bounceSubType="MailboxFull", feedbackId=f"soft-{n}",
                             timestamp=f"2026-11-0{n + 1}T10:00:00.000Z"))
    for address in rest:
        publish(w, addressed(fixture("event-delivery.json"), w["ids"][address], address))
    # Something that is not an SES event at all must not block the queue.
    w["sqs"].send_message(QueueUrl=w["queue"], MessageBody="this is not JSON")

    done = poll(w)
    assert "unreadable message kept" in done.stderr
    assert f"suppressed {hard}" in done.stderr and f"suppressed {complainer}" in done.stderr, done.stderr
    assert f"suppressed {soft}" in done.stderr, done.stderr
    assert "1 unreadable" in done.stdout, done.stdout
    assert queue_depth(w) == 0  # everything applied was deleted, the bad message too

    assert show(w, hard)["suppressed"] and "Permanent" in show(w, hard)["suppression_reason"]
    gone = show(w, complainer)
    assert gone["suppressed"] and {m["status"] for m in gone["lists"]} == {"unsubscribed"}  # every list
    listed = newsletter(["subscribers", "show", complainer], w["env"], w["cwd"]).stdout
    assert "event 2016-01-27T14:59:38.237000+00:00 complaint [2021-01 -> news]: abuse" in listed
    assert show(w, soft)["suppressed"] and "3 transient" in show(w, soft)["suppression_reason"]
    assert not show(w, rest[0])["suppressed"]

    [row] = report(w)
    assert (row["recipients"], row["sent"], row["delivered"]) == (8, 8, len(rest))
    assert (row["bounced_hard"], row["bounced_soft"], row["complained"]) == (1, 1, 1)
    assert "1 (12.5%)" in newsletter(["report", "2021-01"], w["env"], w["cwd"]).stdout
    human = newsletter(["report", "2021-01"], w["env"], w["cwd"])
    assert "bounce rate 12.5% is over 5%" in human.stderr and "complaint rate 12.50% is over 0.1%" in human.stderr

    # The same events again (SNS delivers at least once): nothing changes.
    publish(w, addressed(fixture("event-bounce.json"), w["ids"][hard], hard))
    again = poll(w)
    assert "0 events applied, 1 already seen" in again.stdout
    assert report(w) == [row]

    # The next send to the list leaves out everyone suppressed.
    before = len(ses.raw_messages())
    newsletter(["send", str(SECOND_ISSUE), "--list", "news", "--yes", "--force"], w["env"], w["cwd"])
    second = [m for m in ledger(w["db"]) if m["message_id"] not in w["ids"].values()]
    assert sorted(r["email"] for r in second if r["state"] == "sent") == sorted(rest)
    assert len(ses.raw_messages()) - before == len(rest)


def test_poll_needs_a_queue_and_reports_an_unreachable_one(wired: dict[str, Any]) -> None:
    w = wired
    missing = newsletter(["events", "poll", "--once"], w["env"], w["cwd"], check=False)
    assert missing.returncode == 1 and "NEWSLETTER_SQS_QUEUE_URL" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = newsletter(["events", "poll", "--once", "--queue-url", w["queue"] + "-nope"], w["env"], w["cwd"],
                     check=False)
    assert bad.returncode == 1 and "SQS receive" in bad.stderr and "Traceback" not in bad.stderr


def test_report_chart_draws_a_png(wired: dict[str, Any]) -> None:
    from PIL import Image
    w = wired
    publish(w, addressed(fixture("event-delivery.json"), w["ids"][w["addresses"][0]], w["addresses"][0]))
    poll(w)
    out = w["cwd"] / "chart.png"
    done = newsletter(["report", "2021-01", "--chart", str(out)], w["env"], w["cwd"])
    assert f"Wrote {out}" in done.stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 300
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 10  # lines and text, not a blank canvas


def test_poll_runs_until_ctrl_c_applying_events_as_they_come(wired: dict[str, Any]) -> None:
    import signal
    import subprocess
    import time

    from tests.ses_peer import NEWSLETTER
    w = wired
    who = w["addresses"][0]
    process = subprocess.Popen([str(NEWSLETTER), "events", "poll", "--queue-url", w["queue"]], env=w["env"],
                               cwd=w["cwd"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        publish(w, addressed(fixture("event-bounce.json"), w["ids"][who], who))
        deadline = time.monotonic() + 30
        while not show(w, who)["suppressed"]:  # applied while the poller keeps running
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "Stopped." in err and "Traceback" not in err
    assert f"suppressed {who}" in err


# --- any payload, and a busy database (issue 11) ----------------------------------------------------


LONG_SECRET = "Jq7vN2xKc9LmR4tWz8BpH3yFd6GsA1eU5oTiXkQ0"  # `poll` needs none, but refuses a weak one that is set


def _queue(ses: MotoServer, name: str, **attributes: str) -> tuple[Any, Any, str, str]:
    """An SNS topic delivering in the real envelope to a new SQS queue: (sns, sqs, topic, queue url)."""
    sns, sqs = ses.client("sns"), ses.client("sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return sns, sqs, topic, queue


def _depth(sqs: Any, queue: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


@pytest.fixture
def events_db(db_url: str) -> Any:
    import mailer
    import subscribers as subs
    database = subs.open_database(db_url, extra_migrations=(mailer.MIGRATIONS,))
    subs.create_list(database, "news")
    for who in ("good@example.org", "jane@example.com", REFUSED):
        subs.add_subscriber(database, who, "news")
    yield database
    database.dispose()


def test_a_hostile_queue_is_drained_applying_the_valid_bounce(ses: MotoServer, events_db: Any, db_url: str,
                                                              tmp_path: Path) -> None:
    from sqlalchemy import func, select

    import subscribers as subs
    from mailer.schema import events, inbound_errors
    refuse_events_for(events_db)
    sns, sqs, topic, queue = _queue(ses, "hostile")
    # Every payload that crashed `events poll` for good, a message the database refuses, and a valid bounce
    # (the raw lone surrogate cannot travel: boto3 cannot encode it, and neither could SNS).
    bad = [body for name, (body, _) in HOSTILE.items() if name != "raw-lone-surrogate"]
    bad.append(json.dumps(bounce(REFUSED)))
    for body in bad[:4]:
        sns.publish(TopicArn=topic, Message=body)
    sns.publish(TopicArn=topic, Message=json.dumps(bounce("good@example.org")))
    for body in bad[4:]:
        sns.publish(TopicArn=topic, Message=body)
    env = cli_env(db_url, NEWSLETTER_SECRET=LONG_SECRET, **aws_env(ses.url))
    done = newsletter(["events", "poll", "--once", "--queue-url", queue], env, tmp_path)
    assert "Traceback" not in done.stderr
    assert f"1 events applied, 0 already seen, {len(bad)} unreadable or not applied" in done.stdout
    assert _depth(sqs, queue) == 0  # the whole batch is gone: nothing blocks the queue at the next start
    assert subs.show(events_db, "good@example.org")["suppressed"]
    assert not subs.show(events_db, "jane@example.com")["suppressed"]
    assert not subs.show(events_db, REFUSED)["suppressed"]
    with events_db.begin() as conn:
        assert conn.execute(select(events.c.email)).scalars().all() == ["good@example.org"]
        errors = conn.execute(select(inbound_errors.c.error, inbound_errors.c.source)).all()
        assert conn.execute(select(func.count()).select_from(inbound_errors)).scalar() == len(bad)
    assert {source for _, source in errors} == {"sqs"}
    assert sum("refused by the test trigger" in error for error, _ in errors) == 1
    again = newsletter(["events", "poll", "--once", "--queue-url", queue], env, tmp_path)
    assert "0 events applied" in again.stdout  # and a restart finds an empty queue


class Flaky:
    """A Database whose next `failures` transactions fail as a busy or unreachable one does."""

    def __init__(self, db: Any, failures: int):
        self.db, self.failures = db, failures

    def begin(self, **options: Any) -> Any:
        from subscribers import DatabaseError
        if self.failures:
            self.failures -= 1
            raise DatabaseError("database error: database is locked")
        return self.db.begin(**options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_the_poller_waits_out_a_busy_database_and_loses_nothing(ses: MotoServer, events_db: Any) -> None:
    import subscribers as subs
    from mailer import Policy
    from mailer.sqs import SqsQueue, poll
    sns, sqs, topic, queue = _queue(ses, "busy", VisibilityTimeout="0")  # redelivered at once
    sns.publish(TopicArn=topic, Message=json.dumps(bounce("good@example.org")))

    class Watched(SqsQueue):
        deleted: list[int] = []

        def delete(self, messages: list[Any]) -> None:
            self.deleted.append(len(messages))
            super().delete(messages)
    waits: list[tuple[str, float]] = []
    sleeps: list[float] = []
    total = poll(Flaky(events_db, 3), Watched(queue), Policy(), once=True,  # type: ignore[arg-type]
                 on_wait=lambda error, seconds: waits.append((str(error), seconds)), sleep=sleeps.append)
    assert sleeps == [1.0, 2.0, 4.0]  # backing off, never deleting the batch it could not apply
    assert [w for _, w in waits] == sleeps and all("locked" in e for e, _ in waits)
    assert Watched.deleted == [1]  # deleted once, after it was applied
    assert (total.stored, total.waits, total.suppressed) == (1, 3, ["good@example.org"])
    assert subs.show(events_db, "good@example.org")["suppressed"]
    assert _depth(sqs, queue) == 0


def test_events_poll_says_it_waits_for_the_database(ses: MotoServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import mailer.sqs
    from newsletter.cli import main
    from subscribers import DatabaseError
    sns, sqs, topic, queue = _queue(ses, "cli-busy", VisibilityTimeout="0")
    sns.publish(TopicArn=topic, Message=json.dumps(bounce("good@example.org")))
    real, calls = mailer.sqs.take, []

    def busy_once(*args: Any, **kwargs: Any) -> Any:  # the fault, at the poller's boundary with the database
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseError("database error: database is locked")
        return real(*args, **kwargs)
    monkeypatch.setattr(mailer.sqs, "take", busy_once)
    for name, value in cli_env(f"sqlite:///{tmp_path / 'news.db'}", NEWSLETTER_SECRET=LONG_SECRET).items():
        if name.startswith("NEWSLETTER_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["events", "poll", "--once", "--queue-url", queue])
    assert result.exit_code == 0, result.output
    assert "database unavailable (database error: database is locked)" in result.stderr
    assert "retrying in 1 s" in result.stderr
    assert "1 events applied" in result.stdout and "Waited 1 times for the database" in result.stdout
    assert len(calls) == 2 and _depth(sqs, queue) == 0
