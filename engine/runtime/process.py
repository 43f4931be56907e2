"""Naming a process safely: pid plus start time, and pidfds checked against both.

Pids are reused, so a recorded pid alone may name another process by the time anyone
reads it back. Field 22 of /proc/PID/stat (its start time, in clock ticks since boot)
makes the pair unique; a signal goes through a pidfd opened first and checked second, so
it can never reach a process that took over the pid in between.
"""

from __future__ import annotations

import os
import select
import signal
import time


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): pid plus this names one process.

    None for a process that is gone, or a zombie: it has exited, whoever reaps it and when.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and start_time(pid) == start  # type: ignore[arg-type]


def pidfd(pid: int | None, start: int | None) -> int | None:
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


def wait_fd(fd: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a pidfd's process to exit; True if it did."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def send_signal(pid: int | None, start: int | None, sig: int) -> bool:
    """Signal the process named by (pid, start); False if it is gone."""
    fd = pidfd(pid, start)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


def terminate(pid: int | None, start: int | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `timeout` seconds."""
    send_signal(pid, start, signal.SIGTERM)
    fd = pidfd(pid, start)
    if fd is None:
        return
    try:
        if not wait_fd(fd, timeout):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def wait_gone(processes: list[tuple[int | None, int | None]], timeout: float) -> None:
    """Wait, in order, for each (pid, start) to exit, all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for pid, start in processes:
        fd = pidfd(pid, start)
        if fd is not None:
            try:
                wait_fd(fd, deadline - time.monotonic())
            finally:
                os.close(fd)
