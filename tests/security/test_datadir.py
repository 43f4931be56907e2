"""The data directory holds the token-signing key: no other local user may read it.

The directories these tests use are world-traversable (0755 under /tmp) on purpose, so only the
registry's own modes keep another user out; `nobody` then tries to read the files.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, RegistryProcess, free_port
from tests.e2e.conftest import launch_registry
from tests.registry.conftest import berth, sha256

NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every local user may enter, as /srv or /var/lib are."""
    path = Path(tempfile.mkdtemp(prefix="berth-sec-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def nobody_reads(path: Path) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("reading as another user needs root and setpriv (util-linux)")
    return subprocess.run([*NOBODY, "cat", str(path)], capture_output=True, text=True)


def assert_private(path: Path) -> None:
    wanted = 0o700 if path.is_dir() else 0o600
    assert mode(path) & 0o077 == 0, f"{path} is {mode(path):04o}, wanted {wanted:04o}"


def test_a_new_data_directory_keeps_other_users_out(open_dir: Path) -> None:
    data = open_dir / "registry"
    server = RegistryProcess(data)
    try:
        blob = b"a private layer"
        response = requests.post(f"{server.url}/v2/team/app/blobs/uploads/?digest={sha256(blob)}", data=blob)
        assert response.status_code == 201, response.text
        database = data / "registry.db"
        assert (data / "registry.db-wal").exists()  # the server is running: WAL mode keeps it open
        blob_file = data / "blobs" / "sha256" / sha256(blob)[7:9] / sha256(blob)[7:]
        for path in (data, database, data / "registry.db-wal", data / "blobs", blob_file, data / "metrics"):
            assert_private(path)
        for path in (data / "metrics").iterdir():
            assert_private(path)
        for path in (database, data / "registry.db-wal", blob_file):
            refused = nobody_reads(path)
            assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
    finally:
        server.stop()


def test_an_existing_open_data_directory_is_tightened_on_start(open_dir: Path) -> None:
    data = open_dir / "registry"
    berth("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="alice-secret\n")
    (data / "blobs").mkdir(exist_ok=True)
    (data / "tls").mkdir(exist_ok=True)
    # As an older berth (or a careless restore) left it.
    for path, loose in ((data, 0o755), (data / "registry.db", 0o644), (data / "blobs", 0o755), (data / "tls", 0o755)):
        path.chmod(loose)
    log = open_dir / "serve.log"
    server = launch_registry(data, log, tls_hosts="127.0.0.1")
    try:
        for path in (data, data / "registry.db", data / "blobs", data / "tls"):
            assert_private(path)
        for key in ("ca.key", "server.key"):
            assert_private(data / "tls" / key)
        said = log.read_text()
        assert f"made private: {data}: 0755 -> 0700" in said, said
        assert f"made private: {data / 'registry.db'}: 0644 -> 0600" in said, said
        assert nobody_reads(data / "registry.db").returncode != 0
    finally:
        server.stop()


def test_a_database_elsewhere_is_private_and_its_directory_left_alone(open_dir: Path) -> None:
    shared = open_dir / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    database = shared / "berth.db"
    server = RegistryProcess(open_dir / "data", args=("--database-url", f"sqlite:///{database}"))
    try:
        assert requests.get(f"{server.url}/v2/").status_code == 200
        assert_private(database)
        assert mode(shared) == 0o755  # not ours to change: it may hold other people's files
        assert not (open_dir / "data" / "registry.db").exists()
        assert nobody_reads(database).returncode != 0
    finally:
        server.stop()


def test_refuses_to_start_when_the_signing_key_cannot_be_made_private(open_dir: Path) -> None:
    """An immutable file (chattr +i) refuses chmod even to root, like a file owned by someone else
    refuses it to an ordinary user."""
    data = open_dir / "registry"
    berth("user", "add", "alice", "--password-stdin", "--data-dir", str(data), stdin="alice-secret\n")
    database = data / "registry.db"
    database.chmod(0o644)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(database)]).returncode != 0:
        pytest.skip("needs chattr +i (root on a filesystem with immutable files)")
    try:
        port = free_port()
        started = subprocess.run(
            [sys.executable, "-m", "registry", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)
    assert started.returncode == 1, started
    assert f"{database} holds the token-signing key" in started.stderr, started.stderr
    assert "mode 0644" in started.stderr and f"chmod 600 {database}" in started.stderr, started.stderr
    assert "Traceback" not in started.stderr
