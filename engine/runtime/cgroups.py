"""Resource limits and device access: cgroup v1 and v2 behind one small interface.

A container gets one cgroup per hierarchy it needs, named `berth/<id>`. On v1 (and on
hybrid machines, where the controllers are bound to v1) that is memory, pids, cpu and
devices, nested under the creating process's own cgroup in each hierarchy so that berth
never escapes the limits it is itself under. On pure v2 it is `<mount>/berth/<id>`: the
"no internal processes" rule forbids enabling controllers in the caller's own, populated
cgroup, so the subtree hangs off the root as docker's cgroupfs driver does.

The devices allow-list (devices.py, docker's default) is what stops a container
from opening a block device node it made with CAP_MKNOD: `devices.allow` rules on v1, a
BPF program attached to the cgroup on v2. Where that program cannot be attached (a kernel
without CONFIG_CGROUP_BPF), `restricts_devices` is False and the runtime drops CAP_MKNOD
and mounts volumes nodev instead (image layers never carry device nodes: unpacking
skips them).
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.runtime import syscalls
from engine.runtime.devices import ALLOWED, bpf_program

CPU_PERIOD_US = 100_000
_V1_CONTROLLERS = ("memory", "pids", "cpu", "devices")
_V2_CONTROLLERS = ("memory", "pids", "cpu")


class CgroupUnavailable(RuntimeError):
    """Neither a usable cgroup v1 hierarchy nor a cgroup v2 mount was found."""


@dataclass(frozen=True)
class Limits:
    """What the container may use: memory in bytes, a process count, CPU cores (None: no limit)."""

    memory: int | None = None
    pids: int | None = None
    cpus: float | None = None


@dataclass
class Usage:
    """What the cgroup's files say now: its processes, memory (bytes), CPU time (ns)."""

    pids: list[int]
    memory: int = 0
    memory_limit: int | None = None
    cpu_ns: int = 0


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except OSError:
        return []


class Cgroup(Protocol):
    """What the runtime needs from a container's cgroup, whichever version backs it."""

    restricts_devices: bool

    def create(self, limits: Limits) -> None: ...

    def add(self, pid: int = 0) -> None:
        """Move process `pid` in (0: the caller), before it unshares its cgroup namespace."""
        ...

    def oom_killed(self) -> bool: ...

    def usage(self) -> Usage: ...

    def destroy(self) -> None: ...

    def to_json(self) -> dict[str, Any]: ...


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _rmdir(path: Path) -> None:
    """Remove a cgroup directory, waiting briefly for dying processes to leave it."""
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.02)
    path.rmdir()


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(mount root, mount point, fs type, super options) for every cgroup mount."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] in ("cgroup", "cgroup2"):
                out.append((fields[3], fields[4], rfields[0], rfields[2] if len(rfields) > 2 else ""))
    return out


