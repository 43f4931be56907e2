"""Issue 11, item 8: a 201 is on disk when it is sent, so a power loss cannot take it back.

A power cut cannot be staged in a test, so the server runs under strace and the test checks
the system calls that make a write durable, in order, before each 201 reaches the client:
the blob's name is fsynced into its directory after the rename or link, and the database's
commit is fsynced (SQLite's write-ahead log; `synchronous=NORMAL` skipped that), all of them
returned before the server sends the response's first bytes (the `write` of "HTTP/1.1 201" to its socket).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_http
from tests.registry.conftest import Api, sha256

SYSCALLS = "fsync,fdatasync,rename,renameat,renameat2,link,linkat,sendto,sendmsg,write,writev"
CREATED = '"HTTP/1.1 201'


class TracedRegistry:
    def __init__(self, root: Path):
        self.log = root / "strace.log"
        self.data = root / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            "strace", "-f", "-qq", "-y", "-s", "12", "-e", f"trace={SYSCALLS}", "-e", "signal=none",
            "-o", str(self.log),
            sys.executable, "-m", "registry", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data),
            "--workers", "1", "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
        wait_http(f"{self.url}/v2/", self.process, timeout=60)

    def calls(self) -> list[str]:
        """Every traced call so far, in order (strace writes each line as the call returns)."""
        return self.log.read_text().splitlines()

    def calls_through_201(self, since: int) -> tuple[list[str], int]:
        """The calls, once the write of a 201 after index `since` is among them, and its index.
        The client may read the answer before strace has written that call's line: wait for it."""
        deadline = time.monotonic() + 10
        while True:
            calls = self.calls()
            sent = next((i for i in range(since, len(calls)) if CREATED in calls[i]), None)
            if sent is not None:
                return calls, sent
            assert time.monotonic() < deadline, "no 201 was sent:\n" + "\n".join(calls[since:])
            time.sleep(0.05)

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


def assert_blob_durable(server: TracedRegistry, digest: str, since: int) -> None:
    """The call that named the blob (rename or link) is followed by an fsync of its
    directory, and the database committed with an fsync of its log, both before the 201."""
    hexdigest = digest.partition(":")[2]
    directory = server.data / "blobs" / "sha256" / hexdigest[:2]
    calls, created = server.calls_through_201(since)
    named = next((i for i in range(since, created) if f"{directory}/{hexdigest}" in calls[i]), None)
    assert named is not None, "\n".join(calls[since:created])
    sync = re.compile(rf"\bfsync\(\d+<{re.escape(str(directory))}>")
    assert _synced_before(calls, sync, named, created), "\n".join(calls[named : created + 1])
    assert _synced_before(calls, WAL_SYNC, since, created), "\n".join(calls[since : created + 1])


WAL_SYNC = re.compile(r"\bf(data)?sync\(\d+<[^>]*registry\.db-wal>")


def _synced_before(calls: list[str], sync: re.Pattern[str], start: int, end: int) -> bool:
    """A sync matching `sync` began after `start` and returned before `end`. strace writes a call
    that another thread interrupts as `... <unfinished ...>` and later `<... fsync resumed>`."""
    for i in range(start, end):
        if not sync.search(calls[i]):
            continue
        if "<unfinished ...>" not in calls[i]:
            return True
        thread = calls[i].split(maxsplit=1)[0]
        if any(line.startswith(f"{thread} <... ") for line in calls[i + 1 : end]):
            return True
    return False


def test_a_small_blob_is_durable_when_acknowledged(traced: TracedRegistry) -> None:
    api = Api(traced.url, "durable/small", requests.Session())
    data = os.urandom(4096)
    since = len(traced.calls())
    assert_blob_durable(traced, api.push_blob(data), since)


def test_an_uploaded_blob_is_durable_when_acknowledged(traced: TracedRegistry) -> None:
    api = Api(traced.url, "durable/large", requests.Session())
    data = os.urandom(3 * 1024 * 1024)
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    assert api.http.patch(f"{traced.url}{location}", data=data).status_code == 202
    since = len(traced.calls())
    assert api.http.put(f"{traced.url}{location}?digest={sha256(data)}").status_code == 201
    assert_blob_durable(traced, sha256(data), since)


def test_a_manifest_is_durable_when_acknowledged(traced: TracedRegistry) -> None:
    api = Api(traced.url, "durable/image", requests.Session())
    body = api.image([os.urandom(100)])
    since = len(traced.calls())
    assert api.put_manifest("v1", body).status_code == 201
    calls, created = traced.calls_through_201(since)
    assert _synced_before(calls, WAL_SYNC, since, created), "\n".join(calls[since : created + 1])
