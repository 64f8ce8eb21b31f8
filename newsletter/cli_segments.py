"""The `segments` commands (design §4, §15): thin wrappers over mailer/segments.py."""
from __future__ import annotations

from pathlib import Path

import click

from .cli_base import Obj, edge

FOLDER = "segments"


def segments_folder(obj: Obj) -> Path:
    """segments/ beside the config file when one was given and has one, else in the current folder.

    Like issues/, segment files live in the project folder; a --config pointing into
    another project finds that project's segments.
    """
    if obj.config is not None and (obj.config.parent / FOLDER).is_dir():
        return obj.config.parent / FOLDER
    return Path(FOLDER)


@click.group()
def segments() -> None:
    """Show the segments in segments/ (a rule narrowing a list; send one with send --segment)."""


@segments.command("ls")
@click.pass_obj
@edge
def segments_ls(obj: Obj) -> None:
    """Every segment file: its name, title and file; a broken one with its first problem."""
    from mailer import list_segments
    folder = segments_folder(obj)
    entries = list_segments(folder)
    if not entries:
        click.echo(f"No segments: {folder}/ holds no .yaml file.")
        return
    width = max(len(e.name) for e in entries)
    for entry in entries:
        if entry.problem is None:
            click.echo(f"{entry.name:<{width}}  {entry.title or '(no title)'}  [{entry.file}]")
        else:
            click.echo(f"{entry.name:<{width}}  BROKEN  [{entry.file}]\n{'':<{width}}  {entry.problem}")


@segments.command("show")
@click.argument("name")
@click.option("--list", "list_name", metavar="LIST", help="Also show who the segment picks on this list.")
@click.option("--count", is_flag=True, help="With --list: print only how many it picks.")
@click.pass_obj
@edge
def segments_show(obj: Obj, name: str, list_name: str | None, count: bool) -> None:
    """Show the segment NAME (segments/NAME.yaml) as text; with --list, its members on LIST."""
    from mailer import find_segment, segment_addresses, segment_count
    if count and list_name is None:
        raise click.UsageError("--count needs --list LIST: a segment counts the members of one list")
    segment = find_segment(segments_folder(obj), name)
    if count and list_name is not None:
        click.echo(segment_count(obj.db, segment, list_name))
        return
    click.echo(f"{segment.name}: {segment.title or '(no title)'}  [{segment.file}]")
    click.echo("Subscribed, unsuppressed members of the list who match")
    click.echo(segment.describe())
    if list_name is not None:
        found = segment_addresses(obj.db, segment, list_name)
        click.echo(f"\n{len(found)} on {list_name}:")
        for address in found:
            click.echo(f"  {address}")
