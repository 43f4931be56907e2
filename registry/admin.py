"""Admin commands on the same data directory or database as `berth serve`:
accounts, grants and robot tokens."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from registry.cli_options import duration, open_registry, server_options
from registry.config import Settings

if TYPE_CHECKING:
    from registry.metadata.accounts import Accounts


def accounts(settings: Settings) -> Accounts:
    return open_registry(settings).accounts


def read_password(password_stdin: bool, confirm: bool = True) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)


def check_name(name: str) -> str:
    from registry.auth.access import valid_account_name

    if not valid_account_name(name):
        raise click.BadParameter(f"{name!r} is not a valid account name")
    return name


@click.group()
def user() -> None:
    """Accounts that log in with a password."""


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="May use the web interface's administration pages.")
@server_options
def user_add(settings: Settings, name: str, password_stdin: bool, admin: bool) -> None:
    """Create an account (the registry closes to anonymous users once one exists)."""
    from registry.auth.passwords import hash_password

    check_name(name)
    try:
        hashed = hash_password(read_password(password_stdin))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not accounts(settings).add(name, "user", hashed, admin=admin):
        raise click.ClickException(f"an account named {name!r} exists already")
    click.echo(f"added {name}{' (admin)' if admin else ''}")


@user.command("import")
@click.argument("htpasswd", type=click.File("r"))
@server_options
def user_import(settings: Settings, htpasswd: click.File) -> None:
    """Import accounts from an htpasswd file with bcrypt hashes (htpasswd -B)."""
    from registry.auth.passwords import read_htpasswd

    try:
        entries = read_htpasswd(htpasswd.read())  # type: ignore[attr-defined]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    store = accounts(settings)
    for name, hashed in entries:
        check_name(name)
        click.echo(f"{'imported' if store.add(name, 'user', hashed) else 'skipped (exists)'} {name}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@server_options
def user_passwd(settings: Settings, name: str, password_stdin: bool) -> None:
    """Change an account's password."""
    from registry.auth.passwords import hash_password

    try:
        hashed = hash_password(read_password(password_stdin))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not accounts(settings).set_password(name, hashed):
        raise click.ClickException(f"no account named {name!r}")
    click.echo(f"password of {name} changed")


@user.command("rm")
@click.argument("name")
@server_options
def user_rm(settings: Settings, name: str) -> None:
    """Delete an account and its grants."""
    if not accounts(settings).remove(name):
        raise click.ClickException(f"no account named {name!r}")
    click.echo(f"removed {name}")


@user.command("list")
@server_options
def user_list(settings: Settings) -> None:
    """List accounts and robot tokens."""
    for row in accounts(settings).list():
        expires = f" expires {row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else ""
        click.echo(f"{row.name}\t{row.kind}{' admin' if row.admin else ''}{expires}")


@click.command()
@click.argument("principal")
@click.argument("pattern")
@click.argument("actions")
@server_options
def grant(settings: Settings, principal: str, pattern: str, actions: str) -> None:
    """Allow PRINCIPAL (an account or `anonymous`) ACTIONS (pull,push,delete) on PATTERN (`team/*`)."""
    from registry.auth.access import parse_actions

    try:
        wanted = parse_actions(actions)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    store = accounts(settings)
    if principal != "anonymous" and store.get(principal) is None:
        raise click.ClickException(f"no account named {principal!r}")
    store.grant(principal, pattern, wanted)
    click.echo(f"granted {','.join(sorted(wanted))} on {pattern} to {principal}")


@click.command()
@click.argument("principal")
@click.argument("pattern")
@click.argument("actions", required=False)
@server_options
def revoke(settings: Settings, principal: str, pattern: str, actions: str | None) -> None:
    """Take ACTIONS (default: all) on PATTERN away from PRINCIPAL."""
    from registry.auth.access import parse_actions

    wanted = parse_actions(actions) if actions else None
    if not accounts(settings).revoke(principal, pattern, wanted):
        raise click.ClickException(f"{principal} has no grant on {pattern}")
    click.echo(f"revoked {actions or 'all'} on {pattern} from {principal}")


@click.command("grants")
@server_options
def list_grants(settings: Settings) -> None:
    """List every grant."""
    for row in accounts(settings).all_grants():
        click.echo(f"{row.principal}\t{row.pattern}\t{','.join(sorted(row.actions))}")


@click.group()
def token() -> None:
    """Robot tokens for CI: usable as the password of `docker login NAME`."""


@token.command("create")
@click.argument("name")
@click.option("--grant", "grants", multiple=True, required=True, help="PATTERN:ACTIONS, e.g. team/*:pull,push.")
@click.option("--expires", help="Lifetime such as 30d, 12h (default: never).")
@server_options
def token_create(settings: Settings, name: str, grants: tuple[str, ...], expires: str | None) -> None:
    """Create a robot account; its secret is printed once and stored hashed."""
    from registry.auth.access import parse_actions
    from registry.auth.passwords import hash_password, new_secret

    check_name(name)
    parsed = []
    for item in grants:
        pattern, _, actions = item.rpartition(":")
        if not pattern:
            raise click.BadParameter(f"{item!r} is not PATTERN:ACTIONS", param_hint="--grant")
        try:
            parsed.append((pattern, parse_actions(actions)))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--grant") from None
    expires_at = datetime.now(UTC) + duration(expires) if expires else None
    secret = new_secret()
    store = accounts(settings)
    if not store.add(name, "robot", hash_password(secret), expires_at):
        raise click.ClickException(f"an account named {name!r} exists already")
    for pattern, allowed in parsed:
        store.grant(name, pattern, allowed)
    click.echo(secret)
    click.echo(f"robot {name}: use it with `docker login -u {name} --password-stdin`; it is not shown again", err=True)


@token.command("revoke")
@click.argument("name")
@server_options
def token_revoke(settings: Settings, name: str) -> None:
    """Delete a robot account; its tokens stop working within minutes."""
    store = accounts(settings)
    row = store.get(name)
    if row is None or row.kind != "robot":
        raise click.ClickException(f"no robot named {name!r}")
    store.remove(name)
    click.echo(f"revoked {name}")


COMMANDS: list[click.Command] = [user, grant, revoke, list_grants, token]
