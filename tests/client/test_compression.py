"""Uncompressed layers (a `docker save` archive's) are compressed on their way to a registry.

The manifest names the compressed blobs; the config, with its uncompressed `diff_ids`, is sent
byte for byte; skopeo and docker pull what berth pushed (issue 11, interoperability). Hostile
flags and archives that lie are refused before anything reaches the registry.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from client.api import RegistryAPI
from client.compress import CompressingSource
from client.errors import RegistryNotFound, UsageError
from client.layout import Layout
from client.layout_image import LayoutSource
from registry.oci import mediatypes as mt
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor
from tests.client.conftest import Berth, Registry, need
from tests.client.images import layer_tar, random_bytes
from tests.client.test_docker import Docker
from tests.client.test_docker import docker as docker  # noqa: F401 -- the session's dockerd fixture
from tests.engine.images import BUSYBOX, busybox_base


def _add(tar: tarfile.TarFile, name: str, data: bytes, size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    tar.addfile(info, io.BytesIO(data))


def write_archive(path: Path, ref: str, layers: list[bytes], cmd: list[str] | None = None) -> dict:
    """A `docker save` archive (legacy layout: ID/layer.tar) of plain tar layers; returns its config."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd or ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [digest_bytes(layer) for layer in layers]},
    }
    data = json.dumps(config).encode()
    with tarfile.open(path, "w") as tar:
        names = []
        for i, layer in enumerate(layers):
            names.append(f"{i:064x}/layer.tar")
            _add(tar, names[-1], layer)
        _add(tar, "config.json", data)
        _add(tar, "manifest.json", json.dumps([{"Config": "config.json", "RepoTags": [ref], "Layers": names}]).encode())
    return config


def pushed(registry: Registry, repository: str) -> tuple[dict, bytes, list[bytes]]:
    """The manifest (with its digest as `_digest`), config bytes and layer blobs of REPOSITORY:v1."""
    api = RegistryAPI.connect(registry.host)
    try:
        data, _ = api.get_manifest(repository, "v1")
        manifest = {**json.loads(data), "_digest": digest_bytes(data)}
        config = api.get_blob(repository, manifest["config"]["digest"]).content
        blobs = [api.get_blob(repository, layer["digest"]).content for layer in manifest["layers"]]
    finally:
        api.close()
    return manifest, config, blobs


def nothing_pushed(registry: Registry, repository: str) -> bool:
    api = RegistryAPI.connect(registry.host)
    try:
        return api.head_manifest(repository, "v1") is None
    except RegistryNotFound:
        return True
    finally:
        api.close()


