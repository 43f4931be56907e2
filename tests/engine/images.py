"""Test images for the engine: busybox layers built with tarfile into a real OCI layout.

Shared by the engine tests and tests/bench/bench_engine.py. Images are made from
/bin/busybox (Debian's busybox-static), so they need no registry and no network.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from client.layout import Layout, store_name
from registry.oci import mediatypes as mt
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor

BUSYBOX = shutil.which("busybox", path="/bin:/usr/bin")
IMAGE = "127.0.0.1:5000/test/busybox:latest"
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
GROUP = "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n"


class TarBuilder:
    """A layer tarball built entry by entry (names, modes and link targets exactly as given)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)
        self.modes: dict[str, int] = {}

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> TarBuilder:
        info.mtime = 1700000000
        self.tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self

    def dir(self, name: str, mode: int = 0o755) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        return self._add(info)

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
        self.modes[name] = mode
        return self._add(info, data)

    def symlink(self, name: str, target: str) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return self._add(info)

    def hardlink(self, name: str, target: str) -> TarBuilder:
        """A hardlink entry carrying its target's mode, as tar writes them (docker applies it)."""
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.LNKTYPE, target
        info.mode = self.modes.get(target, 0o644)
        return self._add(info)

    def device(self, name: str, major: int, minor: int, block: bool = False) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type = tarfile.BLKTYPE if block else tarfile.CHRTYPE
        info.devmajor, info.devminor, info.mode = major, minor, 0o666
        return self._add(info)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buffer.getvalue()


def compress(data: bytes, kind: str) -> tuple[bytes, str]:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1), mt.OCI_LAYER_GZIP
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data), mt.OCI_LAYER_ZSTD
    return data, mt.OCI_LAYER


def busybox_base() -> TarBuilder:
    assert BUSYBOX is not None
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    layer = TarBuilder().dir("bin").dir("etc").dir("tmp", 0o1777).dir("root", 0o700).dir("home")
    layer.dir("home/app").dir("var").dir("opaque").file("opaque/old", b"old\n")
    layer.file("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
    for applet in applets:
        if applet != "busybox":
            layer.hardlink(f"bin/{applet}", "bin/busybox")
    layer.file("etc/passwd", PASSWD.encode()).file("etc/group", GROUP.encode())
    layer.file("etc/deleteme", b"you should not see me\n").file("etc/keep", b"kept\n")
    return layer


def write_image(
    root: Path,
    name: str,
    layers: list[tuple[bytes, str]],
    config: dict | None = None,
    architecture: str = "amd64",
) -> str:
    """Store an image in the OCI layout at root/images under its full name, as a pull would."""
    layout = Layout.open(root / "images", create=True)
    descriptors, diff_ids = [], []
    for tar_bytes, kind in layers:
        blob, media_type = compress(tar_bytes, kind)
        descriptors.append(Descriptor(media_type, layout.write_blob(blob), len(blob)).to_json())
        diff_ids.append(digest_bytes(tar_bytes))
    image_config = {
        "architecture": architecture,
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(image_config).encode()
    config_desc = Descriptor(mt.OCI_CONFIG, layout.write_blob(config_bytes), len(config_bytes))
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config_desc.to_json(), "layers": descriptors}
    ).encode()
    digest = layout.write_blob(manifest)
    layout.add(Descriptor(mt.OCI_MANIFEST, digest, len(manifest)), store_name(name))
    return digest


def standard_image(root: Path, name: str = IMAGE) -> str:
    """The three-layer test image: gzip base, zstd changes (whiteout, opaque dir), plain extra."""
    base = busybox_base().bytes()
    change = (
        TarBuilder()
        .dir("etc")
        .file("etc/.wh.deleteme")
        .file("etc/added", b"added\n")
        .dir("opaque")
        .file("opaque/.wh..wh..opq")
        .file("opaque/new", b"new\n")
        .bytes()
    )
    extra = TarBuilder().dir("data").file("data/hello", b"hello from layer three\n").bytes()
    return write_image(
        root,
        name,
        [(base, "gzip"), (change, "zstd"), (extra, "none")],
        {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_IMAGE=yes"], "Cmd": ["sh"], "WorkingDir": "/data"},
    )
