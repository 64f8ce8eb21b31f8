"""`newsletter events poll`: SES events from SQS into the database."""
from __future__ import annotations

import click

from .cli_base import Obj, edge


@click.group()
def events() -> None:
    """SES bounces, complaints and deliveries."""


@events.command("poll")
@click.option("--queue-url", help="The SQS queue SNS delivers SES events to (default: NEWSLETTER_SQS_QUEUE_URL).")
@click.option("--once", is_flag=True, help="Drain the queue, then exit (default: run until Ctrl-C).")
@click.pass_obj
@edge
def poll(obj: Obj, queue_url: str | None, once: bool) -> None:
    """Apply SES events from SQS: suppress bounced and complaining addresses."""
    from mailer.sqs import SqsQueue
    from mailer.sqs import poll as run_poll

    from .errors import NewsletterError
    from .events import say_batch, say_wait
    from .wiring import policy
    url = queue_url or obj.settings.sqs_queue_url
    if not url:
        raise NewsletterError("no queue: pass --queue-url or set NEWSLETTER_SQS_QUEUE_URL")
    queue, db = SqsQueue(url), obj.db
    if not once:
        click.echo(f"Polling {url} (Ctrl-C to stop)", err=True)
    try:
        total = run_poll(db, queue, policy(obj.settings), once=once, on_batch=say_batch, on_wait=say_wait)
    except KeyboardInterrupt:
        # Whatever was received and not yet deleted comes back later and is applied once.
        click.echo("Stopped.", err=True)
        return
    click.echo(f"{total.stored} events applied, {total.duplicates} already seen, "
               f"{total.malformed} unreadable or not applied (kept in inbound_errors), "
               f"{len(total.suppressed)} addresses suppressed, {total.settled} unknown deliveries settled as sent."
               + (f" Waited {total.waits} times for the database; those batches stay in the queue for redelivery."
                  if total.waits else ""))
