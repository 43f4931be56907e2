"""The container lifecycle as explicit steps: build a spec from an image, then run, stop, kill, remove.

The CLI is a thin layer over these functions; each takes the stores it works on so
that tests and other callers use exactly what `berth` uses. Signals are sent through
pidfds opened and then checked against the recorded start time, so a reused pid never
receives a signal meant for a container that has already gone.
"""

from __future__ import annotations

import os
import select
import signal
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import cgroups
from engine.cgroups import Limits
from engine.container import Container, ContainerStore, Mount, Spec, Status, alive
from engine.store import Image

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY = 6 << 20


class UsageError(ValueError):
    """Options that cannot describe a container (exit code 125, as docker's)."""


class ContainerStateError(RuntimeError):
    """The operation does not fit the container's state (e.g. rm of a running one)."""


def parse_bytes(text: str) -> int:
    """Docker's memory syntax: a number with an optional b, k, m or g suffix."""
    value = text.strip().lower()
    if len(value) > 1 and value[-1] == "b" and value[-2] in "kmg":
        value = value[:-1]
    unit = 1
    if value[-1:].isalpha():
        if value[-1] not in _UNITS:
            raise UsageError(f"invalid size: {text!r}")
        unit, value = _UNITS[value[-1]], value[:-1]
    try:
        amount = int(float(value) * unit)
    except ValueError:
        raise UsageError(f"invalid size: {text!r}") from None
    if amount <= 0:
        raise UsageError(f"invalid size: {text!r}")
    return amount


def parse_volume(text: str) -> Mount:
    """HOST:CONTAINER[:ro|rw]; the host side must be an absolute path (created if missing)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise UsageError(f"invalid volume {text!r}: expected HOST:CONTAINER[:ro]")
    host, target = parts[0], parts[1]
    if not host.startswith("/") or not target.startswith("/"):
        raise UsageError(f"invalid volume {text!r}: both paths must be absolute (named volumes are not supported)")
    if not os.path.exists(host):
        os.makedirs(host)
    return Mount(os.path.realpath(host), os.path.normpath(target), len(parts) == 3 and parts[2] == "ro")


def read_env_file(path: str) -> list[str]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def merge_env(*layers: list[str]) -> list[str]:
    """Later KEY=VALUE entries win; a bare KEY takes the value from berth's own environment."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            key, eq, value = item.partition("=")
            if not eq:
                if key not in os.environ:
                    continue
                value = os.environ[key]
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


@dataclass
class RunOptions:
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    env_files: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    volumes: list[str] = field(default_factory=list)
    network: str = "none"
    memory: str | None = None
    pids_limit: int | None = None
    cpus: float | None = None
    read_only: bool = False
    init: bool = False
    auto_remove: bool = False


