"""What the engine's commands share without click: failures as docker's exit codes, and `run`'s body.

The click commands (`commands.py`) and the hand-parsed fast path of the hot commands
(`fast.py`) both call these, so `berth run` behaves the same whichever parsed it, and the
fast path never imports click (about 15 ms of a run's start). Output goes straight to
sys.stdout/sys.stderr, looked up at each call (click's test runner swaps them).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
ENGINE_FAILED = 125


def say(message: str, err: bool = False) -> None:
    """One line to stdout (or stderr), flushed, as click.echo writes it."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{message}\n")
    stream.flush()


def fail(message: str, code: int = ENGINE_FAILED) -> NoReturn:
    say(f"berth: {message}", err=True)
    sys.exit(code)


def require_root(what: str) -> None:
    from engine.service.lifecycle import require_host

    require_host(what)


def describe(exc: Exception) -> tuple[int, str] | None:
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


def handled(func: F) -> F:
    """Turn the engine's exceptions into one-line messages and docker's exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            described = describe(exc)
            if described is None:
                raise
            fail(described[1], described[0])

    return wrapper  # type: ignore[return-value]


def stores() -> tuple[Any, Any]:
    from engine.service.lifecycle import stores as open_stores

    return open_stores()


@handled
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
    """`berth run` once its arguments are parsed (the parameters are the click command's)."""
    require_root("berth run")
    if tty and not detach and not sys.stdin.isatty():
        fail("the input device is not a TTY")
    from engine.service import images as store
    from engine.service import lifecycle
    from engine.service.specs import RunOptions

    images, containers = stores()
    try:
        resolved = images.resolve(image)
    except store.ImageNotFound:
        say(f"Unable to find image '{image}' locally", err=True)
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
        tty=tty,
        open_stdin=detach and interactive,
        console_size=_terminal_size() if tty and not detach else None,
    )
    if kw["network"] == "host" and (kw["publish"] or kw["publish_all"]):
        say("WARNING: Published ports are discarded when using host network mode", err=True)
    container = lifecycle.create(images, containers, resolved, options, name)
    if detach:
        lifecycle.start_detached(images, container)
        say(container.id)
        return
    if tty:
        code = _run_on_terminal(images, container, interactive)
    else:
        stdio = None if interactive else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), 1, 2)
        code = lifecycle.start(images, container, stdio=stdio, forward_signals=True, log_output=True)
    if code == 137 and container.oom_killed:
        say(f"berth: container {container.name} was killed: out of memory (OOMKilled)", err=True)
    # Nothing is left to clean up: skip the interpreter's teardown, a few ms on every run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _terminal_size() -> tuple[int, int]:
    columns, rows = os.get_terminal_size(sys.stdin.fileno())
    return rows, columns


def _run_on_terminal(images: Any, container: Any, interactive: bool) -> int:
    """The container's pty relayed to this terminal, in raw mode meanwhile (^C is the container's to read)."""
    import termios
    import tty as terminal

    from engine.service import lifecycle

    saved = termios.tcgetattr(0)
    terminal.setraw(0, termios.TCSANOW)  # what was typed already stays, for the container
    try:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return lifecycle.start(
            images,
            container,
            stdio=(null, 1, 2),
            forward_signals=True,
            terminal=0,
            terminal_input=interactive,
            log_output=True,
        )
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