def unzstd(blob: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(blob)


LAYERS = [layer_tar({"etc/hello": b"hello " * 5000}), layer_tar({"data/text": b"compressible text\n" * 20000})]


@pytest.mark.parametrize(
    ("flags", "media_type", "decompress"),
    [
        ((), mt.OCI_LAYER_GZIP, gzip.decompress),
        (("--compression", "gzip"), mt.OCI_LAYER_GZIP, gzip.decompress),
        (("--compression", "zstd"), mt.OCI_LAYER_ZSTD, unzstd),
    ],
)
def test_archive_layers_are_compressed_for_a_registry(
    registry: Registry, berth: Berth, tmp_path: Path, flags: tuple[str, ...], media_type: str, decompress
) -> None:
    archive = tmp_path / "image.tar"
    ref = f"{registry.host}/compress/{media_type.rsplit('+', 1)[1]}-{len(flags)}:v1"
    config = write_archive(archive, ref, LAYERS)
    berth("copy", f"docker-archive:{archive}", ref, "-q", *flags)
    manifest, config_bytes, blobs = pushed(registry, ref.split("/", 1)[1].split(":")[0])
    assert json.loads(config_bytes) == config, "the config (and its diff_ids) is sent unchanged"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [media_type] * len(LAYERS)
    for layer, blob, plain in zip(manifest["layers"], blobs, LAYERS, strict=True):
        assert layer["digest"] == digest_bytes(blob) and layer["size"] == len(blob) < len(plain) / 3
        assert digest_bytes(decompress(blob)) == digest_bytes(plain)
    assert [digest_bytes(decompress(blob)) for blob in blobs] == config["rootfs"]["diff_ids"]


def test_none_and_preserve_digests_send_the_layers_as_they_are(
    registry: Registry, berth: Berth, tmp_path: Path
) -> None:
    archive = tmp_path / "image.tar"
    write_archive(archive, "example.com/plain:v1", LAYERS)
    for flag, repository in ((("--compression", "none"), "compress/none"), (("--preserve-digests",), "compress/kept")):
        berth("copy", f"docker-archive:{archive}", f"{registry.host}/{repository}:v1", "-q", *flag)
        manifest, _, blobs = pushed(registry, repository)
        assert [layer["mediaType"] for layer in manifest["layers"]] == [mt.OCI_LAYER] * len(LAYERS)
        assert blobs == LAYERS


def test_a_compressed_layer_is_not_compressed_again(registry: Registry, berth: Berth, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    gz = gzip.compress(LAYERS[0], mtime=0)
    write_archive(archive, "example.com/mixed:v1", [gz, LAYERS[1]])
    berth("copy", f"docker-archive:{archive}", f"{registry.host}/compress/mixed:v1", "-q")
    manifest, _, blobs = pushed(registry, "compress/mixed")
    assert blobs[0] == gz and manifest["layers"][0]["mediaType"] == mt.OCI_LAYER_GZIP
    assert gzip.decompress(blobs[1]) == LAYERS[1]


@pytest.mark.parametrize(
    "flags",
    [
        ("--compression", "bzip2"),
        ("--compression", ""),
        ("--compression", "gzip" * 1000),
        ("--compression", "../../gzip"),
        ("--compression", "gzip\n"),
        ("--preserve-digests", "--compression", "gzip"),
        ("--preserve-digests", "--compression", "zstd"),
    ],
)
def test_hostile_flags_are_usage_errors_and_push_nothing(
    registry: Registry, berth: Berth, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    archive = tmp_path / "image.tar"
    write_archive(archive, "example.com/hostile:v1", LAYERS)
    result = berth("copy", f"docker-archive:{archive}", f"{registry.host}/compress/hostile:v1", *flags, code=2)
    assert "Traceback" not in result.output and ("--compression" in result.output or "contradicts" in result.output)
    assert nothing_pushed(registry, "compress/hostile")


def test_a_truncated_archive_is_refused(registry: Registry, berth: Berth, tmp_path: Path) -> None:
    """Layer members that claim more bytes than the file holds: a clear error, nothing pushed."""
    archive = tmp_path / "short.tar"
    write_archive(archive, "example.com/short:v1", LAYERS)
    data = archive.read_bytes()
    cut = data.index(b"hello hello") + 100
    archive.write_bytes(data[:cut])
    result = berth("copy", f"docker-archive:{archive}", f"{registry.host}/compress/short:v1", code=1)
    assert "Traceback" not in result.output and "short.tar" in result.output
    assert nothing_pushed(registry, "compress/short")


def test_zstd_is_refused_for_a_docker_manifest(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "oci", create=True)
    plain = LAYERS[0]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": [digest_bytes(plain)]}})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {
                "mediaType": mt.DOCKER_CONFIG,
                "digest": layout.write_blob(config.encode()),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                    "digest": layout.write_blob(plain),
                    "size": len(plain),
                }
            ],
        }
    ).encode()
    layout.add(Descriptor(mt.DOCKER_MANIFEST, layout.write_blob(manifest), len(manifest)), "v1")
    source = CompressingSource(LayoutSource(layout, "v1", "oci"), "zstd")
    with pytest.raises(UsageError, match="zstd"):
        source.root()
    gzipped = CompressingSource(LayoutSource(layout, "v1", "oci"), "gzip")
    layer = json.loads(gzipped.root()[0])["layers"][0]
    assert layer["mediaType"] == mt.DOCKER_LAYER_GZIP
    gzipped.close()


def test_skopeo_and_docker_pull_and_run_the_compressed_image(
    registry: Registry,
    berth: Berth,
    docker: Docker,
    tmp_path: Path,  # noqa: F811
) -> None:
    if BUSYBOX is None:
        pytest.skip("needs busybox-static (/bin/busybox) for a runnable image")
    archive = tmp_path / "busybox.tar"
    ref = f"{registry.host}/compress/runnable:v1"
    base = busybox_base().bytes()
    extra = layer_tar({"srv/message": b"compressed on the way\n", "srv/noise": random_bytes(20_000, 7)})
    write_archive(archive, ref, [base, extra], cmd=["/bin/cat", "/srv/message"])
    berth("copy", f"docker-archive:{archive}", ref, "-q")
    manifest, _, blobs = pushed(registry, "compress/runnable")
    assert sum(len(b) for b in blobs) < (len(base) + len(extra)) / 2
    out = tmp_path / "oci"
    subprocess.run(
        [need("skopeo"), "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:v1"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == manifest["_digest"]
    docker("pull", ref)
    assert docker("run", "--rm", "--network", "none", ref) == "compressed on the way\n"
