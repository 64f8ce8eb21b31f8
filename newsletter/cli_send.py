"""The `send`, `test-send` and `report` commands."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .cli_base import Obj, edge


@click.command()
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", required=True, help="The list to send to.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--rate", type=click.FloatRange(min=0.01), help="Messages per second (default: the SES account's).")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Sending threads.")
@click.option("--retry-unknown", is_flag=True, help="Resend rows left 'sending' by a crash (may duplicate).")
@click.option("--force", is_flag=True, help="Send despite check errors or a non-public base URL.")
@click.option("--segment", "segment_name", help="Only the list's members in segments/NAME.yaml.")
@click.option("--at", "at", help="Schedule it for a worker at this time (ISO 8601) instead of sending now.")
@click.option("--expires", help="With --at: send nothing if a worker finds it later than this (90s, 15m, 2h, 1d).")
@click.pass_obj
@edge
def send(obj: Obj, issue: Path, list_name: str, dry_run: bool, yes: bool, rate: float | None, workers: int,
         retry_unknown: bool, force: bool, segment_name: str | None, at: str | None, expires: str | None) -> None:
    """Mail ISSUE.yaml to every subscribed member of a list (or a segment of it), exactly once."""
    from mailer import MessageTemplate, plan_send

    from .sending import checked_base_url, checked_render, require
    from .wiring import envelope
    if expires and not at:
        raise click.UsageError("--expires needs --at")
    settings = obj.settings
    if (unsafe := checked_base_url(settings, force or dry_run)) is not None:
        click.echo(f"Warning: {unsafe}.", err=True)
    rendered = checked_render(issue, settings, force)
    segment = _segment(segment_name)
    plan = plan_send(obj.db, rendered.slug, list_name, segment)
    _print_plan(plan)
    _print_estimate(settings, plan, rate)
    if dry_run:  # a preview needs no sender: a placeholder stands in
        sample = settings.with_overrides(from_address=settings.from_address or "newsletter@example.org")
        _print_sample(MessageTemplate(rendered, envelope(sample, list_name)))
        click.echo("Dry run: nothing was sent.")
        return
    require(settings, "from_address", "secret")
    if at:
        _schedule(obj, rendered, plan, issue, at, expires, force)
        return
    if plan.to_send == 0 and not (retry_unknown and plan.ledger.get("sending")):
        click.echo("Nothing to send.")
        return
    if not yes and not click.confirm(f"Send {rendered.slug!r} to {plan.to_send} recipients?", default=False):
        raise click.ClickException("nothing sent")
    _run(obj, rendered, plan, issue, rate, workers, retry_unknown, force)


def _segment(name: str | None) -> Any:
    if not name:
        return None
    from .jobs import load_segment
    return load_segment(name)


def _schedule(obj: Obj, rendered: Any, plan: Any, issue: Path, at: str, expires: str | None, force: bool) -> None:
    from .queueing import schedule_rendered
    done = schedule_rendered(obj.settings, obj.db, plan, rendered, issue, at, expires, force)
    window = f", not after {done.expires_at.isoformat()}" if done.expires_at else ""
    click.echo(f"Scheduled send {done.send_id} for {done.at.isoformat()}{window}. A worker sends it "
               "(`newsletter worker`, or `newsletter serve --with-worker`); `newsletter sends ls` shows it.")


def _print_estimate(settings: Any, plan: Any, rate: float | None) -> None:
    """How long the send will take at the account's rate and quota (design §12)."""
    from .queueing import send_estimate
    from .wiring import transport
    click.echo(f"  time: {send_estimate(settings, transport(settings), plan.to_send, rate)}")


def _print_plan(plan: Any) -> None:
    s = plan.statuses
    click.echo(f"Send {plan.issue!r} to list {plan.list_name!r}:")
    if plan.send_id is None:
        click.echo(f"  {plan.to_send} recipients (subscribed {s.get('subscribed', 0)}, "
                   f"of whom suppressed {plan.suppressed})")
    else:
        led = plan.ledger
        click.echo(f"  resuming: {led.get('sent', 0)} sent, {led.get('failed', 0)} failed, "
                   f"{led.get('skipped', 0)} skipped, {led.get('pending', 0)} still to send")
        if led.get("sending"):
            click.echo(f"  {led['sending']} unknown (a crash left them 'sending'; they may have gone out): "
                       "not resent unless --retry-unknown")
    click.echo(f"  not sent to: {s.get('unsubscribed', 0)} unsubscribed, {s.get('unconfirmed', 0)} unconfirmed, "
               f"{plan.suppressed} suppressed")


