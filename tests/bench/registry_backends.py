"""What the benchmark's optional modes start beside the registries: a throwaway PostgreSQL
cluster, moto's S3 server, accounts in our index (`berth user add` / `berth grant`) and an
htpasswd file for Distribution. Everything listens on loopback and lives in scratch directories.
"""

from __future__ import annotations

import glob
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from registry_servers import REPO_ROOT, children, free_port

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BENCH_USER, BENCH_PASSWORD = "bench", "bench-password-0123456789"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    binary = found[-1] if found else shutil.which(name)
    if not binary:
        raise RuntimeError(f"{name} is missing: apt-get install -y postgresql")
    return binary


class Postgres:
    """A PostgreSQL cluster in a temp directory, `-A trust`, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="berth-bench-pg-"))
        self.directory.chmod(0o755)
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.data = self.directory / "data"
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://bench@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            [*self.as_user, _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "bench", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # synchronous_commit=off matches SQLite's WAL + synchronous=NORMAL that our SQLite index
        # uses: no flush per commit, crash-safe, the last transactions may be lost on power loss.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c max_connections=300 "
            "-c synchronous_commit=off"
        )
        subprocess.run(
            [
                *self.as_user,
                _pg_bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.directory / "log"),
                "-w",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.started = True

    def pids(self) -> list[int]:
        """The postmaster and its backends (their CPU belongs to the server under test)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [pid, *children(pid)]

    def new_database(self) -> str:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"berth_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        engine.dispose()
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                [*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        shutil.rmtree(self.directory, ignore_errors=True)


class MotoS3:
    """moto's standalone S3 server (Python, objects in memory) on 127.0.0.1 and a free port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.workdir / "moto.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **S3_ENV},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited with {self.process.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto did not answer within {timeout}s")

    def new_bucket(self) -> str:
        import boto3

        name = f"berth-bench-{uuid.uuid4().hex[:10]}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=name)
        return name

    def pids(self) -> list[int]:
        return [] if self.process is None else [self.process.pid]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def berth_command() -> list[str]:
    found = shutil.which("berth")
    return [found] if found else [sys.executable, "-c", "from engine.cli import main; main()"]


def add_account(backend_args: list[str], env: dict[str, str]) -> None:
    """`berth user add bench --password-stdin` and a grant of everything, on the server's index."""
    run_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    steps = [
        (["user", "add", BENCH_USER, "--password-stdin"], BENCH_PASSWORD + "\n"),
        (["grant", BENCH_USER, "*", "pull,push,delete"], None),
    ]
    for args, stdin in steps:
        proc = subprocess.run(
            [*berth_command(), *args, *backend_args],
            input=stdin,
            capture_output=True,
            text=True,
            env=run_env,
            cwd=REPO_ROOT,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"berth {' '.join(args)} failed ({proc.returncode}): {proc.stdout} {proc.stderr}")


def write_htpasswd(path: Path, rounds: int = 4) -> None:
    """A bcrypt htpasswd file for Distribution. Cost 4 (the minimum): Distribution checks the
    bcrypt hash on every request, so the cost factor sets its auth overhead directly."""
    import bcrypt

    hashed = bcrypt.hashpw(BENCH_PASSWORD.encode(), bcrypt.gensalt(rounds=rounds)).decode()
    path.write_text(f"{BENCH_USER}:{hashed}\n")


def basic_header() -> str:
    import base64

    return "Basic " + base64.b64encode(f"{BENCH_USER}:{BENCH_PASSWORD}".encode()).decode()


def fetch_token(host: str, port: int, service: str, scope: str) -> str:
    """`GET /token?service=...&scope=...` with Basic credentials, as docker does after a 401."""
    from urllib.parse import urlencode

    path = "/token?" + urlencode({"service": service, "scope": scope})
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": basic_header()})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path} with Basic credentials -> {response.status} {body[:300]!r}")
    import json

    data = json.loads(body)
    token = data.get("token") or data.get("access_token")
    if not token:
        raise RuntimeError(f"GET {path} -> 200 without a token: {body[:300]!r}")
    return token


def auth_headers(server: object, repository: str, actions: str = "pull,push") -> dict[str, str]:
    """The Authorization header a workload sends to `server` for `repository`: a fresh Bearer
    token from our /token (they last 300 s: fetch one before each timed run), Basic for an
    htpasswd Distribution, nothing for an open registry."""
    mode = getattr(server, "auth", None)
    if mode == "token":
        scope = f"repository:{repository}:{actions}"
        token = fetch_token(server.host, server.port, server.token_service, scope)  # type: ignore[attr-defined]
        return {"Authorization": f"Bearer {token}"}
    if mode == "basic":
        return {"Authorization": basic_header()}
    return {}
