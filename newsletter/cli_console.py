"""`newsletter users ...` and `newsletter tokens ...`: the console's accounts and API tokens (design §13)."""
from __future__ import annotations

import sys

import click

from .cli_base import Obj, edge

ROLE = click.Choice(["viewer", "editor", "sender", "admin"])


def _password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated): one line from stdin (its newline is not part of it), or a new random one."""
    if not from_stdin:
        from subscribers import generate_password
        return generate_password(), True
    line = sys.stdin.readline()
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):  # typed on Windows, or piped from a file saved there
        line = line[:-1]
    if not line:
        raise click.ClickException("no password on stdin (one line expected)")
    return line, False


@click.group()
def users() -> None:
    """Console accounts: add, list, remove, change a password."""


@users.command("add")
@click.argument("email")
@click.option("--role", type=ROLE, required=True, help="viewer, editor, sender or admin (design §13).")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
@click.pass_obj
@edge
def users_add(obj: Obj, email: str, role: str, password_stdin: bool) -> None:
    """Create a console account (without --password-stdin, a password is made and printed once)."""
    from subscribers import add_user
    password, generated = _password(password_stdin)
    user = add_user(obj.db, email, role, password)
    click.echo(f"Added {user.email} ({user.role}).")
    if generated:
        click.echo(f"Password (shown once): {password}")


@users.command("ls")
@click.pass_obj
@edge
def users_ls(obj: Obj) -> None:
    """Every console account with its role."""
    from subscribers import list_users
    found = list_users(obj.db)
    if not found:
        click.echo("No users yet. Add the first admin: newsletter users add EMAIL --role admin")
        return
    width = max(len(u.email) for u in found)
    for user in found:
        click.echo(f"{user.email:<{width}}  {user.role:<6}  since {user.created_at:%Y-%m-%d}")


@users.command("rm")
@click.argument("email")
@click.pass_obj
@edge
def users_rm(obj: Obj, email: str) -> None:
    """Remove an account; its sessions end at once."""
    from subscribers import remove_user
    ended = remove_user(obj.db, email)
    click.echo(f"Removed {email.strip()} ({ended} session(s) ended).")


@users.command("passwd")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from one line of stdin.")
@click.pass_obj
@edge
def users_passwd(obj: Obj, email: str, password_stdin: bool) -> None:
    """Set a new password; every session of that user ends."""
    from subscribers import set_password
    password, generated = _password(password_stdin)
    ended = set_password(obj.db, email, password)
    click.echo(f"Changed the password of {email.strip()} ({ended} session(s) ended).")
    if generated:
        click.echo(f"Password (shown once): {password}")


@click.group()
def tokens() -> None:
    """API tokens (Authorization: Bearer): create, list, revoke."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="What the token may do: as the user role of that name.")
@click.pass_obj
@edge
def tokens_create(obj: Obj, name: str, role: str) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    from subscribers import create_token
    token = create_token(obj.db, name, role)
    click.echo(f"Created token {name.strip()!r} ({role}). Shown once, keep it now:", err=True)
    click.echo(token)


@tokens.command("ls")
@click.pass_obj
@edge
def tokens_ls(obj: Obj) -> None:
    """Every token: name, role, created, last used (never the token itself)."""
    from subscribers import list_tokens
    found = list_tokens(obj.db)
    if not found:
        click.echo("No tokens. Make one: newsletter tokens create NAME --role viewer")
        return
    width = max(len(t.name) for t in found)
    for token in found:
        used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never used"
        click.echo(f"{token.name:<{width}}  {token.role:<6}  created {token.created_at:%Y-%m-%d}  {used}")


@tokens.command("revoke")
@click.argument("name")
@click.pass_obj
@edge
def tokens_revoke(obj: Obj, name: str) -> None:
    """Revoke a token: it stops working at once."""
    from subscribers import revoke_token
    revoke_token(obj.db, name)
    click.echo(f"Revoked token {name.strip()!r}.")
