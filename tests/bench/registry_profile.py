"""Where the CPU goes: per-phase server CPU from /proc, and optional py-spy sampling of our workers.

py-spy samples OUR registry only (its uvicorn master and, with --subprocesses, every worker)
and writes collapsed stacks; `summarize` turns them into the top self-time and inclusive
frames. Sampling costs the target some CPU, so figures from a profiled run are not comparable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds consumed so far by these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (not idle, not iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS


class CpuMeter:
    """CPU cores used by a server and by this process between `start` and `stop`."""

    def __init__(self, pids: list[int]):
        self.pids = pids

    def __enter__(self) -> CpuMeter:
        self.server0 = cpu_seconds(self.pids)
        self.client0 = time.process_time()
        self.machine0 = machine_busy_seconds()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall0
        self.server_cores = (cpu_seconds(self.pids) - self.server0) / wall if wall else 0.0
        self.client_cores = (time.process_time() - self.client0) / wall if wall else 0.0
        self.machine_cores = (machine_busy_seconds() - self.machine0) / wall if wall else 0.0


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes including their reaped children (cutime, cstime): a
    PostgreSQL backend that exits moves its CPU into the postmaster's, so sums stay monotonic."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / TICKS


class ServiceMeter:
    """Cores used by services beside a server (PostgreSQL, moto), each by name; their pids are
    listed afresh at the start and at the end, since backends come and go."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self.cores: dict[str, float] = {}

    def __enter__(self) -> ServiceMeter:
        self.start = {name: tree_cpu_seconds(pids()) for name, pids in self.groups.items()}
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall0
        for name, pids in self.groups.items():
            used = tree_cpu_seconds(pids()) - self.start[name]
            self.cores[name] = max(0.0, used / wall) if wall else 0.0

    @property
    def total(self) -> float:
        return sum(self.cores.values())


class Profiler:
    """`py-spy record` on a process tree for the duration of a `with` block."""

    def __init__(self, pid: int, out: Path, rate: int = 200):
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if shutil.which("py-spy") is None:
            raise RuntimeError("py-spy is not installed")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "py-spy",
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # let py-spy attach before the load starts
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


IDLE_LEAVES = ("Condition.wait ", "Queue.get ", "Event.wait ", "Thread.join ", "select ", "sleep ")

CATEGORIES = (
    # (label, test on (leaf, stack)); the first match wins
    (
        "SQLite BEGIN IMMEDIATE of a write (waits for the write lock)",
        lambda leaf, stack: "_begin (registry/metadata/db.py" in stack and "Index._write " in stack,
    ),
    ("SQLite BEGIN of a read", lambda leaf, stack: "_begin (registry/metadata/db.py" in stack),
    ("SQLite statements (C, GIL released)", lambda leaf, stack: leaf.startswith(("DefaultDialect.do_", "Cursor"))),
    ("SQLAlchemy Python overhead", lambda leaf, stack: "sqlalchemy/" in leaf),
    ("event loop in C (uvloop, httptools; includes epoll idle)", lambda leaf, stack: leaf.startswith("Runner.run ")),
    (
        "uvicorn / starlette / anyio Python",
        lambda leaf, stack: any(p in leaf for p in ("uvicorn/", "starlette/", "anyio/", "asyncio/")),
    ),
    ("registry/ code (incl. C calls it makes: hashing, file I/O)", lambda leaf, stack: "registry/" in leaf),
)


def summarize(collapsed: Path, top: int = 15) -> str:
    """Where our workers' samples went: idle thread-pool waits split off, the rest by
    category, then the top frames by self samples and our own functions by inclusive samples.
    py-spy cannot tell a thread blocked in C (SQLite's busy handler, fsync) from one running
    there, so such waits appear as samples in the frame that called into C."""
    if not collapsed.exists():
        return f"(no profile written to {collapsed})"
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f.strip() for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        if leaf.startswith(IDLE_LEAVES):
            idle += n
            continue
        own[leaf] += n
        for frame in set(frames):
            if "registry/" in frame:
                ours[frame] += n
        joined = ";".join(frames)
        label = next((name for name, test in CATEGORIES if test(leaf, joined)), "other Python")
        categories[label] += n
    if not total:
        return "(empty profile)"
    busy = total - idle
    lines = [f"  {total} samples, {100 * idle / total:.0f}% idle thread-pool threads; of the other {busy}:"]
    lines += [f"    {100 * n / busy:5.1f}%  {name}" for name, n in categories.most_common()]
    lines.append("  top self (leaf) frames:")
    lines += [f"    {100 * n / busy:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  registry/ functions, inclusive:")
    lines += [f"    {100 * n / busy:5.1f}%  {frame}" for frame, n in ours.most_common(top)]
    return "\n".join(lines)
