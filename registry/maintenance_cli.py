"""`berth gc`: garbage collection on demand, on the same registry as `berth serve`."""

from __future__ import annotations

import click

from registry.cli_options import server_options
from registry.config import Settings, parse_duration


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be removed, remove nothing.")
@click.option("--untagged", is_flag=True, default=None, help="Also remove untagged manifests (env BERTH_GC_UNTAGGED).")
@click.option("--grace", help="Spare anything touched more recently than this (default 24h, env BERTH_GC_GRACE).")
@server_options
def gc(settings: Settings, dry_run: bool, untagged: bool | None, grace: str | None) -> None:
    """Remove unreferenced blobs, expired uploads and (with --untagged) untagged manifests."""
    from registry.metadata.collect import Collector
    from registry.metadata.db import make_engine
    from registry.migrate import upgrade
    from registry.service.gc import GarbageCollector
    from registry.storage import open_storage

    try:
        period = parse_duration(grace or settings.gc_grace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grace") from None
    upgrade(settings.effective_database_url)
    collector = GarbageCollector(
        Collector(make_engine(settings.effective_database_url)),
        open_storage(settings.effective_storage, settings.s3_endpoint or None),
    )
    report = collector.run(period, untagged=settings.gc_untagged if untagged is None else untagged, dry_run=dry_run)
    if report is None:
        raise click.ClickException("another replica is collecting garbage right now; try again later")
    verb = "would remove" if dry_run else "removed"
    for upload_id in report.uploads:
        click.echo(f"{verb} upload {upload_id}")
    for manifest in report.manifests:
        click.echo(f"{verb} manifest {manifest.name}@{manifest.digest}")
    for blob in report.blobs:
        click.echo(f"{verb} blob {blob.digest} ({human(blob.size)})")
    click.echo(
        f"{verb} {len(report.blobs)} blobs, {len(report.manifests)} manifests, {len(report.uploads)} uploads: "
        f"{human(report.bytes_reclaimed)} {'reclaimable' if dry_run else 'reclaimed'}"
    )


COMMANDS: list[click.Command] = [gc]
