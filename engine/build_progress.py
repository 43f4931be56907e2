"""Build progress as docker prints it: `#N label`, the step's output, then `#N CACHED` or `#N DONE 0.4s`.

Plain lines when stderr is not a terminal (CI logs, `--progress plain`); on a terminal the same
lines styled with rich, and a spinner with the running step's elapsed time.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any


class PlainStep:
    def __init__(self, progress: PlainProgress, number: int, label: str) -> None:
        self.progress, self.number, self.label = progress, number, label
        self.started = time.monotonic()
        self.partial = b""
        self.was_cached = False

    def cached(self) -> None:
        self.was_cached = True
        self.progress.line(f"#{self.number} CACHED", "blue")

    def output(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            self.progress.line(
                f"#{self.number} {time.monotonic() - self.started:.3f} {line.decode(errors='replace')}", "dim"
            )

    def done(self) -> None:
        if self.partial:
            self.output(b"\n")
        if not self.was_cached:
            self.progress.line(f"#{self.number} DONE {time.monotonic() - self.started:.1f}s", "green")
        self.progress.finished(self)


class PlainProgress:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.count = 0
        self.lock = threading.Lock()

    def line(self, text: str, style: str = "") -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)

    def step(self, label: str) -> PlainStep:
        self.count += 1
        self.line(f"#{self.count} {label}", "bold")
        return PlainStep(self, self.count, label)

    def finished(self, step: PlainStep) -> None:
        return None

    def note(self, text: str) -> None:
        self.line(text, "yellow")

    def close(self) -> None:
        return None


class RichProgress(PlainProgress):
    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console

        super().__init__(stream)
        self.console = Console(file=stream, highlight=False)
        self.status: Any = None

    def line(self, text: str, style: str = "") -> None:
        with self.lock:
            self.console.print(text, style=style or None, markup=False)

    def step(self, label: str) -> PlainStep:
        from rich.markup import escape

        step = super().step(label)
        self.status = self.console.status(escape(f"#{step.number} {label}"))
        self.status.start()
        return step

    def finished(self, step: PlainStep) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def close(self) -> None:
        self.finished(None)  # type: ignore[arg-type]


def make_progress(mode: str, stream: IO[str] | None = None) -> PlainProgress:
    out = stream or sys.stderr
    if mode == "plain" or (mode == "auto" and not out.isatty()):
        return PlainProgress(out)
    return RichProgress(out)
