"""Server-side commands: `serve` and `db`, all sharing `--config` and `--data-dir`.

Heavy imports stay inside the commands so the `berth` root starts fast.
"""

from __future__ import annotations

import os
import sys

import click

from registry.admin import COMMANDS as ADMIN_COMMANDS
from registry.cli_options import server_options
from registry.config import Settings


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


COMMANDS: list[click.Command] = [serve, db, *ADMIN_COMMANDS]


def main() -> None:
    """`python -m registry`: the same as `berth serve`."""
    serve.main(args=sys.argv[1:], prog_name="python -m registry")
