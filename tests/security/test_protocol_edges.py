"""Small protocol holes of issue 11, item 7, and the interoperability fixes, over HTTP and the CLI."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, RegistryProcess, free_port, wait_http
from tests.registry.conftest import OCI_MANIFEST, Api, berth, error_code, sha256

DRIVERLESS = "postgresql+psycopg://u@127.0.0.1:1/db"
PAGE_ENDPOINTS = ("/v2/{name}/tags/list", "/v2/_catalog")


class Guarded:
    """A registry with short client timeouts and few connections, started with a low soft
    limit of open files (as many systems have): it must raise the limit itself."""

    def __init__(self, data_dir: Path, client_timeout: str = "2s"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "registry", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(data_dir),
            "--workers", "1", "--log-level", "warning", "--client-timeout", client_timeout, "--max-connections", "64",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, preexec_fn=_low_file_limit)
        wait_http(f"{self.url}/v2/", self.process, timeout=60)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def _low_file_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    process = Guarded(tmp_path_factory.mktemp("guarded"))
    yield process
    process.stop()


def test_a_tag_with_a_trailing_newline_is_refused(api: Api) -> None:
    body = api.image([b"layer"])
    refused = api.put_manifest("v1%0a", body)
    assert refused.status_code == 400 and error_code(refused) == "TAG_INVALID"
    assert api.http.get(api.url("manifests/v1")).status_code == 404
    assert api.put_manifest("v1", body).status_code == 201
    assert api.http.get(api.url("tags/list")).json()["tags"] == ["v1"]


def test_a_digest_with_a_newline_is_refused_not_echoed(api: Api) -> None:
    data = b"echo me"
    digest = api.push_blob(data)
    for method in ("GET", "HEAD", "DELETE"):
        response = api.http.request(method, api.url(f"blobs/{digest}%0a"))
        assert response.status_code == 400, method
    mounted = api.http.post(api.url(f"blobs/uploads/?mount={digest}%0a&from={api.name}"))
    assert mounted.status_code == 400 and error_code(mounted) == "DIGEST_INVALID"
    referrers = api.http.get(api.url(f"referrers/{digest}%0a"))
    assert referrers.status_code == 400
    assert api.http.get(api.url(f"blobs/{digest}")).content == data


@pytest.mark.parametrize("n", ["99999999999999999999", "²", "-1", "1e3", " 5"])
def test_a_page_size_that_is_no_small_number_is_a_400(api: Api, n: str) -> None:
    api.put_manifest("latest", api.image([b"x"]))
    for path in PAGE_ENDPOINTS:
        response = api.http.get(api.base + path.format(name=api.name), params={"n": n})
        assert response.status_code == 400 and error_code(response) == "PAGINATION_NUMBER_INVALID", (path, n)


@pytest.mark.parametrize("last", ["\x00", "a\x00b", "x" * 5000])
def test_a_page_cursor_no_name_can_be_is_a_400(api: Api, last: str) -> None:
    """PostgreSQL cannot compare a string holding NUL: it was a 500 there (found by Hypothesis)."""
    api.put_manifest("latest", api.image([b"x"]))
    for path in PAGE_ENDPOINTS:
        response = api.http.get(api.base + path.format(name=api.name), params={"n": "1", "last": last})
        assert response.status_code == 400 and error_code(response) == "PAGINATION_NUMBER_INVALID", (path, last)
    assert api.http.get(api.url("tags/list"), params={"last": "a"}).status_code == 200


def test_a_deeply_nested_manifest_is_invalid_not_a_crash(api: Api) -> None:
    depth = 100_000
    for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        response = api.put_manifest("deep", body.encode())
        assert response.status_code == 400 and error_code(response) == "MANIFEST_INVALID"
    assert api.http.get(api.url("manifests/deep")).status_code == 404


def test_a_manifest_declared_as_html_is_never_rendered(api: Api) -> None:
    config = api.push_blob(b"{}")
    document = {
        "schemaVersion": 2,
        "mediaType": "text/html",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [],
        "annotations": {"x": "<script>alert(1)</script>"},
    }
    assert api.put_manifest("page", json.dumps(document).encode(), "text/html").status_code == 201
    served = api.http.get(api.url("manifests/page"))
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served.headers["Content-Security-Policy"]
    assert api.http.get(f"{api.base}/v2/").headers["X-Content-Type-Options"] == "nosniff"


def test_a_manifest_with_a_missing_blob_is_a_400(api: Api) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": 37},
        "layers": [],
    }
    response = api.put_manifest("missing", json.dumps(document).encode())
    assert response.status_code == 400 and error_code(response) == "MANIFEST_BLOB_UNKNOWN"


def _request_head(server: Guarded, method: str, path: str, length: int) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: {length}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def test_a_body_that_goes_quiet_is_timed_out(guarded: Guarded) -> None:
    location = requests.post(f"{guarded.url}/v2/slow/app/blobs/uploads/").headers["Location"]
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(_request_head(guarded, "PATCH", location, 1 << 30) + b"abcd")
        sock.settimeout(20)
        answer = b""
        while chunk := sock.recv(65536):  # the server answers, then closes the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    status = requests.get(f"{guarded.url}{location}")
    assert status.status_code == 204 and status.headers["Range"] == "0-3"  # what arrived is kept


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", "/v2/slow/app/manifests/v1"), ("POST", "/v2/slow/app/blobs/uploads/?digest=")]
)
def test_a_small_body_that_goes_quiet_is_a_408(guarded: Guarded, method: str, path: str) -> None:
    if path.endswith("="):
        path += sha256(b"x" * 1000)
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(_request_head(guarded, method, path, 1000) + b'{"schemaVersion":')
        sock.settimeout(20)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"stopped arriving" in answer


def test_a_connection_that_never_sends_its_headers_is_closed(guarded: Guarded) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        sock.settimeout(20)
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 15


def test_idle_connections_cannot_starve_healthz(tmp_path: Path) -> None:
    """600 idle sockets against 64 slots and a 60 s header timeout: each new connection takes the slot
    of the one that has waited longest, so /healthz answers during the flood, not after it times out."""
    server = Guarded(tmp_path / "data", client_timeout="60s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    idle: list[socket.socket] = []
    try:
        for _ in range(600):  # far beyond the server's soft limit of 256 and its 64 connections
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        started = time.monotonic()
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
        assert time.monotonic() - started < 10
        assert sum(map(_closed_by_server, idle)) >= len(idle) - 64  # the flood holds at most the server's slots
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        server.stop()


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_gc_counts_the_bytes_of_the_uploads_it_removes(tmp_path: Path) -> None:
    server = RegistryProcess(tmp_path / "data")
    try:
        location = requests.post(f"{server.url}/v2/gc/app/blobs/uploads/").headers["Location"]
        chunk = requests.patch(f"{server.url}{location}", data=os.urandom(3 * 1024 * 1024))
        assert chunk.status_code == 202
    finally:
        server.stop()
    output = berth("gc", "--grace", "0", "--data-dir", str(tmp_path / "data"))
    assert "1 uploads: 3.0 MiB reclaimed" in output, output


def test_a_missing_database_driver_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", "db", "current", "--database-url", DRIVERLESS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pip install 'berth[postgres]'" in result.stderr
