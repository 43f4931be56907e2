"""Issue 11, item 8: a 201 is on disk when it is sent, so a power loss cannot take it back.

A power cut cannot be staged in a test, so the server runs under strace and the test checks
the system calls that make a write durable, in order, before each 201 reaches the client:
the blob's name is fsynced into its directory after the rename or link, and the database's
commit is fsynced (SQLite's write-ahead log; `synchronous=NORMAL` skipped that).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_http
from tests.registry.conftest import Api, sha256

SYSCALLS = "fsync,fdatasync,rename,renameat,renameat2,link,linkat"


class TracedRegistry:
    def __init__(self, root: Path):
        self.log = root / "strace.log"
        self.data = root / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            "strace", "-f", "-qq", "-y", "-e", f"trace={SYSCALLS}", "-e", "signal=none", "-o", str(self.log),
            sys.executable, "-m", "registry", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data),
            "--workers", "1", "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
        wait_http(f"{self.url}/v2/", self.process, timeout=60)

    def calls(self) -> list[str]:
        """Every traced call so far, in order (strace writes each line as the call returns)."""
        return self.log.read_text().splitlines()

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedRegistry]:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (Debian package strace)")
    server = TracedRegistry(tmp_path_factory.mktemp("traced"))
    yield server
    server.stop()


def assert_blob_durable(server: TracedRegistry, digest: str, wal_syncs_before: int) -> None:
    """The call that named the blob (rename or link) is followed by an fsync of its
    directory, and the database committed with an fsync of its log."""
    hexdigest = digest.partition(":")[2]
    directory = server.data / "blobs" / "sha256" / hexdigest[:2]
    calls = server.calls()
    named = next((i for i, line in enumerate(calls) if f"{directory}/{hexdigest}" in line), None)
    assert named is not None, "\n".join(calls[-20:])
    sync = re.compile(rf"\bfsync\(\d+<{re.escape(str(directory))}>")
    assert any(sync.search(line) for line in calls[named:]), "\n".join(calls[named:])
    assert _wal_syncs(calls) > wal_syncs_before


def _wal_syncs(calls: list[str]) -> int:
    return sum(1 for line in calls if re.search(r"\bf(data)?sync\(\d+<[^>]*registry\.db-wal>", line))


def test_a_small_blob_is_durable_when_acknowledged(traced: TracedRegistry) -> None:
    api = Api(traced.url, "durable/small", requests.Session())
    data = os.urandom(4096)
    before = _wal_syncs(traced.calls())
    assert_blob_durable(traced, api.push_blob(data), before)


def test_an_uploaded_blob_is_durable_when_acknowledged(traced: TracedRegistry) -> None:
    api = Api(traced.url, "durable/large", requests.Session())
    data = os.urandom(3 * 1024 * 1024)
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    assert api.http.patch(f"{traced.url}{location}", data=data).status_code == 202
    before = _wal_syncs(traced.calls())
    assert api.http.put(f"{traced.url}{location}?digest={sha256(data)}").status_code == 201
    assert_blob_durable(traced, sha256(data), before)


def test_a_manifest_is_durable_when_acknowledged(traced: TracedRegistry) -> None:
    api = Api(traced.url, "durable/image", requests.Session())
    body = api.image([os.urandom(100)])
    before = _wal_syncs(traced.calls())
    assert api.put_manifest("v1", body).status_code == 201
    assert _wal_syncs(traced.calls()) > before
