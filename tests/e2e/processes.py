"""Running the real tools: commands with readable failures, daemons in their own process group, mounts.

Everything here is plumbing for the e2e fixtures; nothing speaks HTTP or knows image formats.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

COMMAND_TIMEOUT = 300


class CommandFailed(AssertionError):
    """A tool exited non-zero; the message carries the command line, the exit code and both streams."""


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    args = [os.fspath(a) for a in argv]
    proc = subprocess.run(
        args,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise CommandFailed(
            f"command failed with exit code {proc.returncode}: {' '.join(args)}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def require_binaries(*names: str) -> dict[str, str]:
    """Absolute paths of the named executables; skips the test (naming the Debian package) if one is missing."""
    packages = {
        "docker": "docker.io",
        "dockerd": "docker.io",
        "skopeo": "skopeo",
        "podman": "podman",
        "buildah": "buildah",
        "busybox": "busybox-static",
    }
    found: dict[str, str] = {}
    for name in names:
        path = shutil.which(name)
        if path is None:
            import pytest

            pytest.skip(f"{name} not found on PATH (Debian package {packages.get(name, name)})")
        found[name] = path
    return found


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip(f"{what} needs root (running as uid {os.geteuid()})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, alive: Callable[[], str | None]) -> None:
    """Polls `condition` until true; `alive` returns a reason string once the thing waited for has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        died = alive()
        if died is not None:
            raise RuntimeError(f"{what} exited before it was ready: {died}")
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f}s")


def start_daemon(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a long-running process in a new session (its own process group), output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def stop_daemon(proc: subprocess.Popen[bytes], *, grace: float = 30.0) -> None:
    """SIGTERM to the daemon's process group, SIGKILL to the group if it has not exited within `grace`."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_processes_using(path: Path) -> list[int]:
    """Kills processes whose command line names `path` (e.g. a containerd that dockerd started with its own
    session); they were all started by this test run inside its private temporary directory."""
    killed = []
    marker = os.fspath(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


def mounts_under(path: Path) -> list[str]:
    root = os.fspath(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = line.split()[4].encode().decode("unicode_escape")
            if mount_point == root or mount_point.startswith(root + "/"):
                found.append(mount_point)
    return found


def unmount_under(path: Path) -> None:
    """Lazily unmounts everything mounted at or below `path`, deepest first."""
    for mount_point in sorted(set(mounts_under(path)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)


def remove_tree(path: Path) -> None:
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def log_tail(log: Path, lines: int = 80) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
