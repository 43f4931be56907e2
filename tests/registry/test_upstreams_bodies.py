"""Blob bodies through the pull-through cache from upstreams that send them chunked without a
length, announce a length they do not send, send less or corrupt bytes; over TLS; into S3.
Whatever the upstream does, a client gets the whole blob or a cut connection, and storage holds
the verified blob or nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import requests

from tests.client.images import random_bytes
from tests.client.servers import DISTRIBUTION, Distribution, loopback_certificate
from tests.conftest import RegistryProcess, new_bucket
from tests.registry.mangling_upstream import ManglingUpstream
from tests.registry.test_upstreams import add_upstream, manifest, push_image, wait_for

pytestmark = pytest.mark.skipif(not DISTRIBUTION, reason="docker-registry (CNCF Distribution) is not installed")
SIZE = 9 * 1024 * 1024 + 12345
"""The layer's file (its tar is a little larger): more than two of a fetch's 4 MiB chunks and
one 8 MiB S3 write batch, a multiple of neither."""
STALLED = 48


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Distribution]:
    server = Distribution(tmp_path / "upstream")
    yield server
    server.stop()


@pytest.fixture
def mangling(plain: Distribution) -> Iterator[ManglingUpstream]:
    server = ManglingUpstream(plain.url)
    yield server
    server.stop()


def cached_layer(tmp_path: Path, pushed_to: str, berth: RegistryProcess, upstream: str, *flags: str) -> dict:
    """Push an image of one SIZE-byte layer, configure `upstream` as `hub`; the layer's descriptor."""
    push_image(tmp_path, pushed_to, "bodies/app:1", [{"layer": random_bytes(SIZE, 21)}], compress=False)
    add_upstream(berth.data_dir, "up", upstream, "--prefix", "hub", *flags)
    wait_for(lambda: manifest(berth, "hub/bodies/app", "1").status_code == 200)
    layer: dict = json.loads(manifest(berth, "hub/bodies/app", "1").content)["layers"][0]
    return layer


def blob_url(berth: RegistryProcess, layer: dict) -> str:
    return f"{berth.url}/v2/hub/bodies/app/blobs/{layer['digest']}"


def assert_pulls_whole(berth: RegistryProcess, layer: dict) -> requests.Response:
    response = requests.get(blob_url(berth, layer), timeout=60)
    assert response.status_code == 200
    assert "sha256:" + hashlib.sha256(response.content).hexdigest() == layer["digest"]
    return response


def assert_cut_off(berth: RegistryProcess, layer: dict) -> None:
    """The client's body breaks off: never a complete response that is not the blob."""
    with pytest.raises(requests.RequestException):
        requests.get(blob_url(berth, layer), timeout=60).content  # noqa: B018 (reading the body is the test)


def stored_files(berth: RegistryProcess, layer: dict) -> list[Path]:
    blobs = berth.data_dir / "blobs"
    return [*blobs.rglob(layer["digest"].split(":")[1]), *(blobs / "_uploads").iterdir()]


def test_a_chunked_body_without_a_length_is_verified_stored_and_then_served_from_storage(
    tmp_path: Path, plain: Distribution, mangling: ManglingUpstream
) -> None:
    berth = RegistryProcess(tmp_path / "berth", workers=2)
    try:
        layer = cached_layer(tmp_path, plain.host, berth, mangling.url)
        mangling.mode = "chunked"
        first = assert_pulls_whole(berth, layer)
        assert "Content-Length" not in first.headers  # streamed as it came: the size was not known
        mangling.mode = "corrupt"  # not asked again: the next pull waits for the commit if need be
        assert assert_pulls_whole(berth, layer).headers["Content-Length"] == str(layer["size"])
    finally:
        berth.stop()


def test_an_encoded_body_is_decoded_and_its_length_not_taken_for_the_blobs(
    tmp_path: Path, plain: Distribution, mangling: ManglingUpstream
) -> None:
    """An upstream that gzips the blob although asked for it unencoded: its Content-Length is
    the encoded body's, so the client is sent the decoded blob without a length."""
    berth = RegistryProcess(tmp_path / "berth", workers=2)
    try:
        layer = cached_layer(tmp_path, plain.host, berth, mangling.url)
        mangling.mode = "gzip"
        assert "Content-Length" not in assert_pulls_whole(berth, layer).headers
    finally:
        berth.stop()


