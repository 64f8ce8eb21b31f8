"""`newsletter sends ...` and `newsletter worker`: sends as jobs (design §12)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_base import Obj, edge


@click.group()
def sends() -> None:
    """Every send, and pausing, resuming or cancelling one."""


@sends.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (design §12).")
@click.pass_obj
@edge
def ls(obj: Obj, as_json: bool) -> None:
    """Every send, newest first: state, time and counts."""
    from mailer.jobs import list_sends, shown_as_json
    rows = list_sends(obj.db)
    if as_json:
        click.echo(json.dumps([shown_as_json(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo("No sends yet.")
        return
    click.echo(f"{'id':>4}  {'send':<32} {'state':<10} {'at':<25} {'sent':>7} {'pending':>7} "
               f"{'failed':>6} {'unknown':>7}")
    for r in rows:
        name = "/".join(x for x in (r["issue"], r["list"], r["segment"]) if x)
        click.echo(f"{r['id']:>4}  {name:<32} {r['state']:<10} {r['at'] or '-':<25} {r['sent']:>7} "
                   f"{r['pending']:>7} {r['failed']:>6} {r['unknown']:>7}")
        if r["reason"] and r["state"] not in ("running", "finished"):
            click.echo(f"      {r['reason']}")


def _action(name: str, verb: str, done: str) -> click.Command:
    @click.command(name, help=f"{verb} SEND (its id, or SLUG/LIST, or SLUG/LIST/SEGMENT).")
    @click.argument("send")
    @click.pass_obj
    @edge
    def command(obj: Obj, send: str) -> None:
        from mailer import jobs
        send_id = jobs.find_send(obj.db, send)
        state = getattr(jobs, name)(obj.db, send_id)
        click.echo(f"Send {send_id}: {state}. {done}")
    return command


sends.add_command(_action("pause", "Pause", "Messages in flight finish; the rest wait (`sends resume`)."))
sends.add_command(_action("resume", "Resume", "A worker takes it up (`newsletter worker`)."))
sends.add_command(_action("cancel", "Cancel", "Nothing more is sent; what was sent stays recorded."))


@click.command()
@click.option("--once", is_flag=True, help="Run every send that is due to its end, then exit.")
@click.pass_obj
@edge
def worker(obj: Obj, once: bool) -> None:
    """Run scheduled, queued, resumed and quota-paused sends when they are due."""
    from .worker import run_worker
    run_worker(obj.settings, obj.db, once=once)


@click.command("set")
@click.argument("name")
@click.option("--title", help="What readers see as the list's name.")
@click.option("--welcome", "welcome_file", type=click.Path(dir_okay=False, path_type=Path),
              help="An issue everyone who joins through the sign-up form gets, once.")
@click.option("--no-welcome", is_flag=True, help="Welcome nobody from now on.")
@click.pass_obj
@edge
def set_list(obj: Obj, name: str, title: str | None, welcome_file: Path | None, no_welcome: bool) -> None:
    """Change a list: its title, and its welcome issue (design §12)."""
    from mailer import clear_welcome, set_welcome
    from subscribers import get_list, set_title

    from .sending import checked_render
    if welcome_file and no_welcome:
        raise click.UsageError("--welcome and --no-welcome do not go together")
    if not (title or welcome_file or no_welcome):
        raise click.UsageError("nothing to change: give --title, --welcome or --no-welcome")
    with obj.db.begin(read_only=True) as conn:
        get_list(conn, name)  # an unknown list is exit 1 before anything else
    if title:
        click.echo(f"List {name!r}: title {set_title(obj.db, name, title).title!r}.")
    if welcome_file:
        rendered = checked_render(welcome_file, obj.settings, False)
        set_welcome(obj.db, name, rendered, str(welcome_file.resolve()))
        click.echo(f"List {name!r}: whoever joins through the sign-up form gets {rendered.slug!r} once "
                   "(sent by a worker: `newsletter worker` or `serve --with-worker`).")
    if no_welcome:
        turned_off = clear_welcome(obj.db, name)
        click.echo(f"List {name!r}: " + ("no welcome issue from now on." if turned_off else "had no welcome issue."))
