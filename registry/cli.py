"""Server-side commands: `serve` and `db`, all sharing `--config` and `--data-dir`.

Heavy imports stay inside the commands so the `berth` root starts fast.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from registry.config import Settings, load_settings


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
        return command(settings, **kwargs)

    return wrapper


SETTING_FLAGS = {"data_dir", "database_url", "storage", "s3_endpoint", "s3_redirect", "listen", "workers", "log_level"}


@click.command()
@click.option("--listen", help="HOST:PORT to listen on (default 127.0.0.1:5000, env BERTH_LISTEN).")
@click.option("--workers", type=int, help="Worker processes (default: one per core, env BERTH_WORKERS).")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="Log level (default info, env BERTH_LOG_LEVEL).",
)
@server_options
def serve(settings: Settings) -> None:
    """Run the registry (applies pending database migrations first)."""
    import uvicorn

    from registry.api.app import SETTINGS_ENV
    from registry.migrate import upgrade

    upgrade(settings.effective_database_url)
    os.environ[SETTINGS_ENV] = settings.to_json()
    click.echo(f"berth registry on http://{settings.listen} (data in {settings.data_dir})", err=True)
    uvicorn.run(
        "registry.api.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.effective_workers,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        http="httptools",
        loop="uvloop",
    )


@click.group()
def db() -> None:
    """Database schema: upgrade or show the current revision."""


@db.command()
@server_options
def upgrade(settings: Settings) -> None:
    """Apply pending migrations."""
    from registry.migrate import upgrade as run_upgrade

    run_upgrade(settings.effective_database_url)
    click.echo("database is up to date")


@db.command()
@server_options
def current(settings: Settings) -> None:
    """Print the database's migration revision."""
    from registry.migrate import current_revision

    click.echo(current_revision(settings.effective_database_url) or "(empty database)")


COMMANDS: list[click.Command] = [serve, db]


def main() -> None:
    """`python -m registry`: the same as `berth serve`."""
    serve.main(args=sys.argv[1:], prog_name="python -m registry")
