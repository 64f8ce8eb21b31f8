"""`make bench`, issue 5: applying SES events polled from a local queue, and from moto's SQS server.

Prints; asserts nothing. Usage: bench_events.py [--events N] [--skip-moto]
The events are the AWS documentation's payloads in the SNS envelope, re-addressed to the
messages of a real ledger (so attribution looks each one up): a mix of deliveries, soft and hard
bounces and complaints, as after a send.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "fixtures" / "ses"

from bench.bench_send import moto_server  # noqa: E402


def _fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text("utf-8")))


def _body(i: int, message_id: str, email: str, templates: list[dict[str, Any]]) -> str:
    payload = copy.deepcopy(templates[i % len(templates)])
    payload["mail"]["messageId"], payload["mail"]["destination"] = message_id, [email]
    kind = payload.get("eventType", payload.get("notificationType"))
    detail = payload[kind[0].lower() + kind[1:]]
    for key in ("bouncedRecipients", "complainedRecipients"):
        if key in detail:
            detail[key] = [{**detail[key][0], "emailAddress": email}]
    if "recipients" in detail:
        detail["recipients"] = [email]
    if "feedbackId" in detail:
        detail["feedbackId"] = f"fb-{i}"
    return json.dumps({"Type": "Notification", "MessageId": f"sns-{i}", "TopicArn": "arn:aws:sns:eu-west-2:1:t",
                       "Message": json.dumps(payload), "Timestamp": "2026-11-26T10:00:00.000Z"})


def _setup(folder: str, n: int) -> tuple[Any, list[str]]:
    """A database with a finished send of n recipients, each with an SES message id; the event bodies."""
    import mailer
    import subscribers as subs
    from mailer.schema import deliveries, sends
    from subscribers.db import NOW, bulk_insert, utcnow
    from subscribers.schema import subscribers
    db = subs.open_database(f"sqlite:///{folder}/events.db", extra_migrations=(mailer.MIGRATIONS,))
    with db.begin() as conn:
        bulk_insert(conn, subscribers, [{"email": f"r{i}@example.org", "email_key": f"r{i}@example.org",
                                         "name": "", "fields": {}} for i in range(n)],
                    {"created_at": NOW, "updated_at": NOW})
        send_id = conn.execute(sends.insert().values(issue="bench", list_name="bench", subject="s",
                                                     state="finished", created_at=utcnow())).inserted_primary_key[0]
        conn.execute(deliveries.insert(), [{"send_id": send_id, "subscriber_id": i + 1, "state": "sent",
                                            "message_id": f"mid-{i}", "attempts": 1, "updated_at": utcnow()}
                                           for i in range(n)])
    # After a send most events are deliveries; a few bounce or complain.
    templates = [_fixture("event-delivery.json")] * 7 + [
        _fixture("notification-bounce.json"), _fixture("event-bounce.json"), _fixture("event-complaint.json")]
    return db, [_body(i, f"mid-{i}", f"r{i}@example.org", templates) for i in range(n)]


class LocalQueue:
    """A queue in memory with SqsQueue's interface: measures the poller and apply(), not a network."""

    def __init__(self, bodies: list[str]):
        from mailer.sqs import QueueMessage
        self.messages = [QueueMessage(str(i), body) for i, body in enumerate(bodies)]
        self.deleted = 0

    def receive(self, wait: int) -> list[Any]:
        batch, self.messages = self.messages[:10], self.messages[10:]  # SQS hands out at most 10
        return batch

    def delete(self, messages: list[Any]) -> None:
        self.deleted += len(messages)


def from_local_queue(n: int) -> None:
    from mailer import Policy
    from mailer.sqs import poll
    with tempfile.TemporaryDirectory() as folder:
        db, bodies = _setup(folder, n)
        queue = LocalQueue(bodies)
        start = time.perf_counter()
        total = poll(db, queue, Policy(), once=True)  # type: ignore[arg-type]
        rate = total.stored / (time.perf_counter() - start)
    print(f"events polled from a local queue and applied (SQLite)   {rate:8,.0f} events/s   (target >= 2,000)")


def from_moto(n: int) -> None:
    with moto_server():
        import boto3

        from mailer import Policy
        from mailer.sqs import SqsQueue, poll
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="bench")["QueueUrl"]
        with tempfile.TemporaryDirectory() as folder:
            db, bodies = _setup(folder, n)
            for i in range(0, n, 10):
                sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": b}
                                                              for j, b in enumerate(bodies[i:i + 10])])
            start = time.perf_counter()
            total = poll(db, SqsQueue(url), Policy(), once=True)
            wall = time.perf_counter() - start
        # moto's own ReceiveMessage takes ~170 ms per call of 10 here, so this is moto's ceiling, not ours.
        print(f"events polled from moto's SQS server and applied        {total.stored / wall:8,.0f} events/s   "
              f"({total.stored:,} events; moto answers ReceiveMessage in ~170 ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--skip-moto", action="store_true")
    args = parser.parse_args()
    from_local_queue(args.events)
    if not args.skip_moto:
        from_moto(min(args.events, 500))


if __name__ == "__main__":
    main()
