"""Amazon SQS through boto3 (with ses.py, the only module that imports it): the event poller.

SES -> SNS -> SQS is the robust way to receive SES events: the queue keeps them
while nothing polls. A message is deleted only after its events were applied
and committed, so a crash at any point means redelivery, never loss; applying
is idempotent, so redelivery counts once.

A message that cannot be applied is kept in inbound_errors by `take()` and
deleted with its batch: it would fail the same way every time. A busy or
unreachable database is different: the batch is left in the queue (SQS shows it
again after its visibility timeout) and the poller backs off and goes on.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from subscribers import Database, DatabaseError

from .errors import QueueError
from .policy import Applied, Policy, take

LONG_POLL = 20  # seconds: SQS's longest wait, the cheapest way to sit idle
DRAIN_POLL = 2  # --once: long enough to ask every SQS server, short enough to end promptly
FIRST_WAIT, LONGEST_WAIT = 1.0, 60.0  # seconds of backoff while the database is busy or unreachable


@dataclass(frozen=True)
class QueueMessage:
    receipt: str
    body: str


def _error(exc: Exception, doing: str) -> QueueError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return QueueError(f"SQS {doing}: {error.get('Code', '')}: {error.get('Message', '') or exc}")
    return QueueError(f"SQS {doing}: {exc}")


class SqsQueue:
    def __init__(self, url: str):
        self.url = url
        try:
            self.client = boto3.client("sqs", config=Config(retries={"mode": "standard"}))
        except BotoCoreError as exc:
            raise _error(exc, "set-up") from None

    def receive(self, wait: int) -> list[QueueMessage]:
        try:
            answer = self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"receive from {self.url}") from None
        return [QueueMessage(m["ReceiptHandle"], m.get("Body", "")) for m in answer.get("Messages", [])]

    def delete(self, messages: list[QueueMessage]) -> None:
        if not messages:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(messages)]
        try:
            self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            # Not fatal: the messages come back and are applied again as no-ops.
            raise _error(exc, "delete") from None


def poll(db: Database, queue: SqsQueue, policy: Policy, *, once: bool = False,
         stop: threading.Event | None = None, on_batch: Callable[[Applied], None] | None = None,
         on_wait: Callable[[DatabaseError, float], None] | None = None,
         sleep: Callable[[float], object] | None = None) -> Applied:
    """Receive, apply, then delete, until `stop` is set (or the queue is empty, with `once`).

    When the database fails a batch, `on_wait(error, seconds)` is told, the batch
    stays in the queue, and `sleep(seconds)` (default: waiting on `stop`) backs off.
    """
    stop = stop or threading.Event()
    sleep = sleep or stop.wait
    total = Applied()
    wait = FIRST_WAIT
    while not stop.is_set():
        messages = queue.receive(DRAIN_POLL if once else LONG_POLL)
        if not messages:
            if once:
                break
            continue
        try:
            applied = take(db, [m.body for m in messages], policy, "sqs")
        except DatabaseError as exc:
            total.waits += 1
            if on_wait is not None:
                on_wait(exc, wait)
            sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
            continue
        wait = FIRST_WAIT
        queue.delete(messages)
        total.add(applied)
        if on_batch is not None:
            on_batch(applied)
    return total
