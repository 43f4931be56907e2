"""Reporting blob transfers: rich bars on a terminal, one plain line per blob otherwise, or nothing."""

from __future__ import annotations

import sys
import threading
from typing import IO, Any, Protocol

from client.image import Progress
from registry.oci.manifest import Descriptor


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class Reporter(Protocol):
    def start(self, descriptor: Descriptor) -> Progress: ...

    def finish(self, descriptor: Descriptor, status: str) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


class QuietReporter:
    def start(self, descriptor: Descriptor) -> Progress:
        return lambda n: None

    def finish(self, descriptor: Descriptor, status: str) -> None:
        return None

    def note(self, text: str) -> None:
        return None

    def close(self) -> None:
        return None


class PlainReporter:
    """For logs and pipes: a line when each blob is done, none per chunk."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def start(self, descriptor: Descriptor) -> Progress:
        return lambda n: None

    def finish(self, descriptor: Descriptor, status: str) -> None:
        self.note(f"{short(descriptor.digest)}: {status} ({human_size(descriptor.size)})")

    def note(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        return None


class RichReporter:
    """One bar per blob on a terminal; rich's Progress is safe to update from worker threads."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self.progress.start()
        self._tasks: dict[str, Any] = {}

    def start(self, descriptor: Descriptor) -> Progress:
        task = self.progress.add_task(short(descriptor.digest), total=descriptor.size)
        self._tasks[descriptor.digest] = task
        return lambda n: self.progress.advance(task, n)

    def finish(self, descriptor: Descriptor, status: str) -> None:
        task = self._tasks.get(descriptor.digest)
        if task is None:
            task = self.progress.add_task(short(descriptor.digest), total=descriptor.size)
        self.progress.update(task, completed=descriptor.size, description=f"{short(descriptor.digest)} {status}")

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(quiet: bool, stream: IO[str] | None = None) -> Reporter:
    out = stream or sys.stderr
    if quiet:
        return QuietReporter()
    if out.isatty():
        return RichReporter(out)
    return PlainReporter(out)
