"""The OCI layout API the engine uses, and downloads into it that resume with Range."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from client.api import RegistryAPI
from client.copy import copy_image
from client.errors import NotFound, VerificationError
from client.image import BlobStream
from client.layout import REF_NAME, Layout
from client.layout_image import LayoutTarget
from client.location import Options, open_source, open_target, parse_location
from client.platform import Platform
from client.pull import RegistrySource
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor
from registry.oci.reference import parse_reference
from tests.client.conftest import BERTH_COMMAND
from tests.client.fakes import ScriptedServer
from tests.client.images import build_image, build_index, random_bytes

BLOB = random_bytes(3_000_000, 11)
DIGEST = digest_bytes(BLOB)


def test_layout_entries_names_and_gc(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "l", create=True)
    assert json.loads((tmp_path / "l" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    first = build_image(layout, "example.com/a:v1", [{"a": b"1"}])
    second = build_image(layout, "example.com/a:v1", [{"a": b"2"}])
    assert [e.name for e in layout.entries()] == ["example.com/a:v1"]
    assert layout.resolve("example.com/a:v1").digest == second.digest
    index = json.loads((tmp_path / "l" / "index.json").read_text())
    assert index["manifests"][0]["annotations"][REF_NAME] == "example.com/a:v1"
    removed = layout.gc()
    assert first.digest in removed and layout.has_blob(second.digest)
    assert layout.remove("example.com/a:v1") and not layout.remove("example.com/a:v1")
    with pytest.raises(NotFound):
        layout.resolve("example.com/a:v1")


def test_image_descends_an_index_to_the_platform(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "l", create=True)
    build_index(layout, "multi:v1")
    for arch in ("amd64", "arm64"):
        _, manifest = layout.image("multi:v1", Platform("linux", arch))
        assert json.loads(layout.read_blob(manifest.config.digest))["architecture"] == arch
    with pytest.raises(NotFound):
        layout.image("multi:v1", Platform("linux", "riscv64"))


def test_open_requires_a_layout(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        Layout.open(tmp_path / "missing")


def _blob_server(cut_first_at: int | None) -> ScriptedServer:
    state = {"cut": cut_first_at}

    def handle(request: BaseHTTPRequestHandler) -> None:
        start = 0
        if request.headers.get("Range"):
            start = int(request.headers["Range"].split("=")[1].split("-")[0])
        body = BLOB[start:]
        request.send_response(206 if start else 200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if state["cut"] is not None:
            request.wfile.write(body[: state["cut"]])
            request.wfile.flush()
            state["cut"] = None
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_WR)
            return
        request.wfile.write(body)

    return ScriptedServer(handle)


def _download(server: ScriptedServer, layout: Layout) -> None:
    source = RegistrySource(RegistryAPI.connect(server.host), parse_reference(f"{server.host}/r/blob:v1"))
    target = LayoutTarget(layout, None, "test")
    target.put_blob(Descriptor("application/octet-stream", DIGEST, len(BLOB)), source, lambda n: None, ())


def test_a_dropped_download_resumes_with_range(tmp_path: Path) -> None:
    server = _blob_server(cut_first_at=2_500_000)
    try:
        layout = Layout.open(tmp_path / "l", create=True)
        _download(server, layout)
        assert layout.read_blob(DIGEST) == BLOB
        ranges = [h.get("Range") for method, path, h in server.seen if "/blobs/" in path]
        assert ranges[0] is None and ranges[1] == "bytes=2500000-", "every byte received is kept"
        assert not layout.partial_path(DIGEST).exists()
    finally:
        server.stop()


def test_an_interrupted_pull_resumes_from_its_partial_file(tmp_path: Path) -> None:
    server = _blob_server(cut_first_at=None)
    try:
        layout = Layout.open(tmp_path / "l", create=True)
        partial = layout.partial_path(DIGEST)
        partial.parent.mkdir(parents=True)
        partial.write_bytes(BLOB[:2_000_000])
        _download(server, layout)
        assert layout.read_blob(DIGEST) == BLOB
        assert [h.get("Range") for _, p, h in server.seen if "/blobs/" in p] == ["bytes=2000000-"]
    finally:
        server.stop()


class _Source:
    """A source that serves other bytes than its descriptors promise."""

    name = "liar"
    registry = None
    origins = None

    def open_blob(self, descriptor: Descriptor, offset: int = 0) -> BlobStream:
        return BlobStream(iter([b"not what you asked for"]), 0)


def test_wrong_bytes_are_never_committed(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "l", create=True)
    target = LayoutTarget(layout, None, "test")
    with pytest.raises(VerificationError):
        target.put_blob(Descriptor("x/y", DIGEST, 22), _Source(), lambda n: None, ())  # type: ignore[arg-type]
    assert not layout.has_blob(DIGEST)


def test_concurrent_pulls_of_one_image_agree(distribution, tmp_path: Path) -> None:
    """Processes pulling the same blobs into one store at once must all succeed."""
    store = Layout.open(tmp_path / "src", create=True)
    ref = f"{distribution.host}/concurrent/app:v1"
    build_image(store, "v1", [{"big": random_bytes(4_000_000, 21)}, {"small": b"s"}], compress=False)
    copy_image(
        open_source(parse_location(f"oci:{tmp_path / 'src'}:v1"), Options()),
        open_target(parse_location(ref), Options()),
    )
    env = {**os.environ, "BERTH_ROOT": str(tmp_path / "shared")}
    command = [*BERTH_COMMAND, "pull", ref, "-q"]
    runs = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE) for _ in range(3)]
    assert [r.wait(60) for r in runs] == [0, 0, 0], [r.stderr.read() for r in runs if r.stderr]
    shared = Layout.open(tmp_path / "shared" / "images")
    _, manifest = shared.image(str(parse_reference(ref)))
    assert all(digest_bytes(shared.read_blob(layer.digest)) == layer.digest for layer in manifest.layers)


def test_discard_drops_only_the_entries_picked_and_gc_then_collects(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "store", create=True)
    kept = Descriptor("application/vnd.example+json", layout.write_blob(b'{"kept": 1}'), 11)
    dropped_blob = layout.write_blob(b'{"dropped": 1}')
    dropped = Descriptor("application/vnd.example+json", dropped_blob, 14, "application/x-cache")
    layout.add(kept, "example.com/kept:1")
    layout.add(dropped, None)
    assert layout.discard(lambda d: d.artifact_type == "application/x-cache") == 1
    assert layout.discard(lambda d: d.artifact_type == "application/x-cache") == 0
    assert [e.name for e in layout.entries()] == ["example.com/kept:1"]
    assert layout.gc() == [dropped_blob] and layout.has_blob(kept.digest)
