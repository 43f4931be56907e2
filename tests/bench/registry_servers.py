"""The two registries under test, each started as its own process on a loopback port:
ours (`python -m registry`) and CNCF Distribution (Debian's `/usr/bin/docker-registry`).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (uvicorn's workers), from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclass
class Server:
    """One registry process, its port and its scratch directory."""

    label: str
    command: list[str]
    port: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    # Services whose CPU counts as the server's (PostgreSQL, moto): name -> their current pids.
    backends: dict[str, Callable[[], list[int]]] = field(default_factory=dict)
    # Credentials the workloads send: a Bearer token per repository (ours) or Basic (Distribution).
    auth: str | None = None  # None, "token" or "basic"
    token_service: str = "berth"

    def cpu_pids(self) -> list[int]:
        """The registry's own processes (the backends are metered apart: their pids come and go)."""
        assert self.process is not None
        return sorted({self.process.pid, *self.worker_pids()})

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.workdir / "server.log", "wb")
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in ((401,) if self.auth else (200,)) and self._workers_ready():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not answer GET /v2/ within {timeout}s: {self.log_tail()}")

    def _workers_ready(self) -> bool:
        expected = int(self.env.get("BENCH_EXPECT_WORKERS", "0"))
        return expected <= 1 or len(self.worker_pids()) >= expected

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's children, or the process itself."""
        assert self.process is not None
        return children(self.process.pid) or [self.process.pid]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.workdir / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def ours(
    scratch: Path,
    workers: int | None = None,
    label: str = "berth",
    data_dir: Path | None = None,
    backend_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """Our registry. `data_dir` may be shared by several processes (replicas on SQLite + files);
    `backend_args` are `--database-url/--storage/--s3-endpoint` for PostgreSQL + S3."""
    workdir = scratch / "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    workdir.mkdir()
    port = free_port()
    data = data_dir or workdir / "data"
    command = [sys.executable, "-m", "registry", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)]
    command += backend_args or []
    if workers:
        command += ["--workers", str(workers)]
    expected = workers or os.cpu_count() or 1
    full_env = {"BENCH_EXPECT_WORKERS": str(expected), "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return Server(label, command, port, workdir, full_env)


DISTRIBUTION_HTPASSWD = """auth:
  htpasswd:
    realm: bench
    path: {path}
"""


def distribution(scratch: Path, label: str = "distribution", htpasswd: Path | None = None) -> Server:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        raise RuntimeError("docker-registry is not installed: apt-get install -y docker-registry")
    workdir = scratch / "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    workdir.mkdir()
    port = free_port()
    config = workdir / "config.yml"
    text = DISTRIBUTION_CONFIG.format(root=workdir / "data", port=port)
    if htpasswd is not None:
        text += DISTRIBUTION_HTPASSWD.format(path=htpasswd)
    config.write_text(text)
    server = Server(label, [binary, "serve", str(config)], port, workdir)
    server.auth = "basic" if htpasswd is not None else None
    return server


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="berth-bench-"))
