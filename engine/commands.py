"""The engine's `berth` commands: run, ps, logs, stop, kill, rm, exec, rmi, container inspect.

A front door: each command turns its arguments into calls on the engine's services
(`engine/service/`) and their results into output; the rules and the state are theirs.
Only click is imported at module level; every command imports the engine lazily so
that the root group (and so `berth run`) starts fast. Exit codes follow docker's:
125 when berth itself fails, 126 when the command cannot be run, 127 when it is not
found, otherwise the container's own exit code.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
ENGINE_FAILED = 125


def fail(message: str, code: int = ENGINE_FAILED) -> None:
    click.echo(f"berth: {message}", err=True)
    sys.exit(code)


def _require_root(what: str) -> None:
    from engine.service.lifecycle import require_host

    require_host(what)


def _describe(exc: Exception) -> tuple[int, str] | None:
    """The exit code and message for an engine failure; None for a bug (let it raise).

    The exception classes are imported only once something failed, keeping `run` fast.
    """
    from client.errors import ClientError
    from engine.runtime.cgroups import CgroupUnavailable
    from engine.runtime.init import StartError
    from engine.runtime.seccomp import FilterError
    from engine.service.containers import ContainerNotFound, ContainerStateError, NameInUse
    from engine.service.images import ImageNotFound, PlatformMismatch
    from engine.service.lifecycle import HostUnsupported
    from engine.service.names import BadName
    from engine.service.networks import NetworkError, NetworkNotFound
    from engine.service.ports import PortError
    from engine.service.seccomp import ProfileError
    from engine.service.specs import UsageError
    from engine.service.unpack import DigestMismatch, UnsafeLayer

    if isinstance(exc, StartError):
        return exc.code, exc.message
    if isinstance(exc, ContainerNotFound | ContainerStateError | NetworkNotFound):
        return 1, str(exc).strip("'\"")
    if isinstance(
        exc,
        ImageNotFound
        | PlatformMismatch
        | UsageError
        | HostUnsupported
        | ProfileError
        | FilterError
        | NameInUse
        | CgroupUnavailable
        | UnsafeLayer
        | DigestMismatch
        | ClientError
        | NetworkError
        | PortError
        | BadName,
    ):
        return ENGINE_FAILED, str(exc).strip("'\"")
    if isinstance(exc, PermissionError):
        return ENGINE_FAILED, f"permission denied: {exc}"
    return None


def _handled(func: F) -> F:
    """Turn the engine's exceptions into one-line messages and docker's exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            described = _describe(exc)
            if described is None:
                raise
            fail(described[1], described[0])

    return wrapper  # type: ignore[return-value]


