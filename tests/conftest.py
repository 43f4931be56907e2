"""Fixtures shared by every test package: real servers on loopback ports."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
# The browser fixtures (one Chromium per session) for tests/ui and tests/e2e alike.
pytest_plugins = ["tests.ui.browser"]


@pytest.fixture(autouse=True)
def default_umask() -> Iterator[None]:
    """Every test starts with the usual umask, and a command run in-process that changes it
    (the registry's admin commands make files private) cannot leak it into later tests."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dockerd_command(root: Path, *extra: str) -> list[str]:
    """A private dockerd under `root` (socket `root/docker.sock`): no iptables, no bridge, so it
    runs beside anything else on the machine and only its own containers see it."""
    return [
        "dockerd",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(root / "exec"),
        "--pidfile",
        str(root / "dockerd.pid"),
        "-H",
        f"unix://{root / 'docker.sock'}",
        *extra,
    ]


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"no answer from {url} after {timeout}s")


class RegistryProcess:
    """`python -m registry` in its own process group on a free loopback port."""

    def __init__(self, data_dir: Path, workers: int = 1, env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        command = [
            sys.executable,
            "-m",
            "registry",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(data_dir),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            *args,
        ]
        self.process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True)
        wait_http(f"{self.url}/v2/", self.process)

    def settings_flags(self) -> list[str]:
        """The flags that make another `berth` command act on this registry."""
        return ["--data-dir", str(self.data_dir), *(a for a in self.args if a)]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a loopback port (run as `postgres` when we are root)."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries are missing (Debian package postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="berth-pg-"))
    directory.chmod(0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = directory / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "berth", "--no-sync"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off -c max_connections=300"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql+psycopg://berth@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server over HTTP on a loopback port."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(key, value)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url, process)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait()


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"berth-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def new_database(server_url: str) -> str:
    """A fresh database on the test cluster, so registries never see each other's rows."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"berth_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


BACKENDS = ["sqlite-file", "postgres-s3"]


def backend_args(request: pytest.FixtureRequest, backend: str) -> tuple[str, ...]:
    """Server flags for a backend combination; fixtures for the services start on demand."""
    if backend == "sqlite-file":
        return ()
    endpoint = request.getfixturevalue("s3_endpoint")
    database = new_database(request.getfixturevalue("postgres_url"))
    return ("--database-url", database, "--storage", f"s3://{new_bucket(endpoint)}/registry", "--s3-endpoint", endpoint)


@pytest.fixture(scope="session", params=BACKENDS)
def registry_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryProcess]:
    server = RegistryProcess(tmp_path_factory.mktemp("registry"), args=backend_args(request, request.param))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_url(registry_process: RegistryProcess) -> str:
    return registry_process.url
