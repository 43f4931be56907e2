"""`docker run -it`, `docker exec -it` and `-i` through a real pseudo-terminal, against berth and dockerd.

The docker CLI only sets up a TTY when its own stdin and stdout are terminals, so each scenario runs
it on the slave of a pty made here (`pty.fork`: a session of its own with that terminal as its
controlling one) and types into the master as a user would. The window size set on the master is
what the CLI sends; resizing the master makes the kernel send SIGWINCH to the CLI (sent again here
explicitly, as a terminal emulator does both), which resizes the container's terminal.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import sys
import termios
import time

import pytest

from tests.engine.api.conftest import IMAGE_NAME, Engine, http, until

pytestmark = [pytest.mark.root, pytest.mark.e2e]
NONE = ("--network", "none")


class Terminal:
    """A command on the slave of a new pty; the test holds the master."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 33, columns: int = 101) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once (no Python code of the test runs here)
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.resize(rows, columns)
        self.seen = b""
        self.code: int | None = None

    def resize(self, rows: int, columns: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[bytes]:
        """Read until `pattern` (a regex over everything seen since the last match) shows up."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern.encode(), self.seen)
            if found:
                self.seen = self.seen[found.end() :]
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError(f"{pattern!r} not seen; the terminal showed {self.seen[-2000:]!r}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], min(timeout, 1))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the command has exited and closed the slave
            return False
        self.seen += data
        return bool(data)

    def wait(self, timeout: float = 30) -> int:
        """The command's exit code, reading its terminal meanwhile so that it never blocks on output."""
        deadline = time.monotonic() + timeout
        while self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                while select.select([self.fd], [], [], 0.1)[0] and self._read(0.1):
                    pass  # what it wrote just before it exited
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError(f"the command did not exit; the terminal showed {self.seen[-2000:]!r}")
            self._read(0.1)
        os.close(self.fd)
        return self.code

    def close(self) -> bool:
        """Kill the command if it still runs; whether it had to be."""
        if self.code is not None:
            return False
        os.kill(self.pid, signal.SIGKILL)
        self.wait()
        return True


def size_is(term: Terminal, rows: int, columns: int) -> None:
    """`stty size` until it shows this size. The CLI resizes after the start, which a fast shell can beat,
    and it listens for SIGWINCH only from then on: a signal before is lost, so it is sent again, as a
    terminal emulator sends one at every change. Until that first resize dockerd's pty is 0x0, which
    busybox's `stty size` reports as an error ("stty: standard input"): that too means "not yet"."""
    deadline = time.monotonic() + 30
    while True:
        term.type("stty size\r")
        found = term.expect(r"\r\n(?:(\d+) (\d+)|stty: [^\r]*)\r\n")
        if found[1] and (int(found[1]), int(found[2])) == (rows, columns):
            return
        assert time.monotonic() < deadline, f"the size stayed {found[0]!r}"
        os.kill(term.pid, signal.SIGWINCH)


def check_shell(term: Terminal, size: tuple[int, int], resized: tuple[int, int]) -> None:
    """The shell on `term` has the container's first pty, the outer terminal's size, and follows a resize."""
    term.type("tty\r")
    assert term.expect(r"\r\n(/dev/pts/\d+)\r\n")[1] == b"/dev/pts/0"
    size_is(term, *size)
    term.resize(*resized)
    size_is(term, *resized)


def test_run_it_gives_a_terminal_that_follows_resizes(engine: Engine) -> None:
    term = Terminal(["docker", "run", "-it", "--rm", "--name", "resized", *NONE, IMAGE_NAME, "sh"], engine.env)
    try:
        check_shell(term, (33, 101), (44, 120))
        term.type("exit 3\r")
        assert term.wait() == 3
        assert until(lambda: engine.ok("ps", "-aq", "--filter", "name=^resized$") == "")
    finally:
        if term.close():  # killed: its container lives on, and would fail the next try of this test
            engine.docker("rm", "-f", "resized")


def test_run_it_of_a_command_that_ends_at_once(engine: Engine) -> None:
    """Its output is there even when it ends before the attach reaches the container's terminal."""
    for _ in range(4):
        term = Terminal(["docker", "run", "-it", "--rm", *NONE, IMAGE_NAME, "echo", "quick"], engine.env)
        try:
            assert term.wait() == 0
        finally:
            term.close()
        assert term.seen == b"quick\r\n"


def check_exec_shell(term: Terminal) -> None:
    """An exec'd shell on `term` (made at 25x90) has a pty and follows a resize."""
    term.type("tty; echo $((6 * 7))\r")
    assert term.expect(r"\r\n(/dev/pts/\d+)\r\n42\r\n")
    size_is(term, 25, 90)
    term.resize(30, 100)
    size_is(term, 30, 100)


def test_exec_it_in_a_running_container(engine: Engine) -> None:
    engine.ok("run", "-d", *NONE, "--name", "shell-host", IMAGE_NAME, "sleep", "600")
    term = Terminal(["docker", "exec", "-it", "shell-host", "sh"], engine.env, 25, 90)
    try:
        check_exec_shell(term)
        term.type("exit 4\r")
        assert term.wait() == 4
    finally:
        term.close()
        engine.ok("rm", "-f", "shell-host")


def test_stdin_without_a_terminal(engine: Engine) -> None:
    result = engine.docker("run", "-i", "--rm", *NONE, IMAGE_NAME, "cat", input="hi\n")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    result = engine.docker("run", "-i", "--rm", *NONE, IMAGE_NAME, "sh", "-c", "wc -l; exit 6", input="a\nb\nc\n")
    assert (result.returncode, result.stdout.strip()) == (6, "3"), result.stderr
    # piped data holding ctrl-p ctrl-q is data: detach keys count on a TTY only
    data = ("x" * 5000 + "\x10\x11") * 40
    result = engine.docker("run", "-i", "--rm", *NONE, IMAGE_NAME, "wc", "-c", input=data)
    assert (result.returncode, result.stdout.strip()) == (0, str(len(data))), result.stderr
    engine.ok("run", "-d", *NONE, "--name", "stdin-host", IMAGE_NAME, "sleep", "600")
    try:
        result = engine.docker("exec", "-i", "stdin-host", "sh", "-c", "tr a-z A-Z; exit 2", input="shout\n")
        assert (result.returncode, result.stdout) == (2, "SHOUT\n"), result.stderr
        result = engine.docker("exec", "-i", "stdin-host", "wc", "-c", input=data)
        assert (result.returncode, result.stdout.strip()) == (0, str(len(data))), result.stderr
    finally:
        engine.ok("rm", "-f", "stdin-host")


def attach_and_exit(engine: Engine, name: str, code: int) -> None:
    """`docker attach` to a running shell on a terminal: it answers, then exits with `code`."""
    term = Terminal(["docker", "attach", name], engine.env, 20, 70)
    try:
        term.type("echo $((40 + 2))\r")
        term.expect(r"\r\n42\r\n")
        term.type(f"exit {code}\r")
        assert term.wait() == code
    finally:
        term.close()


def test_attach_to_a_running_terminal_and_to_a_stopped_container(engine: Engine) -> None:
    engine.ok("run", "-dit", *NONE, "--name", "attached", IMAGE_NAME, "sh")
    attach_and_exit(engine, "attached", 5)
    assert until(lambda: engine.ok("inspect", "--format", "{{.State.Status}}", "attached").strip() == "exited")
    stopped = engine.docker("attach", "attached")
    assert stopped.returncode == 1 and "You cannot attach to a stopped container, start it first" in stopped.stderr
    engine.ok("rm", "attached")


def api(engine: Engine, method: str, path: str, body: object = None) -> tuple[int, str]:
    """One request (`body` sent as JSON): status and message (or body)."""
    status, answer = http(engine, method, path, json.dumps(body).encode() if body is not None else None)
    text = answer.decode()
    try:
        return status, json.loads(text)["message"]
    except (ValueError, KeyError, TypeError):
        return status, text.strip()


def test_hostile_resizes_answer_as_dockerd(berth_api: Engine, dockerd: Engine) -> None:
    answers = []
    for engine in (berth_api, dockerd):
        cid = engine.ok("run", "-dit", *NONE, "--name", "sized", IMAGE_NAME, "sh").strip()
        seen = {}
        for query in ("h=0&w=0", "h=0&w=-1", "h=abc&w=10", "h=999999999&w=80", "h=1&w=", "h=99999999999999999999&w=1"):
            status, message = api(engine, "POST", f"/v1.41/containers/sized/resize?{query}")
            seen[query] = (status, message.replace(cid, "ID"))
        stopped = engine.ok("create", *NONE, "--name", "unstarted", "-t", IMAGE_NAME, "sh").strip()
        status, message = api(engine, "POST", "/v1.41/containers/unstarted/resize?h=10&w=10")
        seen["unstarted"] = (status, message.replace(stopped, "ID"))
        seen["missing"] = api(engine, "POST", "/v1.41/containers/no-such-one/resize?h=10&w=10")
        seen["exec"] = api(engine, "POST", "/v1.41/exec/0123456789abcdef/resize?h=10&w=10")
        # dockerd 20.10 answers these with 500 (an error it does not classify); berth says 400, bad input
        keys = {"Cmd": ["true"], "AttachStdin": True, "Tty": True, "DetachKeys": "ctrl-@@"}
        status, message = api(engine, "POST", "/v1.41/containers/sized/exec", keys)
        seen["exec keys"] = (status in (400, 500), message)
        for size in ([-1, 5], "big", [True, 1], [1 << 70, 1]):
            host = {"NetworkMode": "none", "ConsoleSize": size}
            config = {"Image": IMAGE_NAME, "Cmd": ["true"], "Tty": True, "HostConfig": host}
            status = api(engine, "POST", "/v1.41/containers/create", config)[0]
            seen[f"console {size}"] = status == 400 if engine is berth_api else status in (400, 500)
        answers.append(seen)
        engine.ok("rm", "-f", "sized", "unstarted")
    assert answers[0] == answers[1]


def test_berth_run_it_relays_this_terminal(berth_api: Engine) -> None:
    argv = berth_api.netns.wrap([sys.executable, "-m", "engine", "run", "-it", "--rm", *NONE, IMAGE_NAME, "sh"])
    term = Terminal(argv, berth_api.env, 21, 77)
    try:
        check_shell(term, (21, 77), (40, 132))
        term.type("sh -c 'trap \"echo got-int; exit 0\" INT; echo ready; while :; do sleep 0.1; done'\r")
        term.expect(r"ready\r\n")
        term.type("\x03")  # ^C reaches the container's terminal (its foreground process), not berth
        term.expect(r"got-int\r\n")
        term.type("exit 7\r")
        assert term.wait() == 7
    finally:
        term.close()


def test_a_terminal_outlives_a_killed_service(berth_api: Engine) -> None:
    berth_api.ok("run", "-dit", *NONE, "--name", "lasting", IMAGE_NAME, "sh")
    assert berth_api.process is not None
    os.kill(berth_api.process.pid, signal.SIGKILL)
    berth_api.process.wait()
    berth_api.start()
    attach_and_exit(berth_api, "lasting", 9)
    assert berth_api.ok("inspect", "--format", "{{.State.ExitCode}}", "lasting").strip() == "9"
    berth_api.ok("rm", "lasting")


def hijack(engine: Engine, path: str) -> tuple[int, socket.socket]:
    """An attach as the CLI makes it (Upgrade: tcp): the status, and the connection to go on with."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(str(engine.socket))
    upgrade = "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: docker\r\n{upgrade}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    return int(head.split(b" ", 2)[1]), sock


def read_until(sock: socket.socket, token: bytes) -> bytes:
    seen = b""
    while token not in seen:
        chunk = sock.recv(65536)
        assert chunk, seen
        seen += chunk
    return seen


def test_detach_keys_as_dockerd(berth_api: Engine, dockerd: Engine) -> None:
    outcomes = []
    for engine in (berth_api, dockerd):
        engine.ok("run", "-dit", *NONE, "--name", "detachable", IMAGE_NAME, "sh")
        attach = "/v1.41/containers/detachable/attach?stream=1&stdin=1&stdout=1&stderr=1"
        status, sock = hijack(engine, attach + "&detachKeys=ctrl-x,x")
        with sock:
            sock.sendall(b"echo $((2 * 21))\r")
            read_until(sock, b"42\r\n")
            sock.sendall(b"\x18x")  # ctrl-x x: the attach ends, the container does not
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
        running = engine.ok("inspect", "--format", "{{.State.Running}}", "detachable").strip()
        bad = api(engine, "POST", attach + "&detachKeys=ctrl-@@")
        outcomes.append((status, running, bad))
        engine.ok("rm", "-f", "detachable")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:2] == (101, "true")


def test_berth_run_t_in_the_foreground_is_logged(berth_api: Engine) -> None:
    """The terminal's output of a foreground `berth run -t` is shown and kept, as stdout records."""
    argv = berth_api.netns.wrap(
        [sys.executable, "-m", "engine", "run", "-t", "--name", "termfg", *NONE, IMAGE_NAME, "sh", "-c", "echo hello"]
    )
    term = Terminal(argv, berth_api.env)
    try:
        term.expect(r"hello\r\n")
        assert term.wait() == 0
        assert berth_api.docker("logs", "termfg", text=False).stdout == b"hello\r\n"
    finally:
        term.close()
        berth_api.docker("rm", "-f", "termfg")


def test_berth_exec_it_relays_this_terminal(berth_api: Engine) -> None:
    """`berth exec -it` (the CLI front door) as `docker exec -it`: a pty of the process's own inside the
    container, this terminal's size followed, ^C the process's to read, its exit code kept; `-t` alone
    shows the output; `-it` with an input that is no terminal is refused as docker refuses it."""
    berth_api.ok("run", "-d", *NONE, "--name", "exec-host", IMAGE_NAME, "sleep", "600")
    try:
        argv = berth_api.netns.wrap([sys.executable, "-m", "engine", "exec", "-it", "exec-host", "sh"])
        term = Terminal(argv, berth_api.env, 25, 90)
        try:
            check_exec_shell(term)
            term.type("sh -c 'trap \"echo got-int; exit 0\" INT; echo ready; while :; do sleep 0.1; done'\r")
            term.expect(r"ready\r\n")
            term.type("\x03")
            term.expect(r"got-int\r\n")
            term.type("exit 4\r")
            assert term.wait() == 4
        finally:
            term.close()
        alone = berth_api.berth("exec", "-t", "exec-host", "sh", "-c", "tty; exit 2")
        through_api = berth_api.docker("exec", "-t", "exec-host", "sh", "-c", "tty; exit 2")
        assert (alone.returncode, alone.stdout) == (through_api.returncode, through_api.stdout) == (2, "/dev/pts/0\n")
        refused = berth_api.berth("exec", "-it", "exec-host", "sh")
        docker = berth_api.docker("exec", "-it", "exec-host", "sh")
        assert refused.returncode == docker.returncode == 1
        assert "the input device is not a TTY" in refused.stderr and "the input device is not a TTY" in docker.stderr
    finally:
        berth_api.docker("rm", "-f", "exec-host")