def _stores() -> tuple[Any, Any]:
    from engine.service.lifecycle import stores

    return stores()


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits.")
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container ID.")
@click.option("--name", help="A name for the container.")
@click.option("-e", "--env", multiple=True, help="Set KEY=VALUE (or pass KEY through).")
@click.option("--env-file", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP], names resolved in the image.")
@click.option("--hostname", help="Container hostname (default: the short ID).")
@click.option("--entrypoint", help="Override the image's entrypoint.")
@click.option("-v", "--volume", multiple=True, help="Bind mount HOST:CONTAINER[:ro].")
@click.option(
    "--network", "--net", default="bridge", show_default=True, help="bridge, host, none, or a network's name."
)
@click.option("--network-alias", "aliases", multiple=True, help="Another name on a user network (repeatable).")
@click.option("--ip", help="The container's IPv4 address on a user network.")
@click.option("--dns", multiple=True, help="A nameserver for /etc/resolv.conf (repeatable).")
@click.option("--add-host", multiple=True, help="Add NAME:IP to /etc/hosts (repeatable).")
@click.option("-p", "--publish", multiple=True, help="Publish [IP:][HOST:]CONTAINER[/PROTO] (ranges allowed).")
@click.option("-P", "--publish-all", is_flag=True, help="Publish every EXPOSEd port on a free host port.")
@click.option("-m", "--memory", help="Memory limit (e.g. 64m, 1g).")
@click.option("--pids-limit", type=int, help="Maximum number of processes.")
@click.option("--cpus", type=float, help="CPU quota in cores (e.g. 0.5).")
@click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only.")
@click.option("--init", is_flag=True, help="Run a small init as PID 1 that reaps zombies and forwards signals.")
@click.option("-i", "--interactive", is_flag=True, help="Give the container this terminal's stdin.")
@click.option("-t", "--tty", is_flag=True, help="Share this terminal with the container (stdin must be one).")
@click.option(
    "--security-opt",
    multiple=True,
    metavar="seccomp=unconfined|FILE",
    help="No seccomp filter, or one from a profile in docker's JSON format (default: docker's profile).",
)
@click.option("-q", "--quiet", is_flag=True, help="No pull progress.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_handled
def run(
    image: str,
    command: tuple[str, ...],
    detach: bool,
    name: str | None,
    quiet: bool,
    interactive: bool,
    tty: bool,
    **kw: Any,
) -> None:
    """Run COMMAND in a new container from IMAGE (pulled first if missing).

    Without -i the container reads /dev/null, as docker's does. With -t it shares this
    terminal (berth allocates no pseudo-terminal of its own, so stdin must be a terminal).
    """
    _require_root("berth run")
    if tty and (detach or not sys.stdin.isatty()):
        fail("the input device is not a TTY" if not detach else "-t with -d needs `attach`, which berth lacks")
    from engine.service import images as store
    from engine.service import lifecycle
    from engine.service.specs import RunOptions

    images, containers = _stores()
    try:
        resolved = images.resolve(image)
    except store.ImageNotFound:
        click.echo(f"Unable to find image '{image}' locally", err=True)
        store.pull(image, quiet=quiet)
        resolved = images.resolve(image)
    options = RunOptions(
        command=list(command),
        entrypoint=kw["entrypoint"],
        env=list(kw["env"]),
        env_files=list(kw["env_file"]),
        workdir=kw["workdir"],
        user=kw["user"],
        hostname=kw["hostname"],
        volumes=list(kw["volume"]),
        network=kw["network"],
        aliases=list(kw["aliases"]),
        ip=kw["ip"],
        dns=list(kw["dns"]),
        add_hosts=list(kw["add_host"]),
        publish=list(kw["publish"]),
        publish_all=kw["publish_all"],
        memory=kw["memory"],
        pids_limit=kw["pids_limit"],
        cpus=kw["cpus"],
        read_only=kw["read_only"],
        init=kw["init"],
        auto_remove=kw["auto_remove"],
        security_opt=list(kw["security_opt"]),
    )
    if kw["network"] == "host" and (kw["publish"] or kw["publish_all"]):
        click.echo("WARNING: Published ports are discarded when using host network mode", err=True)
    container = lifecycle.create(images, containers, resolved, options, name)
    if detach:
        lifecycle.start_detached(images, container)
        click.echo(container.id)
        return
    stdio = None if interactive or tty else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), 1, 2)
    code = lifecycle.start(images, container, stdio=stdio, forward_signals=True)
    if code == 137 and container.oom_killed:
        click.echo(f"berth: container {container.name} was killed: out of memory (OOMKilled)", err=True)
    # Nothing is left to clean up: skip the interpreter's teardown, a few ms on every run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@_handled
