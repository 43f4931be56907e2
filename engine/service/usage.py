"""What a running container uses now: its processes (`docker top`) and its cgroup's counters (`docker stats`).

Read from the container's cgroup (the runtime's `Cgroup.usage`) and /proc, for any front door.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass

from engine.runtime import cgroups
from engine.runtime.cgroups import Usage
from engine.service.containers import Container, ContainerStateError

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcessRow:
    uid: str
    pid: int
    ppid: int
    start: str
    time: str
    command: str


def usage(container: Container) -> Usage:
    if not container.is_running() or not container.cgroup:
        raise ContainerStateError(f"Container {container.id} is not running")
    return cgroups.from_json(container.cgroup).usage()


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _row(pid: int, boot: float) -> ProcessRow | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) // TICKS
    started = boot + int(fields[19]) / TICKS
    comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
    return ProcessRow(
        _user(uid),
        pid,
        int(fields[1]),
        time.strftime("%H:%M", time.localtime(started)),
        f"{cpu // 3600:02d}:{cpu % 3600 // 60:02d}:{cpu % 60:02d}",
        argv or f"[{comm}]",
    )


def processes(container: Container) -> list[ProcessRow]:
    """The container's processes, as `ps -ef` shows them on the host, in pid order."""
    with open("/proc/stat") as f:
        boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
    rows = [_row(pid, boot) for pid in sorted(usage(container).pids)]
    return [r for r in rows if r is not None]
