"""`berth replicate add/ls/rm/run/status`: copies of repositories to and from other registries."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from registry.cli_options import duration, open_registry, server_options
from registry.config import Settings
from registry.upstream_cli import check_upstream_name, check_url, read_password

if TYPE_CHECKING:
    from registry.metadata.replication import ReplicationConfig

REPOSITORY_PATTERN = re.compile(r"[a-z0-9._/*?\[\]-]{1,255}")
TAG_PATTERN = re.compile(r"[A-Za-z0-9._*?\[\]-]{1,128}")
MIN_INTERVAL_SECONDS = 10
MAX_INTERVAL_SECONDS = 30 * 86400
STATUS_RUNS = 200


def check_schedule(schedule: str | None, mode: str) -> tuple[int | None, bool]:
    """(interval in seconds, on push) from --schedule: a duration, `on-push`, or none (by hand)."""
    if schedule is None:
        return None, False
    if schedule == "on-push":
        if mode != "push":
            raise click.BadParameter(
                "on-push replicates this registry's pushes: it needs --mode push", param_hint="--schedule"
            )
        return None, True
    if len(schedule) > 32:
        raise click.BadParameter("a duration (10m, 6h, 1d) or on-push", param_hint="--schedule")
    try:
        seconds = int(duration(schedule).total_seconds())
    except click.BadParameter as exc:
        raise click.BadParameter(f"{exc.message}; or on-push", param_hint="--schedule") from None
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise click.BadParameter(f"between {MIN_INTERVAL_SECONDS}s and 30d", param_hint="--schedule")
    return seconds, False


@click.group()
def replicate() -> None:
    """Copy repositories to (push) or from (pull) another registry, on push, on a schedule or by hand."""


@replicate.command("add")
@click.argument("name")
@click.argument("dest_url", metavar="DEST_URL")
@click.option("--username", help="Log in to the other registry as this user (Basic or token flow).")
@click.option("--password-stdin", is_flag=True, help="Read the other registry's password from standard input.")
@click.option("--repository", "repository_pattern", required=True, help="Repositories matching this glob (team/*).")
@click.option("--tags", "tag_pattern", default="*", show_default=True, help="Tags matching this glob (v*).")
@click.option("--mode", type=click.Choice(["push", "pull"]), default="push", show_default=True)
@click.option("--schedule", help="A duration between runs (1h), or on-push; none: only `replicate run`.")
@click.option("--mirror-deletes", is_flag=True, help="Delete there what is deleted here (or here, pulling).")
@server_options
def replicate_add(
    settings: Settings,
    name: str,
    dest_url: str,
    username: str | None,
    password_stdin: bool,
    repository_pattern: str,
    tag_pattern: str,
    mode: str,
    schedule: str | None,
    mirror_deletes: bool,
) -> None:
    """Replicate repositories matching --repository to (or, with --mode pull, from) the registry at DEST_URL."""
    check_upstream_name(name)
    url = check_url(dest_url)
    if not REPOSITORY_PATTERN.fullmatch(repository_pattern) or ".." in repository_pattern:
        raise click.BadParameter(
            "a glob of at most 255 of a-z 0-9 . _ - / * ? [ ] (no '..')", param_hint="--repository"
        )
    if not TAG_PATTERN.fullmatch(tag_pattern):
        raise click.BadParameter("a glob of at most 128 of A-Z a-z 0-9 . _ - * ? [ ]", param_hint="--tags")
    interval, on_push = check_schedule(schedule, mode)
    password = read_password(username, password_stdin)
    from registry.metadata.replication import ReplicationConfig

    config = ReplicationConfig(
        name=name,
        url=url,
        repository_pattern=repository_pattern,
        tag_pattern=tag_pattern,
        mode=mode,
        interval_seconds=interval,
        on_push=on_push,
        mirror_deletes=mirror_deletes,
        username=username,
        password=password,
    )
    problem = open_registry(settings).replication.index.add(config)
    if problem:
        raise click.ClickException(problem)
    direction = "to" if mode == "push" else "from"
    click.echo(f"added replication {name}: {repository_pattern}:{tag_pattern} {direction} {url}")


def _schedule(config: ReplicationConfig) -> str:
    if config.on_push:
        return "on-push"
    return f"{config.interval_seconds}s" if config.interval_seconds else "manual"


@replicate.command("ls")
@server_options
def replicate_ls(settings: Settings) -> None:
    """List replications (credentials are never shown)."""
    click.echo(f"{'NAME':16} {'MODE':5} {'URL':36} {'REPOSITORY':24} {'TAGS':10} {'SCHEDULE':10} {'DELETES':8} AUTH")
    for c in open_registry(settings).replication.index.configs():
        deletes = "mirror" if c.mirror_deletes else "keep"
        auth = "user" if c.username else "none"
        click.echo(
            f"{c.name:16} {c.mode:5} {c.url:36} {c.repository_pattern:24} {c.tag_pattern:10} "
            f"{_schedule(c):10} {deletes:8} {auth}"
        )


@replicate.command("rm")
@click.argument("name")
@server_options
def replicate_rm(settings: Settings, name: str) -> None:
    """Remove a replication (and its pending on-push deliveries); what it copied stays."""
    check_upstream_name(name)
    if not open_registry(settings).replication.index.remove(name):
        raise click.ClickException(f"no replication named {name!r}")
    click.echo(f"removed replication {name}")


@replicate.command("run")
@click.argument("name")
@server_options
def replicate_run(settings: Settings, name: str) -> None:
    """Copy every matching tag now (with --mirror-deletes, also remove what is gone)."""
    check_upstream_name(name)
    try:
        report = open_registry(settings).replication.run(name)
    except KeyError:
        raise click.ClickException(f"no replication named {name!r}") from None
    if report is None:
        raise click.ClickException(f"replication {name} is running elsewhere now; try again when it is done")
    for line in report.copied:
        click.echo(f"copied {line}")
    for line in report.deleted:
        click.echo(f"deleted {line}")
    click.echo(f"{len(report.copied)} copied, {len(report.deleted)} deleted, {len(report.errors)} errors")
    if report.errors:
        raise click.ClickException("; ".join(report.errors)[:4000])


@replicate.command("status")
@click.argument("name", required=False)
@click.option("--runs", "limit", type=click.IntRange(1, STATUS_RUNS), default=10, show_default=True)
@server_options
def replicate_status(settings: Settings, name: str | None, limit: int) -> None:
    """The last runs (what was copied, errors) and the on-push deliveries still pending."""
    if name is not None:
        check_upstream_name(name)
    index = open_registry(settings).replication.index
    pending = index.pending()
    for config in index.configs():
        if name is not None and config.name != name:
            continue
        count, error = pending.get(config.name, (0, None))
        line = f"{config.name}: {count} on-push deliveries pending"
        click.echo(line + (f" (last error: {error})" if error else ""))
    for run in index.runs(limit, name):
        took = (run.finished_at - run.started_at).total_seconds()
        click.echo(
            f"{run.started_at:%Y-%m-%d %H:%M:%S} {run.replication} {run.trigger}: {run.copied} copied, "
            f"{run.deleted} deleted in {took:.1f}s" + (f"; error: {run.error}" if run.error else "")
        )
        for item in run.detail:
            click.echo(f"    {item}")


COMMANDS: list[click.Command] = [replicate]