def ps(show_all: bool, quiet: bool) -> None:
    """List containers."""
    from engine.service.ports import describe as describe_ports

    _, containers = _stores()
    rows = containers.list(running_only=not show_all)
    published = _published()
    if quiet:
        for c in rows:
            click.echo(c.id[:12])
        return
    fmt = "{:<12}   {:<32} {:<24} {:<26} {:<30} {}"
    click.echo(fmt.format("CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "PORTS", "NAMES"))
    for c in rows:
        image = c.spec.image.removeprefix("docker.io/library/").removeprefix("docker.io/")
        ports = describe_ports(published.get(c.id, []))
        command = _clip(f'"{" ".join(c.spec.args)}"', 24)
        click.echo(fmt.format(c.id[:12], _clip(image, 32), command, c.describe_status(), ports, c.name))


def _published() -> dict[str, list[Any]]:
    from engine.service.listing import published

    return published()


@click.command()
@click.argument("name")
@click.argument("private", required=False)
@_handled
def port(name: str, private: str | None) -> None:
    """List a container's published ports (or the host side of PRIVATE, e.g. 80/tcp)."""
    _, containers = _stores()
    target = containers.get(name)
    bindings = _published().get(target.id, [])
    if private is not None:
        number, _, proto = private.partition("/")
        bindings = [b for b in bindings if str(b.container_port) == number and b.proto == (proto or "tcp")]
        if not bindings:
            fail(f"no public port '{private}' published for {name}", 1)
        for b in bindings:
            click.echo(f"{b.host_ip or '0.0.0.0'}:{b.host_port}")
        return
    for b in bindings:
        click.echo(f"{b.container_port}/{b.proto} -> {b.host_ip or '0.0.0.0'}:{b.host_port}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container stops.")
@click.argument("container")
@_handled
def logs(container: str, follow: bool) -> None:
    """Print a detached container's output."""
    from engine.service.lifecycle import follow_log

    _, containers = _stores()
    follow_log(containers.get(container), sys.stdout.buffer, follow)


@click.command()
@click.option(
    "-t",
    "--time",
    "timeout",
    type=float,
    default=10,
    show_default=True,
    help="Seconds to wait for exit after SIGTERM before SIGKILL.",
)
@click.argument("names", nargs=-1, required=True)
@_handled
def stop(names: tuple[str, ...], timeout: float) -> None:
    """Stop running containers (SIGTERM, then SIGKILL)."""
    _require_root("berth stop")
    from engine.service.lifecycle import stop as stop_container

    _, containers = _stores()
    for name in names:
        stop_container(containers.get(name), timeout)
        click.echo(name)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True)
@click.argument("names", nargs=-1, required=True)
@_handled
def kill(names: tuple[str, ...], sig: str) -> None:
    """Send a signal to containers' PID 1."""
    _require_root("berth kill")
    from engine.service.lifecycle import kill as kill_container
    from engine.service.specs import parse_signal

    _, containers = _stores()
    number = parse_signal(sig)
    for name in names:
        kill_container(containers.get(name), number)
        click.echo(name)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill running containers first.")
@click.argument("names", nargs=-1, required=True)
@_handled
def rm(names: tuple[str, ...], force: bool) -> None:
    """Remove containers."""
    _require_root("berth rm")
    from engine.service.lifecycle import remove

    _, containers = _stores()
    for name in names:
        remove(containers, containers.get(name), force)
        click.echo(name)


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Give the process this terminal's stdin.")
@click.option("-e", "--env", multiple=True)
@click.option("-u", "--user")
@click.option("-w", "--workdir")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@_handled
def exec_(
    container: str,
    command: tuple[str, ...],
    env: tuple[str, ...],
    user: str | None,
    workdir: str | None,
    interactive: bool,
) -> None:
    """Run COMMAND inside a running container."""
    _require_root("berth exec")
    from engine.service.lifecycle import exec_in

    _, containers = _stores()
    code = exec_in(
        containers.get(container), list(command), env=list(env), user=user, workdir=workdir, interactive=interactive
    )
    sys.exit(code)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove even if containers use the image.")
@click.argument("images", nargs=-1, required=True)
@_handled
def rmi(images: tuple[str, ...], force: bool) -> None:
    """Remove images from the local store (and unpacked layers nothing uses any more)."""
    from engine.service.lifecycle import remove_images

    store, containers = _stores()
    for ref in remove_images(store, containers, list(images), force):
        click.echo(f"Untagged: {ref}")


@click.group()
def container() -> None:
    """Manage containers."""


@container.command("inspect")
@click.argument("names", nargs=-1, required=True)
@_handled
def inspect(names: tuple[str, ...]) -> None:
    """Show containers' configuration and state as JSON (docker's shape)."""
    from engine.service.lifecycle import inspect as describe

    _, containers = _stores()
    click.echo(json.dumps([describe(containers.get(n)) for n in names], indent=2))


container.add_command(ps, "ls")


def _all() -> list[click.Command]:
    from engine.network_commands import COMMANDS as NETWORK

    return [run, ps, logs, stop, kill, rm, exec_, rmi, container, port, *NETWORK]


COMMANDS: list[click.Command] = _all()
