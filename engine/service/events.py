"""Container and image events (docker's `create`, `start`, `die`, `destroy`, `rename`, `tag`, `untag`),
found by comparing two observations of the stores.

The engine has no daemon that sees every change happen (`berth run` changes state on its own), so
events are what differs between snapshots taken a moment apart: any front door's changes show,
and a container that is created and gone between two snapshots shows nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.service.containers import ContainerStore, Status
from engine.service.images import ImageStore


@dataclass(frozen=True)
class Seen:
    name: str
    image: str
    status: Status
    started_at: float | None
    finished_at: float | None
    exit_code: int | None


@dataclass
class Snapshot:
    containers: dict[str, Seen] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)


@dataclass
class Event:
    type: str
    action: str
    id: str
    attributes: dict[str, str]
    time: float


def observe(containers: ContainerStore, images: ImageStore) -> Snapshot:
    seen = {
        c.id: Seen(c.name, c.spec.image, c.status, c.started_at, c.finished_at, c.exit_code) for c in containers.list()
    }
    tags = set(images.names()) if images.paths.images.joinpath("index.json").exists() else set()
    return Snapshot(seen, tags)


def changes(before: Snapshot, after: Snapshot) -> list[Event]:
    now = time.time()
    out: list[Event] = []

    def add(kind: str, action: str, key: str, **attributes: Any) -> None:
        out.append(Event(kind, action, key, {k: str(v) for k, v in attributes.items()}, now))

    for key, new in after.containers.items():
        old = before.containers.get(key)
        if old is None:
            add("container", "create", key, name=new.name, image=new.image)
        elif old.name != new.name:
            add("container", "rename", key, name=new.name, oldName="/" + old.name, image=new.image)
        if new.started_at and (old is None or old.started_at != new.started_at):
            add("container", "start", key, name=new.name, image=new.image)
        if new.status is Status.STOPPED and new.finished_at and (old is None or old.finished_at != new.finished_at):
            add("container", "die", key, name=new.name, image=new.image, exitCode=new.exit_code)
    for key, old in before.containers.items():
        if key not in after.containers:
            if old.status is Status.RUNNING:  # it exited and went between two snapshots: it died first
                add("container", "die", key, name=old.name, image=old.image)
            add("container", "destroy", key, name=old.name, image=old.image)
    for tag in sorted(after.tags - before.tags):
        add("image", "tag", tag, name=tag)
    for tag in sorted(before.tags - after.tags):
        add("image", "untag", tag, name=tag)
    return out
