"""A container's configuration and state, and the explicit state machine between states.

As in runc's libcontainer, state is a small JSON document in the container's directory,
replaced atomically (temporary file + rename) so that readers never see half a write,
and never trusted blindly: a "running" container names its process by pid *and* start
time, and is re-checked against /proc whenever it is read, because pids are reused and
a supervisor can die without writing its last word.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from engine.runtime.cgroups import Limits
from engine.runtime.process import alive
from engine.runtime.rootfs import Mount


class Status(Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.RUNNING, Status.STOPPED}),
    Status.RUNNING: frozenset({Status.STOPPED}),
    Status.STOPPED: frozenset({Status.CREATED}),  # `docker start`/`restart` of an exited container
}

LOST_EXIT_CODE = 255


class InvalidTransition(RuntimeError):
    """A lifecycle step asked for a state change the table does not allow."""


class ContainerNotFound(LookupError):
    pass


class ContainerStateError(RuntimeError):
    """The operation does not fit the container's state (e.g. rm of a running one)."""


class NameInUse(ValueError):
    pass


@dataclass
class Connection:
    """A network the container was connected to after its creation (`network connect`): eth1 and on."""

    network: str
    aliases: list[str] = field(default_factory=list)
    ip: str | None = None


@dataclass
class Spec:
    """Everything needed to start the container, fixed at creation (like an OCI bundle's config)."""

    image: str
    image_id: str
    layers: list[str]
    args: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    mounts: list[Mount] = field(default_factory=list)
    network: str = "none"
    read_only: bool = False
    init: bool = False
    limits: Limits = field(default_factory=Limits)
    auto_remove: bool = False
    aliases: list[str] = field(default_factory=list)
    ip: str | None = None
    dns: list[str] = field(default_factory=list)
    extra_hosts: list[list[str]] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    restart: str = "no"
    tty: bool = False  # PID 1 gets a pty of its own, served by its supervisor's relay
    open_stdin: bool = False  # PID 1 reads a pipe fed by whoever attaches (docker's -i)
    stdin_once: bool = False  # that pipe closes when the first attached input ends
    console_size: list[int] = field(default_factory=list)  # the TTY's first [rows, columns], when known
    anonymous: list[str] = field(default_factory=list)  # its anonymous volumes: `rm -v` and `--rm` remove them

    seccomp: str = ""  # "" docker's default profile, "unconfined", or the profile file given
    connected: list[Connection] = field(default_factory=list)  # joined at every start after `network`, in order
    exposed: list[str] = field(default_factory=list)  # PORT/PROTO the image and --expose expose, for listings

    @property
    def bridged(self) -> bool:
        """On a bridge network (the default `bridge` or a user network), not `none` or `host`."""
        return self.network not in ("none", "host")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Spec:
        doc = dict(doc)
        doc["mounts"] = [Mount(**m) for m in doc.get("mounts", [])]
        doc["limits"] = Limits(**doc.get("limits", {}))
        doc["connected"] = [Connection(**c) for c in doc.get("connected", [])]
        return cls(**doc)


