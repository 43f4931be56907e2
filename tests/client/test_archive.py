"""docker-archive details that skopeo and docker do not exercise: legacy symlinked layers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from client.archive import DockerArchiveSource
from client.image import Verifier
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor
from tests.client.images import layer_tar


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_legacy_archive_with_a_symlinked_layer(tmp_path: Path) -> None:
    layer = layer_tar({"same": b"identical layer"})
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest_bytes(layer)] * 2}}
    ).encode()
    path = tmp_path / "legacy.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "aaa/layer.tar", layer)
        link = tarfile.TarInfo("bbb/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../aaa/layer.tar"
        tar.addfile(link)
        _add(tar, "config.json", config)
        _add(
            tar,
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": "config.json",
                        "RepoTags": ["example.com/legacy:v1"],
                        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
                    }
                ]
            ).encode(),
        )
    source = DockerArchiveSource(path, "example.com/legacy:v1")
    data, _ = source.root()
    manifest = json.loads(data)
    assert [d["digest"] for d in manifest["layers"]] == [digest_bytes(layer)] * 2
    second = manifest["layers"][1]
    descriptor = Descriptor(second["mediaType"], second["digest"], second["size"])
    verifier = Verifier(descriptor)
    for chunk in source.open_blob(descriptor).chunks:
        verifier.update(chunk)
    verifier.check()