def build_spec(image: Image, options: RunOptions) -> Spec:
    """The container's spec: the image config's defaults overridden by the options, as docker does."""
    config = image.runtime
    if options.entrypoint is not None:
        entrypoint = [options.entrypoint] if options.entrypoint else []
        cmd = list(options.command)
    else:
        entrypoint = list(config.get("Entrypoint") or [])
        cmd = list(options.command) or list(config.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise UsageError(f"no command specified: image {image.name} has no Entrypoint or Cmd")
    workdir = options.workdir or config.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is not an absolute path")
    file_env = [item for path in options.env_files for item in read_env_file(path)]
    if options.memory is not None and parse_bytes(options.memory) < MIN_MEMORY:
        raise UsageError("minimum memory limit allowed is 6MB")
    if options.cpus is not None and options.cpus <= 0:
        raise UsageError("--cpus must be positive")
    if options.pids_limit is not None and options.pids_limit <= 0:
        raise UsageError("--pids-limit must be positive")
    limits = Limits(
        memory=parse_bytes(options.memory) if options.memory else None,
        pids=options.pids_limit,
        cpus=options.cpus,
    )
    return Spec(
        image=image.name,
        image_id=image.id,
        layers=list(image.layers),
        args=args,
        env=merge_env(list(config.get("Env") or []), file_env, options.env),
        cwd=os.path.normpath(workdir),
        user=options.user if options.user is not None else (config.get("User") or ""),
        hostname=options.hostname or "",
        mounts=[parse_volume(v) for v in options.volumes],
        network=options.network,
        read_only=options.read_only,
        init=options.init,
        limits=limits,
        auto_remove=options.auto_remove,
    )


def create(containers: ContainerStore, spec: Spec, name: str | None) -> Container:
    """A new container in the created state; its hostname defaults as docker's does.

    That is the short id, or on the host network the host's own name.
    """
    container = containers.create(spec, name)
    if not spec.hostname:
        spec.hostname = os.uname().nodename if spec.network == "host" else container.id[:12]
        container.save()
    return container


def _pidfd(pid: int | None, start: int | None) -> int | None:
    """A pidfd for the process, or None if it is gone (or the pid now names another process)."""
    if not pid:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if not alive(pid, start):
        os.close(fd)
        return None
    return fd


def _wait_fd(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def send_signal(container: Container, sig: int) -> bool:
    """Signal the container's PID 1; False if it is not running."""
    fd = _pidfd(container.pid, container.pid_start) if container.status is Status.RUNNING else None
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


def wait_stopped(container: Container, timeout: float) -> Container:
    """Wait for PID 1, then its supervisor (which writes the exit code), to be gone."""
    deadline = time.monotonic() + timeout
    for pid, start in ((container.pid, container.pid_start), (container.supervisor_pid, container.supervisor_start)):
        fd = _pidfd(pid, start)
        if fd is not None:
            try:
                _wait_fd(fd, deadline - time.monotonic())
            finally:
                os.close(fd)
    with suppress(FileNotFoundError):
        return Container.load(container.directory)
    return container


def stop(container: Container, timeout: float) -> Container:
    """SIGTERM, then SIGKILL after `timeout` seconds, as `docker stop` does."""
    if not container.is_running():
        return container
    send_signal(container, signal.SIGTERM)
    fd = _pidfd(container.pid, container.pid_start)
    if fd is not None:
        try:
            if not _wait_fd(fd, timeout):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    return wait_stopped(container, 10)


def remove(containers: ContainerStore, container: Container, force: bool) -> None:
    if container.is_running() or container.supervised():
        if not force:
            raise ContainerStateError(
                f"cannot remove container {container.name}: it is running (stop it first, or use rm -f)"
            )
        send_signal(container, signal.SIGKILL)
        container = wait_stopped(container, 10)
    if container.cgroup:
        with suppress(OSError):
            cgroups.from_json(container.cgroup).destroy()
    containers.delete(container)


def parse_signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"invalid signal: {text}") from None


def follow_log(container: Container, out: Any, follow: bool) -> None:
    """Copy the log to `out` (a binary stream); with `follow`, until the container stops."""
    path: Path = container.log_file
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        while True:
            chunk = f.read(1 << 16)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow:
                return
            try:
                current = Container.load(container.directory)
            except FileNotFoundError:
                return
            if current.status is Status.STOPPED and not current.supervised():
                chunk = f.read()
                out.write(chunk)
                out.flush()
                return
            time.sleep(0.05)


def inspect(container: Container) -> dict[str, Any]:
    """Docker-shaped inspect output, so scripts written for `docker inspect` mostly work."""
    spec = container.spec

    def iso(ts: float | None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "0001-01-01T00:00:00Z"

    return {
        "Id": container.id,
        "Name": "/" + container.name,
        "Created": iso(container.created),
        "Image": spec.image_id,
        "State": {
            "Status": {"created": "created", "running": "running", "stopped": "exited"}[container.status.value],
            "Running": container.status is Status.RUNNING,
            "Pid": container.pid if container.status is Status.RUNNING else 0,
            "ExitCode": container.exit_code or 0,
            "OOMKilled": container.oom_killed,
            "Error": container.error,
            "StartedAt": iso(container.started_at),
            "FinishedAt": iso(container.finished_at),
        },
        "Config": {
            "Image": spec.image,
            "Cmd": spec.args,
            "Env": spec.env,
            "WorkingDir": spec.cwd,
            "User": spec.user,
            "Hostname": spec.hostname,
        },
        "HostConfig": {
            "Memory": spec.limits.memory or 0,
            "PidsLimit": spec.limits.pids,
            "NanoCpus": int((spec.limits.cpus or 0) * 1e9),
            "ReadonlyRootfs": spec.read_only,
            "NetworkMode": spec.network,
            "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}" for m in spec.mounts],
            "AutoRemove": spec.auto_remove,
            "Init": spec.init,
        },
        "Mounts": [{"Source": m.source, "Destination": m.target, "RW": not m.readonly} for m in spec.mounts],
    }
