"""Operating commands on the same registry as `berth serve`: gc, usage, quota, retention, immutable."""

from __future__ import annotations

import click

from registry.cli_options import duration, open_registry, server_options
from registry.config import Settings


def parse_size(text: str) -> int:
    """A size argument (`50GiB`, `500MB`), as a usage error when malformed."""
    from registry.config import parse_size as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be removed, remove nothing.")
@click.option("--untagged", is_flag=True, default=None, help="Also remove untagged manifests (env BERTH_GC_UNTAGGED).")
@click.option("--grace", help="Spare anything touched more recently than this (default 24h, env BERTH_GC_GRACE).")
@server_options
def gc(settings: Settings, dry_run: bool, untagged: bool | None, grace: str | None) -> None:
    """Remove unreferenced blobs, expired uploads, tags retention drops and (with --untagged) untagged manifests."""
    from registry.service.policies import human

    period = duration(grace or settings.gc_grace)
    collector = open_registry(settings).collector
    report = collector.run(period, untagged=settings.gc_untagged if untagged is None else untagged, dry_run=dry_run)
    if report is None:
        raise click.ClickException("another replica is collecting garbage right now; try again later")
    verb = "would remove" if dry_run else "removed"
    for upload_id in report.uploads:
        click.echo(f"{verb} upload {upload_id}")
    for tag in report.tags:
        click.echo(f"{verb} tag {tag.repository}:{tag.tag}")
    for manifest in report.manifests:
        click.echo(f"{verb} manifest {manifest.name}@{manifest.digest}")
    for blob in report.blobs:
        click.echo(f"{verb} blob {blob.digest} ({human(blob.size)})")
    click.echo(
        f"{verb} {len(report.blobs)} blobs, {len(report.manifests)} manifests, {len(report.tags)} tags, "
        f"{len(report.uploads)} uploads: {human(report.bytes_reclaimed)} {'reclaimable' if dry_run else 'reclaimed'}"
    )


@click.command()
@click.option("--by", type=click.Choice(["repository", "namespace"]), default="repository", show_default=True)
@click.option("--bytes", "exact", is_flag=True, help="Print exact byte counts.")
@server_options
def usage(settings: Settings, by: str, exact: bool) -> None:
    """Storage per repository or namespace: deduplicated (unique blobs) and logical (as pulled)."""
    from registry.service.policies import human

    service = open_registry(settings).policies
    fmt = str if exact else human
    click.echo(f"{by.upper():40} {'UNIQUE':>12} {'LOGICAL':>12}")
    for row in service.usage(by_namespace=by == "namespace"):
        click.echo(f"{row.name:40} {fmt(row.unique_bytes):>12} {fmt(row.logical_bytes):>12}")
    click.echo(f"{'stored (every blob once)':40} {fmt(service.policies.stored_bytes()):>12}")


@click.group()
def quota() -> None:
    """Storage quotas per repository pattern."""


@quota.command("set")
@click.argument("pattern")
@click.argument("size")
@server_options
def quota_set(settings: Settings, pattern: str, size: str) -> None:
    """Limit the repositories matching PATTERN (`team/*`) to SIZE (`50GiB`)."""
    open_registry(settings).policies.policies.set_quota(pattern, parse_size(size))
    click.echo(f"quota of {pattern} set to {size}")


@quota.command("rm")
@click.argument("pattern")
@server_options
def quota_rm(settings: Settings, pattern: str) -> None:
    """Remove the quota of PATTERN."""
    if not open_registry(settings).policies.policies.remove_quota(pattern):
        raise click.ClickException(f"no quota on {pattern}")
    click.echo(f"quota of {pattern} removed")


@quota.command("list")
@server_options
def quota_list(settings: Settings) -> None:
    """Quotas with what they use now."""
    from registry.service.policies import human

    service = open_registry(settings).policies
    for pattern, limit in service.policies.quotas():
        click.echo(f"{pattern}\t{human(service.policies.pattern_usage(pattern))} of {human(limit)}")


@click.group()
def retention() -> None:
    """Tag retention policies (applied by every garbage collection run)."""


