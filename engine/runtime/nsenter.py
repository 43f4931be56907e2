"""`berth exec`: start another process inside a running container's namespaces and cgroup.

The caller sets only its PID namespace *for children* (setns on a pid namespace never
moves the caller), forks once, and the child joins the cgroup, then the IPC, UTS,
network, cgroup and mount namespaces, chroots to PID 1's root (setns into a mount
namespace does not follow a pivot_root on every kernel, so the root is taken from
/proc/PID/root as nsenter does), and execs with the same user, capabilities and
no_new_privs as the container's own process.
"""

from __future__ import annotations

import os
import signal

from engine.runtime import cgroups
from engine.runtime import syscalls as sc
from engine.runtime.console import take_terminal
from engine.runtime.init import (
    SETUP_FAILED,
    StartError,
    drop_privileges,
    environment,
    execute,
    find_executable,
    report,
    reset_signals,
    resolve_user,
)
from engine.runtime.seccomp import install as install_filter
from engine.runtime.supervisor import exit_code, read_all, relay_signals, start_error

_ORDER = (
    ("ipc", sc.CLONE_NEWIPC),
    ("uts", sc.CLONE_NEWUTS),
    ("net", sc.CLONE_NEWNET),
    ("cgroup", sc.CLONE_NEWCGROUP),
    ("mnt", sc.CLONE_NEWNS),
)


def exec_in(
    pid: int,
    cgroup: cgroups.Cgroup | None,
    args: list[str],
    *,
    env: list[str],
    user: str,
    cwd: str,
    hostname: str,
    interactive: bool = False,
    seccomp: bytes | None = None,
    console_fd: int = -1,
    console_size: list[int] | None = None,
) -> int:
    """Run `args` beside PID 1 `pid`, wait for it, and return its exit code (raises StartError).

    Without `interactive` the process reads /dev/null, as with docker exec. With `console_fd` it
    takes a pty from the container's /dev/pts as its terminal (`console.take_terminal`, sized
    `console_size`) and sends the master over that socket, as runc exec's console socket.
    """
    proc = f"/proc/{pid}"
    fds = {name: os.open(f"{proc}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name, _ in _ORDER}
    pid_ns = os.open(f"{proc}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    root = os.open(f"{proc}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    shares_terminal = interactive and console_fd < 0 and os.isatty(0)
    target: list[int] = []
    # with a pty of its own, SIGWINCH is the relay's: it resizes that pty, which signals the process
    flush = relay_signals(target, shares_terminal, frozenset({signal.SIGWINCH}) if console_fd >= 0 else frozenset())
    sc.setns(pid_ns, sc.CLONE_NEWPID)
    child = os.fork()
    if child == 0:
        try:
            reset_signals()
            os.close(read_end)
            if not interactive:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
            if not shares_terminal:
                os.setsid()
            if cgroup is not None:
                cgroup.add()
            for name, flag in _ORDER:
                sc.setns(fds[name], flag)
            os.fchdir(root)
            os.chroot(".")
            who = resolve_user(user)
            environ = environment(env, who, hostname)
            if console_fd >= 0:
                take_terminal(console_fd, who.uid, console_size)
            drop_privileges(who, keep_mknod=cgroup is not None and cgroup.restricts_devices)
            os.chdir(cwd)
            path = find_executable(args[0], environ["PATH"])
            sc.set_parent_death_signal(signal.SIGKILL)
            if seccomp:
                install_filter(seccomp)
            execute(path, args, environ)
        except StartError as exc:
            report(write_end, exc.code, exc.message)
            os._exit(exc.code)
        except BaseException as exc:  # noqa: B036 - the child must never return into the CLI
            report(write_end, SETUP_FAILED, f"exec setup failed: {exc}")
            os._exit(SETUP_FAILED)
    sc.setns(own_pid_ns, sc.CLONE_NEWPID)
    for fd in (*fds.values(), pid_ns, root, own_pid_ns, write_end):
        os.close(fd)
    if console_fd >= 0:
        os.close(console_fd)
    target.append(child)
    flush()
    failure = read_all(read_end)
    _, status = os.waitpid(child, 0)
    if failure:
        raise start_error(failure)
    return exit_code(status)
