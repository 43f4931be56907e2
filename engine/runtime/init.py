"""The container's first process: set up inside the new namespaces, then become the command.

Runs in the child forked by the supervisor, so PID 1 of the new PID namespace. It
unshares the other namespaces, builds the root filesystem, waits to be moved into its
cgroup, enters a cgroup namespace rooted there, sets the
hostname and network, resolves the user in the image's own /etc/passwd, drops to
docker's default capabilities with no_new_privs, and finally execve()s the image's
entrypoint+cmd, so that PID 1 *is* the image's process (or, with --init, a tiny reaper
that forwards signals to it, as tini does).

The supervisor moves PID 1 into its cgroup while PID 1 builds the root filesystem (the
first cgroup v1 migration waits for an RCU grace period, ~10 ms, worth overlapping);
PID 1 waits for the byte on `joined_fd` before it unshares its cgroup namespace and execs.

Failures before exec travel to the supervisor over a close-on-exec pipe as one JSON
line `{"code", "message"}`: end-of-file on that pipe means the exec succeeded.
"""

from __future__ import annotations

import _socket
import errno
import json
import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

from engine.runtime import netns, rootfs
from engine.runtime import syscalls as sc
from engine.runtime.console import take_terminal
from engine.runtime.seccomp import install as install_filter

DEFAULT_CAPABILITIES = frozenset(
    sc.CAPABILITIES[name]
    for name in (
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    )
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A select()-safe soft limit with a generous hard limit, as systemd sets for services.
RLIMITS = {resource.RLIMIT_NOFILE: (1024, 524288)}
FORWARDED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
)
SETUP_FAILED = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127
NAMESPACES = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC


class Process(Protocol):
    """What PID 1 needs to know, as an OCI runtime's config.json says it (the service's Spec is one)."""

    args: list[str]
    env: list[str]
    cwd: str
    user: str
    hostname: str
    mounts: list[rootfs.Mount]
    network: str
    read_only: bool
    init: bool
    console_size: list[int]


class StartError(Exception):
    """The process did not reach exec: the exit code docker uses (125 setup, 126 not executable, 127
    not found) and the message. Raised in the child, reported over the pipe, re-raised by the parent."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class User:
    """Whom the command runs as, resolved in the image's /etc/passwd and /etc/group."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]
    except OSError:
        return []


def resolve_user(spec: str) -> User:
    """`user[:group]` (names or numbers) resolved in the image's /etc/passwd and /etc/group."""
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = [e for e in _read_db("/etc/passwd") if len(e) >= 7]
    entry = next((e for e in passwd if e[0] == user_part or (user_part.isdigit() and e[2] == user_part)), None)
    if entry is not None:
        uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
    elif user_part.isdigit():
        uid, gid, home, name = int(user_part), 0, "/", None
    else:
        raise StartError(SETUP_FAILED, f"unable to find user {user_part}: no matching entries in passwd file")
    groups_db = [e for e in _read_db("/etc/group") if len(e) >= 4]
    if group_part:
        group = next((g for g in groups_db if g[0] == group_part or g[2] == group_part), None)
        if group is not None:
            gid = int(group[2])
        elif group_part.isdigit():
            gid = int(group_part)
        else:
            raise StartError(SETUP_FAILED, f"unable to find group {group_part}: no matching entries in group file")
    extra = tuple(int(g[2]) for g in groups_db if name and name in g[3].split(",") and g[2].isdigit())
    return User(uid, gid, tuple(dict.fromkeys((gid, *extra))), home)


def environment(env: list[str], user: User, hostname: str) -> dict[str, str]:
    out = {key: value for key, _, value in (item.partition("=") for item in env)}
    out.setdefault("PATH", DEFAULT_PATH)
    out.setdefault("HOSTNAME", hostname)
    out.setdefault("HOME", user.home)
    return out


def find_executable(command: str, path: str) -> str:
    """The file to execve, looked up in the container's PATH as a shell would."""
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(d or ".", command) for d in path.split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            if "/" in command:
                raise StartError(NOT_EXECUTABLE, f'exec: "{command}": permission denied')
    if "/" in command:
        raise StartError(NOT_FOUND, f'exec: "{command}": no such file or directory')
    raise StartError(NOT_FOUND, f'exec: "{command}": executable file not found in $PATH')


