"""The options every server-side command shares, so they all act on the same registry."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from registry.config import Settings, load_settings, parse_duration

if TYPE_CHECKING:
    from registry.wiring import Registry


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every server-side command shares, folded into one `settings` argument."""

    @click.option(
        "--config",
        "config_file",
        type=click.Path(exists=True, dir_okay=False),
        help="TOML file with settings (env BERTH_CONFIG).",
    )
    @click.option(
        "--data-dir", type=click.Path(file_okay=False), help="Where the database and blobs live (env BERTH_DATA_DIR)."
    )
    @click.option("--database-url", help="SQLAlchemy URL of the index (env BERTH_DATABASE_URL).")
    @click.option("--storage", help="Blob storage: file:///path or s3://BUCKET/PREFIX (env BERTH_STORAGE).")
    @click.option("--s3-endpoint", help="S3-compatible endpoint URL (env BERTH_S3_ENDPOINT, or AWS_ENDPOINT_URL).")
    @click.option(
        "--s3-redirect/--no-s3-redirect",
        default=None,
        help="Answer blob GETs with a 307 to a presigned S3 URL (env BERTH_S3_REDIRECT).",
    )
    @functools.wraps(command)
    def wrapper(config_file: str | None, **kwargs: Any) -> Any:
        given = {k: kwargs.pop(k) for k in list(kwargs) if k in SETTING_FLAGS}
        try:
            settings = load_settings(config_file, **given)
        except (OSError, ValueError) as exc:
            raise click.UsageError(str(exc)) from None
        from registry.metadata.db import DriverMissing, check_driver

        try:
            check_driver(settings.effective_database_url)
        except DriverMissing as exc:
            raise click.ClickException(str(exc)) from None
        return command(settings, **kwargs)

    return wrapper


SETTING_FLAGS = {
    "data_dir",
    "database_url",
    "storage",
    "s3_endpoint",
    "s3_redirect",
    "listen",
    "workers",
    "log_level",
    "tls_cert",
    "tls_key",
    "tls_self_signed",
    "auth_service",
    "trust_proxy",
    "refresh_tokens",
    "gc_interval",
    "gc_grace",
    "gc_untagged",
    "webhook_urls",
    "webhook_secret",
    "max_connections",
    "client_timeout",
    "ui",
    "default_upstream",
}


def open_registry(settings: Settings) -> Registry:
    """The registry's parts for an admin command, its database migrated first as `berth serve` would."""
    from registry.datadir import Tightening, make_database_private
    from registry.wiring import Registry

    private = Tightening()
    make_database_private(settings.effective_database_url, private)
    for line in private.changed:
        click.echo(f"made private: {line}", err=True)
    return Registry(settings, migrate=True)


def duration(text: str) -> timedelta:
    """A duration argument (`30d`, `12h`), as a usage error when malformed."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