@retention.command("set")
@click.argument("pattern")
@click.option("--tags", "tag_pattern", default="*", show_default=True, help="Which tags the policy covers (a glob).")
@click.option("--keep", "keep_last", type=click.IntRange(min=0), help="Keep the newest N matching tags.")
@click.option("--max-age", help="Delete matching tags older than this (e.g. 30d).")
@server_options
def retention_set(
    settings: Settings, pattern: str, tag_pattern: str, keep_last: int | None, max_age: str | None
) -> None:
    """Set the policy for repositories matching PATTERN."""
    from registry.metadata.policies import Retention

    if keep_last is None and max_age is None:
        raise click.UsageError("give --keep, --max-age or both")
    max_age_seconds = int(duration(max_age).total_seconds()) if max_age else None
    open_registry(settings).policies.policies.set_retention(Retention(pattern, tag_pattern, keep_last, max_age_seconds))
    click.echo(f"retention for {pattern} tags {tag_pattern} set")


@retention.command("rm")
@click.argument("pattern")
@click.option("--tags", "tag_pattern", default="*", show_default=True)
@server_options
def retention_rm(settings: Settings, pattern: str, tag_pattern: str) -> None:
    """Remove a retention policy."""
    if not open_registry(settings).policies.policies.remove_retention(pattern, tag_pattern):
        raise click.ClickException(f"no retention policy for {pattern} tags {tag_pattern}")
    click.echo("removed")


@retention.command("list")
@server_options
def retention_list(settings: Settings) -> None:
    """List retention policies."""
    for p in open_registry(settings).policies.policies.retention():
        age = f" max-age {p.max_age_seconds}s" if p.max_age_seconds is not None else ""
        keep = f" keep {p.keep_last}" if p.keep_last is not None else ""
        click.echo(f"{p.pattern}\ttags {p.tag_pattern}{keep}{age}")


@retention.command("apply")
@click.option("--dry-run", is_flag=True)
@server_options
def retention_apply(settings: Settings, dry_run: bool) -> None:
    """Delete the tags the policies no longer keep, now."""
    for tag in open_registry(settings).policies.apply_retention(dry_run):
        click.echo(f"{'would remove' if dry_run else 'removed'} tag {tag.repository}:{tag.tag}")


@click.group()
def immutable() -> None:
    """Tags that can never move or be deleted once pushed."""


@immutable.command("add")
@click.argument("pattern")
@click.argument("tag_pattern")
@server_options
def immutable_add(settings: Settings, pattern: str, tag_pattern: str) -> None:
    """Make tags matching TAG_PATTERN (`v*`) in repositories matching PATTERN immutable."""
    open_registry(settings).policies.policies.add_immutable(pattern, tag_pattern)
    click.echo(f"tags {tag_pattern} of {pattern} are immutable")


@immutable.command("rm")
@click.argument("pattern")
@click.argument("tag_pattern")
@server_options
def immutable_rm(settings: Settings, pattern: str, tag_pattern: str) -> None:
    """Remove an immutability rule."""
    if not open_registry(settings).policies.policies.remove_immutable(pattern, tag_pattern):
        raise click.ClickException("no such rule")
    click.echo("removed")


@immutable.command("list")
@server_options
def immutable_list(settings: Settings) -> None:
    """List immutability rules."""
    for pattern, tag_pattern in open_registry(settings).policies.policies.immutable():
        click.echo(f"{pattern}\t{tag_pattern}")


@click.command()
@click.option("--repository", help="Only events of this repository.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@server_options
def events(settings: Settings, repository: str | None, limit: int, output: str) -> None:
    """The newest events: who pushed, pulled or deleted what, when, from where."""
    import json

    for row in open_registry(settings).events.recent(limit, repository):
        if output == "json":
            click.echo(json.dumps(row, default=str))
            continue
        target = row["tag"] or row["digest"] or ""
        click.echo(f"{row['at']}  {row['action']:<6} {row['repository']}:{target}  {row['actor']}@{row['address']}")


COMMANDS: list[click.Command] = [gc, usage, quota, retention, immutable, events]
