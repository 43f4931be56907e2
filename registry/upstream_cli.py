"""`berth upstream add/ls/rm`: the registries served, and cached, under a prefix."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from registry.cli_options import duration, open_registry, server_options
from registry.config import Settings
from registry.maintenance_cli import parse_size
from registry.oci.reference import valid_name

if TYPE_CHECKING:
    from registry.metadata.upstreams import UpstreamConfig

UPSTREAM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
ALLOW = re.compile(r"[a-z0-9._/*?\[\]-]{1,255}")
MAX_PREFIX = 128
MAX_URL = 1024
MAX_ALLOW = 100
MAX_TTL_SECONDS = 30 * 86400
MAX_CA_BYTES = 1024 * 1024
MAX_PASSWORD = 4096


def check_upstream_name(name: str, what: str = "NAME") -> str:
    if not UPSTREAM_NAME.fullmatch(name):
        raise click.BadParameter(
            f"{name[:80]!r} is not an upstream name (a-z, 0-9, '.', '_', '-'; at most 64)", param_hint=what
        )
    return name


def check_url(url: str) -> str:
    """An http(s) registry root: scheme, host and optional port, nothing else."""
    if len(url) > MAX_URL:
        raise click.BadParameter(f"the URL is longer than {MAX_URL} characters", param_hint="URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError as exc:
        raise click.BadParameter(f"{url[:200]!r} is not a URL: {exc}", param_hint="URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{url[:200]!r} is not an http:// or https:// URL with a host", param_hint="URL")
    if parts.username or parts.password:
        raise click.BadParameter("put credentials in --username/--password-stdin, not in the URL", param_hint="URL")
    if parts.path.strip("/") or parts.query or parts.fragment or any(c.isspace() for c in url):
        raise click.BadParameter(
            f"{url[:200]!r} has a path, query or fragment: give the registry's root (the API is at /v2/)",
            param_hint="URL",
        )
    return f"{parts.scheme}://{parts.netloc}"


def check_prefix(prefix: str, existing: list[UpstreamConfig]) -> str:
    """A repository-name prefix that neither contains nor lies inside another upstream's."""
    prefix = prefix.strip("/")
    if not prefix or len(prefix) > MAX_PREFIX or not valid_name(prefix) or ".." in prefix:
        raise click.BadParameter(
            f"{prefix[:200]!r} is not a repository path (lowercase components separated by '/', at most {MAX_PREFIX})",
            param_hint="--prefix",
        )
    for other in existing:
        if prefix == other.prefix or prefix.startswith(other.prefix + "/") or other.prefix.startswith(prefix + "/"):
            raise click.BadParameter(
                f"{prefix!r} overlaps the prefix {other.prefix!r} of upstream {other.name}", param_hint="--prefix"
            )
    return prefix


def read_password(username: str | None, password_stdin: bool) -> str | None:
    """Check --username and read --password-stdin's one line (credentials for another registry)."""
    if username is not None and (not username or len(username) > 255 or any(c in username for c in ":\r\n")):
        raise click.BadParameter(
            "a user name of 1 to 255 characters without ':' or line breaks", param_hint="--username"
        )
    if not password_stdin:
        return None
    password = sys.stdin.readline(MAX_PASSWORD + 1).rstrip("\n")
    if len(password) > MAX_PASSWORD:
        raise click.BadParameter(f"the password is over {MAX_PASSWORD} characters", param_hint="--password-stdin")
    return password


def read_ca(path: str | None) -> str | None:
    if path is None:
        return None
    from cryptography import x509

    with open(path, "rb") as fh:
        data = fh.read(MAX_CA_BYTES + 1)
    if len(data) > MAX_CA_BYTES:
        raise click.BadParameter(f"{path} is over {MAX_CA_BYTES} bytes", param_hint="--ca")
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise click.BadParameter(f"{path} holds no PEM certificate: {exc}", param_hint="--ca") from None
    return data.decode("ascii")


@click.group()
def upstream() -> None:
    """Registries served, and cached, under a repository prefix (a pull-through cache)."""


