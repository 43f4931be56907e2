"""Test images built in Python: tar layers, a config and a manifest written into an OCI layout."""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile

from client.layout import Layout
from registry.oci import mediatypes as mt
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor


def layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def build_image(
    layout: Layout, name: str | None, layers: list[dict[str, bytes]], arch: str = "amd64", compress: bool = True
) -> Descriptor:
    """Write an image with one layer per dict of files; return its manifest descriptor."""
    descriptors, diff_ids = [], []
    for files in layers:
        tar = layer_tar(files)
        blob = gzip.compress(tar, compresslevel=1, mtime=0) if compress else tar
        diff_ids.append(digest_bytes(tar))
        descriptors.append(
            Descriptor(mt.OCI_LAYER_GZIP if compress else mt.OCI_LAYER, layout.write_blob(blob), len(blob)).to_json()
        )
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": layout.write_blob(config), "size": len(config)},
            "layers": descriptors,
        }
    ).encode()
    descriptor = Descriptor(
        mt.OCI_MANIFEST, layout.write_blob(manifest), len(manifest), platform={"os": "linux", "architecture": arch}
    )
    if name:
        layout.add(Descriptor(descriptor.media_type, descriptor.digest, descriptor.size), name)
    return descriptor


def build_index(layout: Layout, name: str, arches: tuple[str, ...] = ("amd64", "arm64")) -> Descriptor:
    children = [
        build_image(layout, None, [{f"etc/{arch}": arch.encode() * 100}, {"bin/tool": b"x" * 1000}], arch=arch)
        for arch in arches
    ]
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [c.to_json() for c in children]}
    ).encode()
    descriptor = Descriptor(mt.OCI_INDEX, layout.write_blob(index), len(index))
    layout.add(descriptor, name)
    return descriptor