def drop_privileges(user: User, keep_mknod: bool) -> None:
    """Docker's default capabilities (none at all for non-root users), then no_new_privs."""
    keep = DEFAULT_CAPABILITIES if keep_mknod else DEFAULT_CAPABILITIES - {sc.CAPABILITIES["CAP_MKNOD"]}
    for limit, (soft, hard) in RLIMITS.items():
        # Clamped to the current hard limit: without CAP_SYS_RESOURCE it cannot be raised.
        current = resource.getrlimit(limit)[1]
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
        resource.setrlimit(limit, (min(soft, hard), hard))
    sc.drop_bounding_set(keep)
    os.setgroups(list(user.groups))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if user.uid == 0:
        sc.capset(keep, keep, frozenset())
    sc.clear_ambient()
    sc.set_no_new_privs()


def report(fd: int, code: int, message: str) -> None:
    try:
        os.write(fd, json.dumps({"code": code, "message": message}).encode() + b"\n")
    except OSError:
        pass


def reset_signals() -> None:
    """Undo the supervisor's Python handlers and its ignored SIGPIPE before exec."""
    for sig in (*FORWARDED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)


def execute(path: str, args: list[str], env: dict[str, str]) -> NoReturn:
    try:
        os.execve(path, args, env)
    except OSError as exc:
        code = NOT_FOUND if exc.errno == errno.ENOENT else NOT_EXECUTABLE
        raise StartError(code, f'exec: "{args[0]}": {exc.strerror}') from None


def container_main(
    spec: Process,
    layers: list[Path],
    directory: Path,
    etc_files: dict[str, str],
    *,
    keep_mknod: bool,
    joined_fd: int,
    error_fd: int,
    netns_fd: int = -1,
    seccomp: bytes | None = None,
    console_fd: int = -1,
) -> NoReturn:
    """Everything between fork and exec for the container's PID 1. Never returns.

    With `console_fd` PID 1 (a session leader already) takes a pty from the container's /dev/pts
    as its terminal and sends the master to the supervisor over that socket.
    """
    try:
        reset_signals()
        sc.unshare(NAMESPACES | netns.namespace_flags(spec.network))
        if netns_fd >= 0:
            sc.setns(netns_fd, sc.CLONE_NEWNET)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        root = rootfs.mount_rootfs(layers, directory)
        rootfs.prepare(root, spec.mounts, etc_files, cwd=spec.cwd, nodev_volumes=not keep_mknod)
        rootfs.pivot(root, spec.read_only)
        _socket.sethostname(spec.hostname)
        netns.setup(spec.network)
        if os.read(joined_fd, 1) != b"j":
            raise StartError(SETUP_FAILED, "the supervisor could not move the container into its cgroup")
        sc.unshare(sc.CLONE_NEWCGROUP)
        user = resolve_user(spec.user)
        env = environment(spec.env, user, spec.hostname)
        if console_fd >= 0:
            take_terminal(console_fd, user.uid, spec.console_size)
        drop_privileges(user, keep_mknod=keep_mknod)
        try:
            os.chdir(spec.cwd)
        except OSError as exc:
            raise StartError(SETUP_FAILED, f"cannot enter working directory {spec.cwd}: {exc.strerror}") from None
        path = find_executable(spec.args[0], env["PATH"])
        if seccomp:  # last: the setup above makes calls the filter forbids (mount, unshare, ...)
            install_filter(seccomp)
        if spec.init:
            run_init(path, spec.args, env, error_fd)
        sc.set_parent_death_signal(signal.SIGKILL)
        execute(path, spec.args, env)
    except StartError as exc:
        report(error_fd, exc.code, exc.message)
        os._exit(exc.code)
    except BaseException as exc:  # noqa: B036 - anything at all must reach the supervisor, then _exit
        report(error_fd, SETUP_FAILED, f"container setup failed: {exc}")
        os._exit(SETUP_FAILED)


def run_init(path: str, args: list[str], env: dict[str, str], error_fd: int) -> NoReturn:
    """--init: stay PID 1, reap every orphan, forward signals to the command, exit with its status."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        try:
            sc.set_parent_death_signal(signal.SIGKILL)
            execute(path, args, env)
        except StartError as exc:
            report(ready_w, exc.code, exc.message)
            os._exit(exc.code)
    os.close(ready_w)
    failure = os.read(ready_r, 65536)
    os.close(ready_r)
    if failure:
        os.write(error_fd, failure)
    os.close(error_fd)
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    while True:
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)