@upstream.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--prefix", required=True, help="Serve the upstream's repositories under PREFIX/.")
@click.option("--username", help="Log in to the upstream as this user (Basic or token flow).")
@click.option("--password-stdin", is_flag=True, help="Read the upstream password from standard input.")
@click.option("--tag-ttl", default="5m", show_default=True, help="Revalidate a cached tag at most this often.")
@click.option("--allow", "allow", multiple=True, help="Only upstream repositories matching this glob (repeatable).")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="Trust this PEM CA for the upstream's TLS.")
@click.option("--cache-max-age", help="Evict what was not pulled for this long (30d).")
@click.option("--cache-max-bytes", help="Evict the least recently pulled beyond this size (50GiB).")
@server_options
def upstream_add(
    settings: Settings,
    name: str,
    url: str,
    prefix: str,
    username: str | None,
    password_stdin: bool,
    tag_ttl: str,
    allow: tuple[str, ...],
    ca: str | None,
    cache_max_age: str | None,
    cache_max_bytes: str | None,
) -> None:
    """Serve the registry at URL under PREFIX/ (NAME names it in `ls`, `rm` and --default-upstream)."""
    check_upstream_name(name)
    url = check_url(url)
    ttl = int(duration(tag_ttl).total_seconds())
    if ttl > MAX_TTL_SECONDS:
        raise click.BadParameter(f"at most {MAX_TTL_SECONDS // 86400} days", param_hint="--tag-ttl")
    if len(allow) > MAX_ALLOW or any(not ALLOW.fullmatch(pattern) for pattern in allow):
        raise click.BadParameter(f"at most {MAX_ALLOW} globs of a-z 0-9 . _ - / * ? [ ]", param_hint="--allow")
    password = read_password(username, password_stdin)
    max_age = int(duration(cache_max_age).total_seconds()) if cache_max_age else None
    max_bytes = parse_size(cache_max_bytes) if cache_max_bytes else None
    if max_bytes is not None and not 0 < max_bytes < 2**62:
        raise click.BadParameter("a size between 1 byte and 4 EiB", param_hint="--cache-max-bytes")
    index = open_registry(settings).upstream_index
    prefix = check_prefix(prefix, index.configs())
    if local := index.repositories_under(prefix):
        raise click.BadParameter(
            f"local repositories exist under {prefix}/ ({', '.join(local)}); choose another prefix",
            param_hint="--prefix",
        )
    from registry.metadata.upstreams import UpstreamConfig

    config = UpstreamConfig(
        name=name,
        url=url,
        prefix=prefix,
        username=username,
        password=password,
        tag_ttl_seconds=ttl,
        allow=allow,
        ca_pem=read_ca(ca),
        cache_max_age_seconds=max_age,
        cache_max_bytes=max_bytes,
    )
    problem = index.add(config)
    if problem:
        raise click.ClickException(problem)
    click.echo(f"added upstream {name}: {config.prefix}/NAME is served from {url}")


@upstream.command("ls")
@server_options
def upstream_ls(settings: Settings) -> None:
    """List upstreams."""
    click.echo(f"{'NAME':16} {'PREFIX':20} {'URL':40} {'TAG TTL':>8} {'AUTH':6} ALLOW")
    for c in open_registry(settings).upstream_index.configs():
        auth = "user" if c.username else "none"
        click.echo(f"{c.name:16} {c.prefix:20} {c.url:40} {c.tag_ttl_seconds:>7}s {auth:6} {','.join(c.allow) or '*'}")


@upstream.command("rm")
@click.argument("name")
@server_options
def upstream_rm(settings: Settings, name: str) -> None:
    """Stop serving an upstream (what it cached stays, as ordinary content)."""
    if not open_registry(settings).upstream_index.remove(name):
        raise click.ClickException(f"no upstream named {name!r}")
    click.echo(f"removed upstream {name}")


@upstream.command("prune")
@server_options
def upstream_prune(settings: Settings) -> None:
    """Evict what upstream caches hold beyond --cache-max-age / --cache-max-bytes now (serve does it
    before each scheduled garbage collection); `berth gc` then reclaims the bytes."""
    for repository, digest in open_registry(settings).services.upstreams.evict():
        click.echo(f"evicted {repository}@{digest}")


COMMANDS: list[click.Command] = [upstream]
