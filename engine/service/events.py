"""The engine's event journal: every front door's changes, as they happen, in one append-only file.

The engine has no daemon that sees every change (`berth run` changes state by itself, a detached
supervisor records a container's exit, the API service may be down), so whoever acts appends the
event: one JSON line, written with one `write` on an `O_APPEND` descriptor, which the kernel never
interleaves with another process's append. `docker events` reads the history from the file and then
follows it, so a container created and removed within a millisecond still shows.

The journal is bounded as dockerd's ring of events is: once `events/journal` passes `LIMIT` bytes,
the writer that noticed renames it to `journal.1` (under a lock, so two writers never rotate twice)
and the next append starts a new file. A writer that opened the old file just before the rename
still appends to it, now `journal.1`, so no event is lost; at least the last `LIMIT` bytes of events
(several thousand) are always kept.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

LIMIT = 1 << 20
CURRENT = "journal"
ROTATED = "journal.1"


@dataclass
class Event:
    """One journal line: what happened (`type`, `action`) to whom (`id`), with docker's attributes."""

    type: str
    action: str
    id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_ns: int = 0

    def to_line(self) -> bytes:
        doc = {"type": self.type, "action": self.action, "id": self.id, "attributes": self.attributes}
        return json.dumps({**doc, "time": self.time_ns}, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> Event | None:
        """The event on `line`, or None for a line that is not one (a torn write after a crash)."""
        try:
            doc = json.loads(line)
            return cls(str(doc["type"]), str(doc["action"]), str(doc["id"]), dict(doc["attributes"]), int(doc["time"]))
        except (ValueError, KeyError, TypeError):
            return None


class Journal:
    """The journal under one engine root (`$BERTH_ROOT/events/`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def of_root(cls, root: Path) -> Journal:
        return cls(root / "events")

    @property
    def current(self) -> Path:
        return self.directory / CURRENT

    def record(self, kind: str, action: str, actor: str, attributes: Mapping[str, object] | None = None) -> None:
        """Append one event now. An event that cannot be written (a full disk) is dropped: the change
        it describes has happened already, and failing that change now would be worse."""
        kept = {k: str(v) for k, v in (attributes or {}).items() if v is not None}
        event = Event(kind, action, actor, kept, time.time_ns())
        data = event.to_line()
        try:
            try:
                fd = os.open(self.current, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.current, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > LIMIT:
                self._rotate()
        except OSError:
            return

    def _rotate(self) -> None:
        with open(self.directory / ".rotate.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with suppress(FileNotFoundError):
                if os.stat(self.current).st_size > LIMIT:  # not rotated by another writer meanwhile
                    os.replace(self.current, self.directory / ROTATED)

    def cursor(self) -> Cursor:
        return Cursor(self)


class Cursor:
    """Reads the journal from its oldest kept event on, then each event appended after, across rotations.

    The current file is opened before the rotated one is read: if a rotation happens in between, the
    open descriptor is the rotated file itself and the older one is skipped, so nothing is read twice.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.fd = self._open(journal.current)
        self.pending = b""
        self.backlog = b""
        rotated = self._open(journal.directory / ROTATED)
        if rotated >= 0:
            if self.fd < 0 or os.fstat(rotated).st_ino != os.fstat(self.fd).st_ino:
                self.backlog = _read_all(rotated, close=False)
            os.close(rotated)

    @staticmethod
    def _open(path: Path) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return -1

    def skip_history(self) -> None:
        """Start after the events already written (`docker events` without `since`)."""
        self.backlog = b""
        if self.fd >= 0:
            os.lseek(self.fd, 0, os.SEEK_END)

    def read(self) -> list[Event]:
        """Every complete event not read yet (the history on the first call); empty when none is new."""
        data, self.backlog = self.backlog, b""
        if self.fd < 0:
            self.fd = self._open(self.journal.current)
        if self.fd >= 0:
            data += _read_all(self.fd, close=False)
            if self._rotated():
                data += _read_all(self.fd)  # what was appended before the rename, then the new file
                self.fd = self._open(self.journal.current)
                if self.fd >= 0:
                    data += _read_all(self.fd, close=False)
        complete, _, self.pending = (self.pending + data).rpartition(b"\n")
        return [e for e in (Event.from_line(line) for line in complete.split(b"\n") if line) if e is not None]

    def _rotated(self) -> bool:
        try:
            return os.stat(self.journal.current).st_ino != os.fstat(self.fd).st_ino
        except FileNotFoundError:
            return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_all(fd: int, close: bool = True) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        if close:
            os.close(fd)
    return b"".join(chunks)


def _strip_tag(name: str) -> str:
    """A reference without its tag or digest (`busybox:1` -> `busybox`), as docker's filter compares both."""
    name = name.partition("@")[0]
    last = name.rsplit("/", 1)[-1]
    return name[: name.rfind(":")] if ":" in last else name


def wanted(event: Event, filters: dict[str, list[str]]) -> bool:
    """Docker's event filter: values of one name are alternatives; `container`, `network` and `volume`
    match an id or name prefix on any event; `image` the image of a container event or the image
    itself; every `label` must match."""

    def fuzzy(values: list[str]) -> bool:
        named = event.attributes.get("name", "")
        return any(event.id.startswith(v) or (named and named.startswith(v)) for v in values)

    image_name = event.attributes.get("name" if event.type == "image" else "image", "")
    candidates = {event.id, image_name, _strip_tag(event.id), _strip_tag(image_name)}
    checks = {
        "type": lambda values: event.type in values,
        "event": lambda values: (
            event.action in values
            or any(v in ("exec_create", "exec_start") and event.action.startswith(v) for v in values)
        ),
        "container": fuzzy,
        "network": fuzzy,
        "volume": fuzzy,
        "image": lambda values: bool(candidates & set(values)),
        "label": lambda values: all(_label(event.attributes, v) for v in values),
        "scope": lambda values: "local" in values,
        "daemon": lambda values: False,  # berth has no daemon events
    }
    for name in ("plugin", "node", "service", "secret", "config"):  # kinds berth has none of: by id or name
        checks[name] = fuzzy
    return all(checks[name](values) for name, values in filters.items() if values and name in checks)


def _label(attributes: dict[str, str], want: str) -> bool:
    key, eq, value = want.partition("=")
    return key in attributes and (not eq or attributes[key] == value)
