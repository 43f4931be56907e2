"""Named volumes: directories under $BERTH_ROOT/volumes that outlive containers (docker's `local` driver).

`volumes/<name>/_data` is what containers mount, `volumes/<name>/volume.json` its labels and
creation time (written atomically). Names follow docker's grammar, so a name can never leave
the directory. A volume a container's spec mounts cannot be removed, with or without force
(as dockerd refuses it). An anonymous volume is one with a random 64-hex name that a container
made for an image's VOLUME or a `-v /PATH` (`Spec.anonymous`, removed by `rm -v` and `--rm`).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.service.containers import ContainerStore, remove_tree

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$")


class VolumeError(ValueError):
    pass


class VolumeNotFound(LookupError):
    pass


class VolumeInUse(RuntimeError):
    pass


@dataclass
class Volume:
    name: str
    mountpoint: Path
    created: float
    labels: dict[str, str] = field(default_factory=dict)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise VolumeError(
            f'"{name[:300]}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
        )
    return name


class Volumes:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _load(self, name: str) -> Volume:
        directory = self.root / check_name(name)
        try:
            doc = json.loads((directory / "volume.json").read_text())
        except (OSError, ValueError):
            raise VolumeNotFound(f"get {name}: no such volume") from None
        return Volume(name, directory / "_data", float(doc.get("created", 0)), dict(doc.get("labels") or {}))

    def get(self, name: str) -> Volume:
        return self._load(name)

    def create(self, name: str | None = None, labels: dict[str, str] | None = None) -> Volume:
        """A new volume, or the existing one of that name (as docker's create is idempotent)."""
        name = check_name(name) if name else os.urandom(32).hex()
        directory = self.root / name
        if (directory / "volume.json").exists():
            return self._load(name)
        (directory / "_data").mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {"created": time.time(), "labels": labels or {}}
        tmp = directory / f".volume.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, directory / "volume.json")
        self._record("create", name)
        return self._load(name)

    def list(self) -> list[Volume]:
        names = sorted(os.listdir(self.root)) if self.root.is_dir() else []
        out = []
        for name in names:
            try:
                out.append(self._load(name))
            except (VolumeNotFound, VolumeError):
                continue
        return out

    def users(self, volume: Volume, containers: ContainerStore) -> builtins.list[str]:
        data = str(volume.mountpoint)
        return [c.id for c in containers.list() if any(m.source == data for m in c.spec.mounts)]

    def remove(self, name: str, containers: ContainerStore) -> None:
        volume = self._load(name)
        users = self.users(volume, containers)
        if users:
            raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(users)}]")
        remove_tree(self.root / volume.name)
        self._record("destroy", volume.name)

    def _record(self, action: str, name: str) -> None:
        """Append a volume event to the engine's journal (`service/events.py`)."""
        from engine.service.events import Journal

        Journal.of_root(self.root.parent).record("volume", action, name, {"driver": "local"})
