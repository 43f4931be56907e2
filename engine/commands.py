"""The engine's `berth` commands: run, ps, logs, stop, kill, rm, exec, rmi, container inspect.

A front door: each command turns its arguments into calls on the engine's services
(`engine/service/`) and their results into output; the rules and the state are theirs.
Only click is imported at module level; every command imports the engine lazily, and
the helpers they share (and `run`'s body) are click-free in `front.py`, which the hot
commands' fast path (`fast.py`) calls without loading this module at all. Exit codes follow docker's:
125 when berth itself fails, 126 when the command cannot be run, 127 when it is not
found, otherwise the container's own exit code.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import suppress
from typing import Any

import click

from engine.front import fail
from engine.front import handled as _handled
from engine.front import require_root as _require_root
from engine.front import stores as _stores


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
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (this terminal's; with -d, an attach's).")
@click.option("-t", "--tty", is_flag=True, help="Give the container a pseudo-terminal (relayed to this one).")
@click.option(
    "--security-opt",
    multiple=True,
    metavar="seccomp=unconfined|FILE",
    help="No seccomp filter, or one from a profile in docker's JSON format (default: docker's profile).",
)
@click.option("-q", "--quiet", is_flag=True, help="No pull progress.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(**params: Any) -> None:
    """Run COMMAND in a new container from IMAGE (pulled first if missing).

    Without -i the container reads /dev/null, as docker's does. With -t it gets a pseudo-terminal
    of its own, as docker's does: in the foreground this terminal (stdin must be one) is put in raw
    mode and relayed to it, its size followed; detached, the engine API's attach reaches it.
    """
    from engine.front import run as run_container

    run_container(**params)


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@_handled
def ps(show_all: bool, quiet: bool) -> None:
    """List containers."""
    from engine.service.listing import created_ago
    from engine.service.ports import describe as describe_ports

    _, containers = _stores()
    rows = containers.list(running_only=not show_all)
    published = _published()
    if quiet:
        for c in rows:
            click.echo(c.id[:12])
        return
    fmt = "{:<12}   {:<32} {:<24} {:<20} {:<26} {:<30} {}"
    click.echo(fmt.format("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"))
    for c in rows:
        image = c.spec.image.removeprefix("docker.io/library/").removeprefix("docker.io/")
        ports = describe_ports(published.get(c.id, []), c.spec.exposed)
        command = _clip(f'"{" ".join(c.spec.args)}"', 24)
        row = (c.id[:12], _clip(image, 32), command, created_ago(c), c.describe_status(), ports, c.name)
        click.echo(fmt.format(*row))


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
@click.option("-t", "--timestamps", is_flag=True, help="Show each line's time (RFC 3339, UTC).")
@click.option("--since", help="Only output after this time: unix seconds, RFC 3339, or a duration ago (10m).")
@click.option("--until", help="Only output before this time (same forms as --since).")
@click.option("-n", "--tail", default="all", show_default=True, help="Only the last N lines.")
@click.argument("container")
@_handled
def logs(container: str, follow: bool, timestamps: bool, since: str | None, until: str | None, tail: str) -> None:
    """Print a detached container's output: its stdout to stdout, its stderr to stderr."""
    from engine.service import logs as log
    from engine.service.times import BadTime, cli_time

    if tail != "all" and (not tail.isdigit() or len(tail) > 9):
        fail(f"invalid --tail {tail[:40]!r}: a number of lines, or all")
    try:
        bounds = [cli_time(text) if text else None for text in (since, until)]
    except BadTime as exc:
        fail(f"invalid --since/--until: {exc}")
    _, containers = _stores()
    outputs = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    batches = log.follow(
        containers.get(container),
        streams={1, 2},
        keep_following=follow,
        since_ns=bounds[0],
        until_ns=bounds[1],
        tail=None if tail == "all" else int(tail),
    )
    for batch in batches:
        for record in batch:
            out = outputs[record.stream]
            if timestamps:
                out.write(record.timestamp())
            out.write(record.data)
        for out in outputs.values():
            out.flush()


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
@click.option("-v", "--volumes", is_flag=True, help="Remove their anonymous volumes too.")
@click.argument("names", nargs=-1, required=True)
@_handled
def rm(names: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove containers."""
    _require_root("berth rm")
    from engine.service.lifecycle import remove

    _, containers = _stores()
    for name in names:
        remove(containers, containers.get(name), force, volumes)
        click.echo(name)


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Give the process this terminal's stdin.")
@click.option("-t", "--tty", is_flag=True, help="Give the process a terminal of its own, relayed to this one.")
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
    tty: bool,
) -> None:
    """Run COMMAND inside a running container."""
    _require_root("berth exec")
    if tty and interactive and not sys.stdin.isatty():
        raise click.ClickException("the input device is not a TTY")
    from engine.service.lifecycle import exec_in

    _, containers = _stores()
    target = containers.get(container)
    if tty:
        code = _exec_on_terminal(target, list(command), env=list(env), user=user, workdir=workdir, typed=interactive)
    else:
        code = exec_in(target, list(command), env=list(env), user=user, workdir=workdir, interactive=interactive)
    sys.exit(code)


def _exec_on_terminal(container: Any, args: list[str], *, typed: bool, **options: Any) -> int:
    """`exec -t`: the process gets a pty inside the container (as the API's exec -it), relayed here by a
    thread while the main thread waits for it (and relays signals, which only it may set up); this
    terminal is raw meanwhile, so ^C and the like are the process's to read, and follows its size."""
    import signal
    import socket
    import termios
    import threading
    import tty as terminal

    from engine.runtime import console
    from engine.service.lifecycle import exec_in

    ours, theirs = (s.detach() for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM))
    stop_read, stop_write = os.pipe2(os.O_CLOEXEC)
    local = sys.stdin.isatty()
    masters: list[int] = []

    def follow_size(_signum: int = 0, _frame: object = None) -> None:
        if masters and local:
            with suppress(OSError):
                console.set_size(masters[0], *console.get_size(0))

    def relay() -> None:
        master = console.receive_fd(ours)
        os.close(ours)
        if master is None:  # it failed before it had a terminal: why is on stderr
            return
        masters.append(master)
        follow_size()
        console.relay_local(master, stop_read, 0 if typed else -1, 1)

    size = list(console.get_size(0)) if local else None
    saved = termios.tcgetattr(0) if local else None
    if local:
        terminal.setraw(0, termios.TCSANOW)
    signal.signal(signal.SIGWINCH, follow_size)
    relaying = threading.Thread(target=relay, daemon=True)
    relaying.start()
    try:
        return exec_in(container, args, console_fd=theirs, console_size=size, **options)
    finally:
        os.write(stop_write, b"x")
        relaying.join()
        for fd in (*masters, stop_read, stop_write):
            os.close(fd)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


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
