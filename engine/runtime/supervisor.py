"""Starting a container's first process and staying its parent until it exits.

The supervisor is whichever process forks PID 1: the `berth run` command itself in the
foreground, or for `-d` a small daemon (double fork + setsid, `daemonize`) that outlives
the command, whose copier process (`output.py`) writes the container's output to its log.
The service drives it and records each step in the container's state; this module only
makes the system calls.

Only one fork starts a container: the supervisor unshares its PID namespace for
children, forks (the child is PID 1 of the new namespace), then setns()es back to its
own so that any later fork it makes is an ordinary one. PID 1 gets PR_SET_PDEATHSIG, so
a container never outlives the supervisor that holds its exit code.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from engine.runtime import cgroups, output
from engine.runtime import syscalls as sc
from engine.runtime.init import FORWARDED_SIGNALS, SETUP_FAILED, Process, StartError, container_main, report

Stdio = tuple[int, int, int]
TTY_SIGNALS = frozenset({signal.SIGINT, signal.SIGQUIT})


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def spawn(
    process: Process,
    layers: list[Path],
    directory: Path,
    etc_files: dict[str, str],
    cgroup: cgroups.Cgroup,
    stdio: Stdio | None,
    netns_fd: int = -1,
    seccomp: bytes | None = None,
    console_fd: int = -1,
) -> int:
    """Fork PID 1 into new namespaces and return its pid once it has exec'd the command.

    `directory` receives the root filesystem's mount point and overlay directories;
    `etc_files` maps names under /etc to host files bound over them; `netns_fd`, when given,
    is a network namespace already wired for the container, which PID 1 enters; `seccomp` is
    the BPF program PID 1 installs just before exec (None: no filter); `console_fd`, when given,
    is the socket PID 1 sends the master of its new terminal over (`console.take_terminal`).
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    joined_read, joined_write = os.pipe2(os.O_CLOEXEC)
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    sc.unshare(sc.CLONE_NEWPID)
    try:
        pid = os.fork()
    except BaseException:
        sc.setns(own_pid_ns, sc.CLONE_NEWPID)
        raise
    if pid == 0:
        try:
            os.close(read_end)
            os.close(joined_write)
            if stdio is not None:
                for target, fd in enumerate(stdio):
                    os.dup2(fd, target)
            if console_fd >= 0 or not os.isatty(0):
                os.setsid()
        except BaseException:
            os._exit(SETUP_FAILED)
        container_main(
            process,
            layers,
            directory,
            etc_files,
            keep_mknod=cgroup.restricts_devices,
            joined_fd=joined_read,
            error_fd=write_end,
            netns_fd=netns_fd,
            seccomp=seccomp,
            console_fd=console_fd,
        )
    sc.setns(own_pid_ns, sc.CLONE_NEWPID)
    os.close(own_pid_ns)
    os.close(write_end)
    os.close(joined_read)
    joined: OSError | None = None
    try:
        cgroup.add(pid)
        os.write(joined_write, b"j")
    except OSError as exc:
        joined = exc
        os.kill(pid, signal.SIGKILL)
    finally:
        os.close(joined_write)
    failure = read_all(read_end)
    if failure or joined:
        os.waitpid(pid, 0)
        raise start_error(failure, joined)
    return pid


def start_error(failure: bytes, joined: OSError | None = None) -> StartError:
    """What PID 1 reported before dying (its own words win), else why it could not join its cgroup."""
    if failure:
        try:
            doc = json.loads(failure.splitlines()[0])
            return StartError(int(doc["code"]), str(doc["message"]))
        except (ValueError, KeyError, IndexError):
            return StartError(SETUP_FAILED, failure.decode(errors="replace"))
    return StartError(SETUP_FAILED, f"cannot move the container into its cgroup: {joined}")


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def wait(pid: int) -> int:
    """Reap PID 1 and return its exit code as a shell reports it (128 + signal when killed)."""
    _, status = os.waitpid(pid, 0)
    return exit_code(status)


def relay_signals(target: list[int], shares_terminal: bool, keep: frozenset[int] = frozenset()) -> Callable[[], None]:
    """Relay signals to PID 1 once `target` holds its pid; ones that come earlier wait for it.

    Installed before the fork: a signal landing between exec and the state write must not
    kill the supervisor. With a terminal, ^C and ^\\ already reach PID 1 (same process group).
    Signals in `keep` keep the handler they have (`exec -t`'s SIGWINCH resizes the process's pty).
    """
    pending: list[int] = []

    def flush() -> None:
        while target and pending:
            try:
                os.kill(target[0], pending.pop(0))
            except ProcessLookupError:
                pass

    def relay(signum: int, _frame: object) -> None:
        pending.append(signum)
        flush()

    for sig in FORWARDED_SIGNALS:
        if sig in keep:
            continue
        signal.signal(sig, (lambda _s, _f: None) if shares_terminal and sig in TTY_SIGNALS else relay)
    return flush


def daemonize(log_file: Path, body: Callable[[Stdio, Callable[[], None], Callable[[], None]], object]) -> None:
    """Run `body(stdio, started, finished)` in a daemon; return once it calls `started` (or raise its StartError).

    The daemon reads /dev/null; what `stdio` gets written is copied into `log_file` as records
    (`output.py`), completely once `body` has called `finished` after PID 1's exit. What `body`
    raises before `started` is reported back to the caller.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    first = os.fork()
    if first == 0:
        os.close(read_end)
        told: list[bool] = []
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.chdir("/")  # a daemon must not keep the caller's directory busy
            log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            for target in (0, 1, 2):
                os.dup2(null, target)
            for name in os.listdir("/proc/self/fd"):
                if int(name) > 2 and int(name) not in (log, null, write_end):
                    try:
                        os.close(int(name))
                    except OSError:
                        pass
            for sig in (signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)

            def started() -> None:
                os.write(write_end, b'{"started": true}\n')
                os.close(write_end)
                told.append(True)

            capture = output.Capture.start(log)
            os.close(log)
            body((null, capture.stdout, capture.stderr), started, capture.finish)
            os._exit(0)
        except StartError as exc:
            if not told:
                report(write_end, exc.code, exc.message)
        except BaseException as exc:  # noqa: B036 - a daemon reports everything, then _exits
            if not told:
                report(write_end, SETUP_FAILED, f"supervisor failed: {exc}")
        os._exit(1)
    os.close(write_end)
    os.waitpid(first, 0)
    answer = read_all(read_end)
    try:
        doc = json.loads(answer.splitlines()[0]) if answer else {}
    except ValueError:
        doc = {}
    if not doc.get("started"):
        raise StartError(int(doc.get("code", SETUP_FAILED)), str(doc.get("message", "the supervisor died")))