@dataclass
class Container:
    """A container's record in state.json: its spec, where it is in the state machine, and who supervises it."""

    id: str
    name: str
    spec: Spec
    directory: Path
    created: float = field(default_factory=time.time)
    status: Status = Status.CREATED
    pid: int | None = None
    pid_start: int | None = None
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    cgroup: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "container.log"

    def record(self, action: str, **extra: object) -> None:
        """Append a container event to the engine's journal (`service/events.py`), with its labels, image
        and name as docker's events carry them."""
        from engine.service.events import Journal
        from engine.service.images import familiar

        image = familiar(self.spec.image)
        attributes: dict[str, object] = {**self.spec.labels, "image": image, "name": self.name, **extra}
        Journal.of_root(self.directory.parent.parent).record("container", action, self.id, attributes)

    def transition(self, new: Status, **changes: Any) -> None:
        """Move to `new` (checked against TRANSITIONS), apply `changes`, and persist."""
        if new not in TRANSITIONS[self.status]:
            raise InvalidTransition(f"container {self.id[:12]}: {self.status.value} -> {new.value}")
        current = self._on_disk()
        self._take_shared(current)
        self._take_networks(current)
        self.status = new
        for key, value in changes.items():
            setattr(self, key, value)
        self.save()

    def _on_disk(self) -> dict[str, Any]:
        """state.json as another process may have rewritten it ({} when unreadable): read once per write."""
        try:
            with open(self.state_file) as f:
                current = json.load(f)
        except (OSError, ValueError):
            return {}
        return current if isinstance(current, dict) else {}

    def _take_shared(self, current: dict[str, Any]) -> None:
        """Take the fields other processes own (the name: rename; restart_count: the restart keeper) from
        disk, so that a supervisor recording a transition from its own copy does not undo them."""
        self.name = current.get("name", self.name)
        self.restart_count = current.get("restart_count", self.restart_count)

    def _take_networks(self, current: dict[str, Any]) -> None:
        """Take the spec's networks from disk: `network connect/disconnect` change them from another process
        while this one (a supervisor) holds its own copy, and only `planned_network` writes them."""
        try:
            spec = current["spec"]
            network, aliases, ip = spec["network"], spec.get("aliases", []), spec.get("ip")
            connected = [Connection(**c) for c in spec.get("connected", [])]
        except (KeyError, TypeError):
            return
        self.spec.network, self.spec.aliases, self.spec.ip, self.spec.connected = network, aliases, ip, connected

    def update(self, **changes: Any) -> None:
        self._take_networks(self._on_disk())
        for key, value in changes.items():
            setattr(self, key, value)
        self.save()

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["status"] = self.status.value
        doc["directory"] = str(self.directory)
        return doc

    def save(self) -> None:
        """Replace state.json atomically: readers see the old or the new state, never a mix."""
        tmp = self.directory / f".state.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.to_json(), f)
            os.replace(tmp, self.state_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, directory: Path) -> Container:
        with open(directory / "state.json") as f:
            doc = json.load(f)
        doc["status"] = Status(doc["status"])
        doc["spec"] = Spec.from_json(doc["spec"])
        doc["directory"] = directory
        container = cls(**doc)
        container.refresh()
        return container

    def is_running(self) -> bool:
        return self.status is Status.RUNNING and alive(self.pid, self.pid_start)

    def supervised(self) -> bool:
        return alive(self.supervisor_pid, self.supervisor_start)

    def refresh(self) -> None:
        """Reconcile recorded state with the live processes.

        A running (or starting) container whose process and supervisor are both gone was lost
        (the supervisor was killed before recording the exit): it is stopped, exit code unknown.
        """
        if self.status is Status.STOPPED or self.supervised():
            return
        if self.status is Status.CREATED and self.supervisor_pid is None:
            return  # never started (`docker create`): it stays created until someone starts it
        if self.status is Status.RUNNING and alive(self.pid, self.pid_start):
            return
        if self._stopped_meanwhile():
            return
        was_running = self.status is Status.RUNNING
        self.status = Status.STOPPED
        self.exit_code = LOST_EXIT_CODE if self.exit_code is None else self.exit_code
        self.error = self.error or "the container's supervisor exited without recording its exit"
        self.finished_at = self.finished_at or time.time()
        if was_running and self._first_to_notice_loss():
            self.record("die", exitCode=self.exit_code)

    def _stopped_meanwhile(self) -> bool:
        """The supervisor may have recorded the exit and gone between our read of state.json and our look
        at its process: then the exit on disk is the truth, not a loss (no `die` of 255 beside the real one)."""
        try:
            with open(self.state_file) as f:
                current = json.load(f)
        except (OSError, ValueError):
            return False
        if current.get("status") != Status.STOPPED.value:
            return False
        self.status = Status.STOPPED
        for key in ("exit_code", "oom_killed", "finished_at", "error", "restart_count"):
            setattr(self, key, current.get(key, getattr(self, key)))
        return True

    def _first_to_notice_loss(self) -> bool:
        """True for exactly one reader of this run's loss: the `die` its supervisor could not record is
        recorded once, however many readers notice at the same time. The claim is a file named after the
        lost supervisor (pid and start time), made with O_EXCL, so a later run that is lost again
        claims anew; a reader that cannot write here (or a container being removed) claims nothing."""
        claim = self.directory / f".lost.{self.supervisor_pid}.{self.supervisor_start}"
        try:
            os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError:
            return False
        return True

    def describe_status(self) -> str:
        from engine.service.times import human_duration

        now = time.time()
        if self.status is Status.RUNNING:
            return f"Up {human_duration(now - (self.started_at or now))}"
        if self.status is Status.STOPPED:
            return f"Exited ({self.exit_code}) {human_duration(now - (self.finished_at or now))} ago"
        return "Created"


