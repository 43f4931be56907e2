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
from registry.maintenance_cli import COMMANDS as MAINTENANCE_COMMANDS
from registry.replication_cli import COMMANDS as REPLICATION_COMMANDS
from registry.upstream_cli import COMMANDS as UPSTREAM_COMMANDS


@click.command()
@click.option("--listen", help="HOST:PORT to listen on (default 127.0.0.1:5000, env BERTH_LISTEN).")
@click.option("--workers", type=int, help="Worker processes (default: one per core, env BERTH_WORKERS).")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="Log level (default info, env BERTH_LOG_LEVEL).",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate (env BERTH_TLS_CERT).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key (env BERTH_TLS_KEY).")
@click.option(
    "--tls-self-signed",
    metavar="HOST,...",
    help="Serve TLS with a CA and certificate made once in DATA_DIR/tls for these names and IPs.",
)
@click.option("--auth-service", help="The service name in token challenges (default berth, env BERTH_AUTH_SERVICE).")
@click.option(
    "--trust-proxy",
    is_flag=False,
    flag_value="on",
    default=None,
    metavar="[ADDRESS,...]",
    help="Believe X-Forwarded-For/Proto/Host from these proxies (addresses or networks; "
    "bare: loopback only; env BERTH_TRUST_PROXY).",
)
@click.option(
    "--refresh-tokens/--no-refresh-tokens",
    default=None,
    help="Answer offline token requests with 30-day refresh tokens (default off, env BERTH_REFRESH_TOKENS).",
)
@click.option("--webhook-urls", metavar="URL,...", help="Deliver events to these URLs (env BERTH_WEBHOOK_URLS).")
@click.option("--webhook-secret", help="HMAC-SHA256 key for X-Berth-Signature (env BERTH_WEBHOOK_SECRET).")
@click.option("--gc-interval", help="Collect garbage this often, 0 to never (default 1h, env BERTH_GC_INTERVAL).")
@click.option("--gc-grace", help="Spare what was touched more recently (default 24h, env BERTH_GC_GRACE).")
@click.option("--gc-untagged/--no-gc-untagged", default=None, help="Scheduled runs remove untagged manifests too.")
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    help="Connections each worker holds at most; more are closed at once (default 1024, env BERTH_MAX_CONNECTIONS).",
)
@click.option(
    "--client-timeout",
    help="Close a connection whose request headers, or the next chunk of its body, take longer "
    "(default 60s, env BERTH_CLIENT_TIMEOUT).",
)
@click.option("--ui/--no-ui", default=None, help="Serve the web interface at / (default on, env BERTH_UI).")
@click.option(
    "--default-upstream",
    metavar="NAME",
    help="Serve repositories that match no upstream prefix and are not local from this upstream "
    "(a mirror for dockerd's registry-mirrors; env BERTH_DEFAULT_UPSTREAM).",
)
@server_options
def serve(settings: Settings) -> None:
    """Run the registry (applies pending database migrations first)."""
    import functools
    import resource
    import shutil

    import uvicorn

    from registry.api.connections import GuardedHttpToolsProtocol
    from registry.config import parse_duration
    from registry.datadir import ExposedSecrets, check_secrets_private, make_private

    # First: the database holds the token-signing key, so nothing of ours may be readable by others.
    private = make_private(settings)
    for line in private.changed:
        click.echo(f"made private: {line}", err=True)
    try:
        check_secrets_private(settings, private)
    except ExposedSecrets as exc:
        raise click.ClickException(str(exc)) from None

    try:
        timeout = parse_duration(settings.client_timeout).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--client-timeout") from None
    if timeout <= 0:
        raise click.BadParameter("must be longer than 0", param_hint="--client-timeout")
    # Every connection is a file descriptor: allow as many as the hard limit lets us.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit is more than the kernel allows
            click.echo(f"could not raise the open file limit from {soft}", err=True)

    # Every worker's metrics go here; the app factory reads the variable when it creates them.
    metrics = settings.data_dir / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)

    from registry.migrate import upgrade
    from registry.upstream_cli import check_upstream_name
    from registry.wiring import SETTINGS_ENV

    if settings.default_upstream:
        check_upstream_name(settings.default_upstream, "--default-upstream")
    cert, key = settings.tls_cert or None, settings.tls_key or None
    if bool(cert) != bool(key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if settings.tls_self_signed:
        from registry.tls import self_signed

        hosts = [h.strip() for h in settings.tls_self_signed.split(",") if h.strip()]
        ca, cert_path, key_path = self_signed(settings.data_dir / "tls", hosts)
        cert, key = str(cert_path), str(key_path)
        click.echo(f"CA certificate: {ca} (copy it to /etc/docker/certs.d/{settings.listen}/ca.crt)", err=True)
    upgrade(settings.effective_database_url)
    os.environ[SETTINGS_ENV] = settings.to_json()
    scheme = "https" if cert else "http"
    click.echo(f"berth registry on {scheme}://{settings.listen} (data in {settings.data_dir})", err=True)
    uvicorn.run(
        "registry.wiring:app_from_environment",
        ssl_certfile=cert,
        ssl_keyfile=key,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.effective_workers,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        # uvicorn calls `http` like a class; the partial carries the limits to every worker.
        http=functools.partial(  # type: ignore[arg-type]
            GuardedHttpToolsProtocol, max_connections=settings.max_connections, header_timeout=timeout
        ),
        # Forwarded headers are read by registry/auth/proxies.py, only from the trusted proxies.
        proxy_headers=False,
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


COMMANDS: list[click.Command] = [
    serve,
    db,
    *ADMIN_COMMANDS,
    *MAINTENANCE_COMMANDS,
    *UPSTREAM_COMMANDS,
    *REPLICATION_COMMANDS,
]


def main() -> None:
    """`python -m registry`: the same as `berth serve`."""
    serve.main(args=sys.argv[1:], prog_name="python -m registry")