def _own_cgroups() -> dict[str, str]:
    """controller name (or "" for v2) -> this process's cgroup path in that hierarchy."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


class CgroupV1:
    """One directory per controller hierarchy."""

    restricts_devices = True

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = {k: Path(v) for k, v in paths.items()}

    @classmethod
    def for_container(cls, container_id: str) -> CgroupV1 | None:
        own = _own_cgroups()
        found: dict[str, str] = {}
        for root, mountpoint, fstype, options in _mountinfo():
            if fstype != "cgroup":
                continue
            for controller in _V1_CONTROLLERS:
                if controller in options.split(",") and controller not in found:
                    rel = own.get(controller, "/")
                    if root != "/" and rel.startswith(root):
                        rel = rel[len(root) :]
                    found[controller] = os.path.join(mountpoint, rel.lstrip("/"), "berth", container_id)
        if "memory" not in found or "devices" not in found:
            return None
        return cls(found)

    def create(self, limits: Limits) -> None:
        for path in self.paths.values():
            path.mkdir(parents=True, exist_ok=True)
        devices = self.paths["devices"]
        _write(devices / "devices.deny", "a")
        for rule in ALLOWED:
            _write(devices / "devices.allow", rule.v1())
        memory = self.paths["memory"]
        if limits.memory is not None:
            _write(memory / "memory.limit_in_bytes", str(limits.memory))
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory))
        if limits.pids is not None and "pids" in self.paths:
            _write(self.paths["pids"] / "pids.max", str(limits.pids))
        if limits.cpus is not None and "cpu" in self.paths:
            _write(self.paths["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.paths["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))

    def add(self, pid: int = 0) -> None:
        for path in self.paths.values():
            _write(path / "cgroup.procs", str(pid))

    def oom_killed(self) -> bool:
        try:
            text = (self.paths["memory"] / "memory.oom_control").read_text()
        except OSError:
            return False
        return any(line.split()[1] != "0" for line in text.splitlines() if line.startswith("oom_kill "))

    def usage(self) -> Usage:
        memory = self.paths["memory"]
        cpu = self.paths.get("cpu")
        limit = _number(memory / "memory.limit_in_bytes")
        return Usage(
            _pids(memory / "cgroup.procs"),
            _number(memory / "memory.usage_in_bytes") or 0,
            limit if limit is not None and limit < 1 << 62 else None,
            (_number(cpu / "cpuacct.usage") or 0) if cpu is not None else 0,
        )

    def destroy(self) -> None:
        for path in self.paths.values():
            _rmdir(path)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "paths": {k: str(v) for k, v in self.paths.items()}}


class CgroupV2:
    """One directory in the unified hierarchy."""

    def __init__(self, path: str, restricts_devices: bool = True) -> None:
        self.path = Path(path)
        self.restricts_devices = restricts_devices

    @classmethod
    def for_container(cls, container_id: str) -> CgroupV2 | None:
        for _, mountpoint, fstype, _ in _mountinfo():
            if fstype == "cgroup2" and os.path.exists(os.path.join(mountpoint, "cgroup.controllers")):
                available = Path(mountpoint, "cgroup.controllers").read_text().split()
                if "memory" in available:
                    return cls(os.path.join(mountpoint, "berth", container_id))
        return None

    def create(self, limits: Limits) -> None:
        parent = self.path.parent
        try:
            available = (parent.parent / "cgroup.controllers").read_text().split()
        except FileNotFoundError:
            available = list(_V2_CONTROLLERS)
        enable = " ".join(f"+{c}" for c in _V2_CONTROLLERS if c in available)
        if enable:
            _write(parent.parent / "cgroup.subtree_control", enable)
        parent.mkdir(exist_ok=True)
        if enable:
            _write(parent / "cgroup.subtree_control", enable)
        self.path.mkdir(exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            syscalls.attach_device_filter(fd, bpf_program())
        except OSError:
            self.restricts_devices = False
        finally:
            os.close(fd)
        if limits.memory is not None:
            _write(self.path / "memory.max", str(limits.memory))
            if (self.path / "memory.swap.max").exists():
                _write(self.path / "memory.swap.max", "0")
        if limits.pids is not None:
            _write(self.path / "pids.max", str(limits.pids))
        if limits.cpus is not None:
            _write(self.path / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")

    def add(self, pid: int = 0) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def oom_killed(self) -> bool:
        try:
            text = (self.path / "memory.events").read_text()
        except OSError:
            return False
        return any(line.split()[1] != "0" for line in text.splitlines() if line.startswith("oom_kill "))

    def usage(self) -> Usage:
        cpu_ns = 0
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    cpu_ns = int(line.split()[1]) * 1000
        except (OSError, ValueError):
            pass
        return Usage(
            _pids(self.path / "cgroup.procs"),
            _number(self.path / "memory.current") or 0,
            _number(self.path / "memory.max"),
            cpu_ns,
        )

    def destroy(self) -> None:
        _rmdir(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"version": 2, "path": str(self.path), "restricts_devices": self.restricts_devices}


def for_container(container_id: str) -> Cgroup:
    """The cgroup a new container should get: v1 where the controllers live there, else v2."""
    found: Cgroup | None = CgroupV1.for_container(container_id) or CgroupV2.for_container(container_id)
    if found is None:
        raise CgroupUnavailable(
            "no usable cgroup hierarchy: mount cgroup v2 at /sys/fs/cgroup or the v1 memory and devices controllers"
        )
    return found


def from_json(doc: dict[str, Any]) -> Cgroup:
    if doc.get("version") == 2:
        return CgroupV2(doc["path"], doc.get("restricts_devices", False))
    return CgroupV1(doc["paths"])