@pytest.mark.parametrize("mode", ["longer", "shorter", "corrupt"])
def test_a_body_that_is_not_the_blob_cuts_the_client_off_and_stores_nothing(
    tmp_path: Path, plain: Distribution, mangling: ManglingUpstream, mode: str
) -> None:
    berth = RegistryProcess(tmp_path / "berth", workers=2)
    try:
        layer = cached_layer(tmp_path, plain.host, berth, mangling.url)
        mangling.mode = mode  # type: ignore[assignment]
        assert_cut_off(berth, layer)
        assert stored_files(berth, layer) == []  # cleaned up before the client's cut
        mangling.mode = "pass"
        assert_pulls_whole(berth, layer)
    finally:
        berth.stop()


def test_fetches_waiting_on_a_stalled_upstream_hold_no_threads(
    tmp_path: Path, plain: Distribution, mangling: ManglingUpstream
) -> None:
    """More fetches than a worker has threads (32 for its service calls, 40 for storage reads)
    wait on an upstream that stopped mid-body: the worker still answers other requests, and
    every fetch completes once the upstream goes on."""
    berth = RegistryProcess(tmp_path / "berth", workers=1)
    try:
        push_image(tmp_path, berth.url.removeprefix("http://"), "local/app:1", [{"x": b"local"}], compress=False)
        local = json.loads(manifest(berth, "local/app", "1").content)["layers"][0]["digest"]
        layers = [{f"layer{i}": random_bytes(256 * 1024, 100 + i)} for i in range(STALLED)]
        push_image(tmp_path, plain.host, "stall/app:1", layers, compress=False)
        add_upstream(berth.data_dir, "up", mangling.url, "--prefix", "hub")
        wait_for(lambda: manifest(berth, "hub/stall/app", "1").status_code == 200)
        descriptors = json.loads(manifest(berth, "hub/stall/app", "1").content)["layers"]
        mangling.mode = "stall"
        with ThreadPoolExecutor(STALLED) as pool:
            pulls = [
                pool.submit(requests.get, f"{berth.url}/v2/hub/stall/app/blobs/{d['digest']}", timeout=120)
                for d in descriptors
            ]
            wait_for(lambda: mangling.stalled == STALLED)
            assert requests.get(f"{berth.url}/v2/_catalog", timeout=10).status_code == 200
            stored = requests.get(f"{berth.url}/v2/local/app/blobs/{local}", timeout=10).content
            assert "sha256:" + hashlib.sha256(stored).hexdigest() == local
            mangling.resume.set()
            bodies = [pull.result().content for pull in pulls]
        assert ["sha256:" + hashlib.sha256(body).hexdigest() for body in bodies] == [d["digest"] for d in descriptors]
    finally:
        berth.stop()


def test_a_tls_upstream_with_its_own_ca(tmp_path: Path) -> None:
    cert, key = loopback_certificate(tmp_path)
    upstream = Distribution(tmp_path / "upstream", tls=(cert, key))
    berth = RegistryProcess(tmp_path / "berth", workers=2)
    try:
        layer = cached_layer(tmp_path, upstream.host, berth, upstream.url, "--ca", str(cert))
        assert_pulls_whole(berth, layer)
    finally:
        berth.stop()
        upstream.stop()


def test_s3_storage_holds_the_verified_blob_or_nothing(
    tmp_path: Path, plain: Distribution, mangling: ManglingUpstream, s3_endpoint: str
) -> None:
    bucket = new_bucket(s3_endpoint)
    berth = RegistryProcess(
        tmp_path / "berth", workers=2, args=("--storage", f"s3://{bucket}/r", "--s3-endpoint", s3_endpoint)
    )
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)

    def keys() -> list[str]:
        return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    try:
        layer = cached_layer(tmp_path, plain.host, berth, mangling.url)
        mangling.mode = "corrupt"
        assert_cut_off(berth, layer)
        assert [key for key in keys() if "/uploads/" in key or layer["digest"].split(":")[1] in key] == []
        mangling.mode = "chunked"
        assert_pulls_whole(berth, layer)
        blob_key = f"r/blobs/sha256/{layer['digest'][7:9]}/{layer['digest'][7:]}"
        wait_for(lambda: blob_key in keys())
        stored = s3.get_object(Bucket=bucket, Key=blob_key)["Body"].read()
        assert "sha256:" + hashlib.sha256(stored).hexdigest() == layer["digest"]
    finally:
        berth.stop()