class ContainerStore:
    """The containers/ directory: one subdirectory per container, named by its full id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, spec: Spec, name: str | None) -> Container:
        self.root.mkdir(parents=True, exist_ok=True)
        container_id = os.urandom(32).hex()
        with open(self.root / ".names.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if name is None:
                name = f"berth_{container_id[:8]}"
            elif any(c.name == name for c in self.list()):
                raise NameInUse(f'the container name "{name}" is already in use')
            directory = self.root / container_id
            directory.mkdir(mode=0o700)
            container = Container(container_id, name, spec, directory)
            container.save()
        container.record("create")
        return container

    def list(self, *, running_only: bool = False) -> list[Container]:
        """Newest first; `running_only` as `ps` without `-a`."""
        out = []
        for entry in self.root.iterdir() if self.root.is_dir() else []:
            if not entry.name.startswith("."):
                try:
                    out.append(Container.load(entry))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        if running_only:
            out = [c for c in out if c.status is Status.RUNNING]
        return sorted(out, key=lambda c: c.created, reverse=True)

    def get(self, key: str) -> Container:
        """By full id, name, or unique id prefix, as docker resolves them."""
        if len(key) == 64 and (self.root / key).is_dir():
            return Container.load(self.root / key)
        containers = self.list()
        for container in containers:
            if container.name == key:
                return container
        matches = [c for c in containers if c.id.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ContainerNotFound(f"container id prefix {key!r} is ambiguous")
        raise ContainerNotFound(f"no such container: {key}")

    def delete(self, container: Container) -> None:
        remove_tree(container.directory)
        container.record("destroy")

    @property
    def exits(self) -> Path:
        return self.root / ".exits"

    def record_exit(self, container_id: str, code: int) -> None:
        """Keep an auto-removed container's exit code for whoever waits on it (docker's wait?condition=removed).

        Records older than an hour are dropped here, so they never pile up.
        """
        self.exits.mkdir(exist_ok=True)
        now = time.time()
        for entry in os.scandir(self.exits):
            if now - entry.stat().st_mtime > 3600:
                with suppress(FileNotFoundError):
                    os.unlink(entry.path)
        tmp = self.exits / f".{container_id}.tmp"
        tmp.write_text(str(code))
        os.replace(tmp, self.exits / container_id)

    def take_exit(self, container_id: str) -> int | None:
        """The recorded exit code of a removed container (consumed), or None."""
        path = self.exits / container_id
        try:
            code = int(path.read_text())
        except (OSError, ValueError):
            return None
        path.unlink(missing_ok=True)
        return code

    def rename(self, container: Container, name: str) -> None:
        """Give `container` a new name, unless another container holds it (under the names lock)."""
        with open(self.root / ".names.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if any(c.name == name and c.id != container.id for c in self.list()):
                raise NameInUse(f'the container name "{name}" is already in use')
            old = container.name
            container.update(name=name)
        container.record("rename", oldName="/" + old)


def remove_tree(path: Path) -> None:
    """Delete a container directory bottom-up, never following symlinks.

    A process that was still finishing with the container (the restart pass marking it stopped, a
    supervisor's last state file) may add a file while the walk runs: the walk then goes again, a few
    times; a writer that comes after the directory is gone gets FileNotFoundError.

    Not shutil.rmtree: importing shutil (and the compression modules it pulls in) would cost
    `run --rm` a few milliseconds for every container.
    """
    for attempt in range(5):
        for dirpath, dirnames, filenames in os.walk(path, topdown=False):
            for name in filenames:
                with suppress(FileNotFoundError):  # a state file renamed into place meanwhile
                    os.unlink(os.path.join(dirpath, name))
            for name in dirnames:
                child = os.path.join(dirpath, name)
                os.unlink(child) if os.path.islink(child) else os.rmdir(child)
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == 4:
                raise
