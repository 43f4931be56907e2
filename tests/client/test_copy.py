"""Push, pull and copy through the CLI against real registries (Distribution and ours)."""

from __future__ import annotations

import json

import pytest

from client.api import RegistryAPI
from client.copy import copy_image
from client.layout import Layout, store_name
from client.location import Options, open_source, open_target, parse_location
from client.platform import Platform
from tests.client.conftest import Berth, Registry
from tests.client.images import build_image, build_index, random_bytes


def _layers() -> list[dict[str, bytes]]:
    return [{"etc/hostname": b"berth\n"}, {"bin/app": random_bytes(200_000, 1)}, {"data/x": b"x" * 10_000}]


def test_push_pull_round_trip_keeps_digest(registry: Registry, store: Layout, berth: Berth) -> None:
    ref = f"{registry.host}/round/trip:v1"
    pushed = build_image(store, store_name(ref), _layers())
    out = json.loads(berth("push", ref, "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    assert set(out["blobs"].values()) == {"pushed"}

    store.remove(store_name(ref))
    assert store.gc()
    berth("pull", ref, "-q")
    assert store.resolve(store_name(ref)).digest == pushed.digest
    _, manifest = store.image(store_name(ref))
    assert all(store.has_blob(layer.digest) for layer in manifest.layers)


def test_second_push_skips_existing_blobs(registry: Registry, store: Layout, berth: Berth) -> None:
    ref = f"{registry.host}/skip/me:v1"
    build_image(store, store_name(ref), _layers())
    berth("push", ref, "-q")
    again = json.loads(berth("push", ref, "--format", "json").stdout)
    assert set(again["blobs"].values()) == {"exists"}


def test_copy_between_repositories_mounts_blobs(registry: Registry, store: Layout, berth: Berth) -> None:
    src = f"{registry.host}/mount/source:v1"
    pushed = build_image(store, store_name(src), _layers())
    berth("push", src, "-q")
    out = json.loads(berth("copy", src, f"{registry.host}/mount/target:v1", "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    assert set(out["blobs"].values()) == {"mounted"}


def test_copy_between_registries_streams(distribution, registry: Registry, store: Layout, berth: Berth) -> None:
    src = f"{registry.host}/cross/app:v1"
    pushed = build_image(store, store_name(src), _layers())
    berth("push", src, "-q")
    out = json.loads(berth("copy", src, f"docker://{distribution.host}/cross/app:copied", "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    assert set(out["blobs"].values()) <= {"pushed", "exists"}
    api = RegistryAPI.connect(distribution.host)
    assert api.list_tags("cross/app") == ["copied"]


def test_two_platform_index(registry: Registry, store: Layout, berth: Berth) -> None:
    ref = f"{registry.host}/multi/arch:v1"
    index = build_index(store, store_name(ref))
    out = json.loads(berth("push", ref, "--all-platforms", "--format", "json").stdout)
    assert out["digest"] == index.digest

    copied = f"{registry.host}/multi/copied:v1"
    out = json.loads(berth("copy", ref, copied, "--all-platforms", "--format", "json").stdout)
    assert out["digest"] == index.digest

    store.remove(store_name(ref))
    store.gc()
    berth("pull", copied, "--platform", "linux/arm64", "-q")
    descriptor = store.resolve(store_name(copied))
    config = json.loads(store.read_blob(store.image(store_name(copied))[1].config.digest))
    assert config["architecture"] == "arm64"
    assert descriptor.digest != index.digest

    berth("pull", copied, "--all-platforms", "-q")
    assert store.resolve(store_name(copied)).digest == index.digest
    _, amd = store.image(store_name(copied), Platform("linux", "amd64"))
    assert json.loads(store.read_blob(amd.config.digest))["architecture"] == "amd64"


def test_pull_of_missing_platform_is_not_found(registry: Registry, store: Layout, berth: Berth) -> None:
    ref = f"{registry.host}/multi/partial:v1"
    build_index(store, store_name(ref), arches=("arm64",))
    berth("push", ref, "--all-platforms", "-q")
    result = berth("pull", ref, "--platform", "linux/s390x", code=4)
    assert "no image for platform linux/s390x" in result.output


def test_chunked_upload_of_a_large_blob(registry: Registry, store: Layout, tmp_path) -> None:
    ref = f"{registry.host}/chunked/big:v1"
    pushed = build_image(store, store_name(ref), [{"big": random_bytes(3_000_000, 7)}], compress=False)
    options = Options(jobs=2, chunk_size=1_000_000)
    source = open_source(parse_location(store_name(ref), "local"), options)
    target = open_target(parse_location(ref), options)
    result = copy_image(source, target)
    assert result.digest == pushed.digest
    api = RegistryAPI.connect(registry.host)
    _, manifest = store.image(store_name(ref))
    assert api.head_blob("chunked/big", manifest.layers[0].digest) == manifest.layers[0].size


def test_oci_directory_round_trip(registry: Registry, store: Layout, berth: Berth, tmp_path) -> None:
    ref = f"{registry.host}/oci/dir:v1"
    pushed = build_image(store, store_name(ref), _layers())
    berth("push", ref, "-q")
    berth("copy", ref, f"oci:{tmp_path / 'layout'}:v1", "-q")
    layout = Layout.open(tmp_path / "layout")
    assert layout.resolve("v1").digest == pushed.digest
    out = json.loads(
        berth("copy", f"oci:{tmp_path / 'layout'}:v1", f"{registry.host}/oci/back:v2", "--format", "json").stdout
    )
    assert out["digest"] == pushed.digest


def test_pull_rejects_a_tampered_blob(distribution, store: Layout, berth: Berth, tmp_path) -> None:
    """A registry serving other bytes than the digest names must fail the pull with exit code 6."""
    ref = f"{distribution.host}/tamper/app:v1"
    build_image(store, store_name(ref), [{"file": b"original" * 100}])
    berth("push", ref, "-q")
    _, manifest = store.image(store_name(ref))
    layer = manifest.layers[0].digest.split(":")[1]
    data_dir = distribution.root / "data"
    blob = next(data_dir.glob(f"docker/registry/v2/blobs/sha256/{layer[:2]}/{layer}/data"))
    blob.write_bytes(b"X" * manifest.layers[0].size)
    store.remove(store_name(ref))
    store.gc()
    result = berth("pull", ref, code=6)
    assert "does not match" in result.output
    assert not store.has_blob(manifest.layers[0].digest)


@pytest.mark.parametrize("jobs", ["1", "8"])
def test_jobs_option(registry: Registry, store: Layout, berth: Berth, jobs: str) -> None:
    ref = f"{registry.host}/jobs/app:j{jobs}"
    pushed = build_image(store, store_name(ref), _layers())
    out = json.loads(berth("push", ref, "--jobs", jobs, "--format", "json").stdout)
    assert out["digest"] == pushed.digest
