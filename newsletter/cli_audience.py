"""The `lists`, `subscribers` and `db` commands: thin wrappers over subscribers/."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .cli_base import Obj, edge


@click.group()
def lists() -> None:
    """Create, show and remove mailing lists."""


@lists.command("create")
@click.argument("name")
@click.option("--title", default="", help="Shown to readers, e.g. on the sign-up form.")
@click.option("--double-opt-in", is_flag=True, help="Sign-ups must confirm by email before they get mail.")
@click.pass_obj
@edge
def lists_create(obj: Obj, name: str, title: str, double_opt_in: bool) -> None:
    """Create the list NAME."""
    from subscribers import create_list
    created = create_list(obj.db, name, title, double_opt_in)
    kind = "double opt-in" if created.double_opt_in else "single opt-in"
    click.echo(f"Created list {created.name!r} ({kind}).")


@lists.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@edge
def lists_ls(obj: Obj, as_json: bool) -> None:
    """Show every list with its member counts."""
    from subscribers import list_lists
    found = list_lists(obj.db)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("No lists yet. Create one: newsletter lists create NAME")
        return
    width = max(len(item["name"]) for item in found)
    # Suppressed members are never mailed: counted apart, not as subscribed (or anything else).
    click.echo(f"{'list':<{width}}  subscribed  unconfirmed  unsubscribed  suppressed  title")
    for item in found:
        click.echo(f"{item['name']:<{width}}  {item['subscribed']:>10}  {item['unconfirmed']:>11}"
                   f"  {item['unsubscribed']:>12}  {item['suppressed']:>10}  {item['title']}")


@lists.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@edge
def lists_rm(obj: Obj, name: str, yes: bool) -> None:
    """Remove the list NAME and its memberships (subscribers, suppressions and unsubscribes stay)."""
    from mailer.welcome import remove_list
    if not yes and not click.confirm(f"Remove list {name!r} and all its memberships?", default=False):
        raise click.ClickException("nothing removed")
    removed, kept = remove_list(obj.db, name)
    note = f"; {kept} unsubscribed kept, so they stay unsubscribed if the list is created again" if kept else ""
    click.echo(f"Removed list {name!r} ({removed} memberships{note}).")


@click.group()
def subscribers() -> None:
    """Add, import, export, show, unsubscribe and forget subscribers."""


def _fields(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--field")
        out[key.strip()] = value.strip()
    return out


@subscribers.command("add")
@click.argument("email")
@click.option("--list", "list_name", required=True, help="The list to add to.")
@click.option("--name", default="", help="Full name.")
@click.option("--field", "fields", multiple=True, metavar="KEY=VALUE", help="A custom field (repeatable).")
@click.pass_obj
@edge
def subscribers_add(obj: Obj, email: str, list_name: str, name: str, fields: tuple[str, ...]) -> None:
    """Subscribe EMAIL to a list (never someone who unsubscribed or is suppressed)."""
    from subscribers import add_subscriber
    outcome = add_subscriber(obj.db, email, list_name, name, _fields(fields))
    click.echo(f"{email.strip()}: {outcome} ({list_name}).")


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--list", "list_name", required=True, help="The list to import into.")
@click.option("--format", "format_name", default="auto", show_default=True,
              type=click.Choice(["auto", "plain", "mailchimp", "listmonk", "sendy", "substack"]),
              help="Whose export FILE is; auto recognises it by its header.")
@click.option("--dry-run", is_flag=True, help="Report what would happen; write nothing.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Write rejected rows here as CSV, with line number and reason.")
@click.pass_obj
@edge
def subscribers_import(obj: Obj, file: Path, list_name: str, format_name: str, dry_run: bool,
                       rejects: Path | None) -> None:
    """Import FILE.csv: a plain CSV (column `email`; `name`, `first_name`, `last_name`; others become
    fields) or an export of Mailchimp, listmonk, Sendy or Substack, whose statuses are kept."""
    from subscribers import import_csv

    from .progress import byte_progress
    database = obj.db
    with byte_progress(f"Importing {file.name}", file) as advance:
        report = import_csv(database, file, list_name, format=format_name, dry_run=dry_run, rejects_path=rejects,
                            on_progress=advance)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(report.summary())
    if report.rejected:
        # Exit 0: the rest was imported. But say it, so a rejected row is never missed.
        where = f"they are in {rejects}" if rejects is not None else \
            "run it again with --rejects FILE to get each row with its reason"
        verb = "would not be" if dry_run else "were not"
        click.echo(f"{report.rejected} rows {verb} imported ({where}).")


@subscribers.command("export")
@click.option("--list", "list_name", required=True, help="The list to export.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
@click.pass_obj
@edge
def subscribers_export(obj: Obj, list_name: str, out: Path | None) -> None:
    """Export a list as CSV (re-importable)."""
    from subscribers import export_csv
    count = export_csv(obj.db, list_name, out)
    if out is not None:
        click.echo(f"Exported {count} subscribers of {list_name!r} to {out}")


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (design §4).")
@click.pass_obj
@edge
def subscribers_show(obj: Obj, email: str, as_json: bool) -> None:
    """Everything held about one person (GDPR access); the human form also lists their SES events."""
    from mailer.history import events_of
    from subscribers import show
    record = show(obj.db, email)
    if as_json:
        # Exactly design §4's keys: other tools read this. `email` is the stored form, punycode
        # domain and all: the address that is sent to, exported, and found again by `show`.
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    _print_record(record, events_of(obj.db, email))


def _print_record(record: dict[str, Any], events: list[dict[str, Any]]) -> None:
    from subscribers import display_address
    shown = display_address(record["email"])
    sent_as = f" [sent as {record['email']}]" if shown != record["email"] else ""
    click.echo(shown + (f" ({record['name']})" if record["name"] else "") + sent_as)
    if record["suppressed"]:
        click.echo(f"  suppressed: {record['suppression_reason']}")
    for key, value in sorted(record["fields"].items()):
        click.echo(f"  {key}: {value}")
    for membership in record["lists"]:
        when = membership["unsubscribed_at"] or membership["subscribed_at"]
        click.echo(f"  list {membership['list']}: {membership['status']} ({membership['source']}, {when})")
    for event in events:
        what = event["kind"] + (f" ({'hard' if event['hard'] else 'soft'}: {event['bounce_type']}/"
                                f"{event['bounce_subtype']})" if event["kind"] == "bounce" else "")
        extra = event.get("diagnostic") or event.get("complaintFeedbackType") or ""
        click.echo(f"  event {event['at']} {what}" + (f" [{event['send']}]" if event["send"] else "")
                   + (f": {extra}" if extra else ""))


@subscribers.command("unsubscribe")
@click.argument("email")
@click.option("--list", "list_name", help="Only this list (default: every list).")
@click.pass_obj
@edge
def subscribers_unsubscribe(obj: Obj, email: str, list_name: str | None) -> None:
    """Unsubscribe EMAIL from one list or from all of them."""
    from subscribers import unsubscribe
    changed = unsubscribe(obj.db, email, list_name)
    if changed:
        click.echo(f"{email.strip()}: unsubscribed from {', '.join(changed)}.")
    else:
        click.echo(f"{email.strip()}: already unsubscribed.")


@subscribers.command("forget")
@click.argument("email")
@click.pass_obj
@edge
def subscribers_forget(obj: Obj, email: str) -> None:
    """Erase everything about EMAIL; keep only a hash so it is never mailed again."""
    from mailer.history import forget_person
    forget_person(obj.db, email)
    click.echo(f"{email.strip()}: forgotten (only a hash is kept, in the suppression list).")


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_obj
@edge
def db_upgrade(obj: Obj) -> None:
    """Apply pending migrations (also done on first use)."""
    from subscribers import upgrade

    from .wiring import database
    applied = upgrade(database(obj.settings, migrate=False))
    click.echo("Database migrated to the latest schema." if applied else "Database already up to date.")


__all__ = ["db", "lists", "subscribers"]