def _print_sample(template: Any) -> None:
    """The subject and the start of the text part, as a sample reader would get them."""
    import email
    import email.policy

    from mailer import Recipient
    sample = Recipient("reader@example.org", "Alex Sample", {}, "https://example.org/u/SAMPLE")
    message = email.message_from_bytes(template.personalise(sample), policy=email.policy.default)
    text = next(message.iter_parts()).get_content()  # type: ignore[attr-defined]
    click.echo(f"  sample subject: {template.subject_for(sample)}")
    click.echo("  sample text part:")
    for line in text.splitlines()[:12]:
        click.echo(f"    {line}")


def _run(obj: Obj, rendered: Any, plan: Any, issue: Path, rate: float | None, workers: int, retry_unknown: bool,
         force: bool) -> None:
    from mailer import send_issue

    from .progress import send_progress
    from .wiring import delivery
    how = delivery(obj.settings, plan.list_name, rate=rate, workers=workers, retry_unknown=retry_unknown,
                   force=force)
    click.echo(f"Sending at up to {how.rate:g} messages/s with {workers} workers through {how.transport.name}.")
    with send_progress() as progress:
        result = send_issue(obj.db, plan, rendered, how, on_progress=progress, issue_path=str(issue.resolve()))
    click.echo(f"Done: {result.sent} sent, {result.failed} failed, {result.skipped} skipped, "
               f"{result.unknown} unknown.")
    if result.failed or result.unknown:
        from mailer import report as make_report

        from .reporting import who_missed_it
        for line in who_missed_it([r for r in make_report(obj.db, plan.issue) if r["list"] == plan.list_name],
                                  plan.issue):
            click.echo(line)


@click.command("test-send")
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "addresses", multiple=True, required=True, help="An address to send a proof to.")
@click.option("--force", is_flag=True, help="Send despite check errors or a non-public base URL.")
@click.pass_obj
@edge
def test_send(obj: Obj, issue: Path, addresses: tuple[str, ...], force: bool) -> None:
    """Send proofs of ISSUE.yaml to any address (outside the ledger)."""
    from .queueing import send_test as send_proofs
    from .wiring import transport
    proofs = send_proofs(obj.settings, transport(obj.settings), issue, list(addresses), force)
    if proofs.warning is not None:
        click.echo(f"Warning: {proofs.warning}.", err=True)
    for address, message_id in proofs.sent:
        click.echo(f"Proof sent to {address} ({message_id}).")


RECIPIENT_STATES = ("failed", "unknown", "pending", "skipped", "sent")


@click.command()
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (design §4).")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw sends, deliveries, bounces and complaints over time into this PNG.")
@click.option("--recipients", "state", type=click.Choice(RECIPIENT_STATES),
              help="List the people of the issue's sends in this state instead.")
@click.option("--csv", "as_csv", is_flag=True,
              help="With --recipients: CSV (email,state,reason,message_id,updated_at).")
@click.pass_obj
@edge
def report(obj: Obj, slug: str, as_json: bool, chart: Path | None, state: str | None, as_csv: bool) -> None:
    """What happened to each send of an issue: sent, delivered, bounced, complained, unsubscribed; who missed it."""
    if as_csv and state is None:
        raise click.UsageError("--csv goes with --recipients STATE")
    if state is not None:
        if as_json or chart is not None:
            raise click.UsageError("--recipients lists people: use it without --json and --chart (--csv for CSV)")
        _recipients(obj, slug, state, as_csv)
        return
    from mailer import report as make_report
    from mailer.reports import warnings

    from .reporting import report_table, who_missed_it
    rows = make_report(obj.db, slug)
    if not rows and not as_json:
        raise click.ClickException(f"no send of {slug!r} yet")
    if chart is not None:
        from mailer.reports import timeline

        from .chart import draw_chart
        draw_chart(timeline(obj.db, slug), chart, slug, rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(report_table(rows))
    click.echo()
    click.echo("\n".join(who_missed_it(rows, slug)))
    for row in rows:
        for warning in warnings(row):
            click.echo(f"WARNING {row['list']}: {warning}", err=True)
    if chart is not None:
        click.echo(f"Wrote {chart}")


def _recipients(obj: Obj, slug: str, state: str, as_csv: bool) -> None:
    """`report SLUG --recipients STATE [--csv]`: streamed, one library call each."""
    if as_csv:  # like --json: a slug never sent is an empty list (the header alone), not an error
        from mailer.reports import write_recipients_csv
        write_recipients_csv(obj.db, slug, state, sys.stdout)
        return
    from mailer import report as make_report
    from mailer.reports import recipients
    from subscribers import display_address

    from .reporting import recipients_table
    shown = False
    for line in recipients_table(recipients(obj.db, slug, state), display_address):
        click.echo(line)
        shown = True
    if shown:
        return
    if not make_report(obj.db, slug):
        raise click.ClickException(f"no send of {slug!r} yet")
    click.echo(f"No recipient of {slug!r} is {state}.")
