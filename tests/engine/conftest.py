"""Engine fixtures: busybox images built into a real OCI layout, and the `berth` command.

Images are made here from /bin/busybox (Debian's busybox-static) with Python's tarfile,
so the engine tests need no registry and no network: a gzip base layer, a zstd layer
that deletes a file with a whiteout and replaces a directory with an opaque one, and an
uncompressed layer, under the config fields the engine honours (Env, Cmd, WorkingDir).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.layout import Layout
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
        return self._add(info, data)

    def symlink(self, name: str, target: str) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return self._add(info)

    def hardlink(self, name: str, target: str) -> TarBuilder:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.LNKTYPE, target
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
    """Store an image in the OCI layout at root/images; returns the manifest digest."""
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
    layout.add(Descriptor(mt.OCI_MANIFEST, digest, len(manifest)), name)
    return digest


@dataclass
class Berth:
    """Runs the real `berth` command against one BERTH_ROOT."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "BERTH_ROOT": str(self.root)}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "engine", *args]

    def __call__(self, *args: str, timeout: float = 60, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, env=self.env,
            input=input.decode() if input else None,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


def _root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: namespaces, overlay mounts and cgroups"
    if BUSYBOX is None:
        return "needs busybox-static (/bin/busybox) to build test images"
    if not os.path.exists("/proc/self/ns/cgroup"):
        return "needs cgroup namespaces"
    return None


@pytest.fixture(scope="session")
def berth_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    reason = _root_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("berth-root")
    base = busybox_base().bytes()
    change = (
        TarBuilder().dir("etc").file("etc/.wh.deleteme").file("etc/added", b"added\n")
        .dir("opaque").file("opaque/.wh..wh..opq").file("opaque/new", b"new\n").bytes()
    )
    extra = TarBuilder().dir("data").file("data/hello", b"hello from layer three\n").bytes()
    write_image(
        root,
        IMAGE,
        [(base, "gzip"), (change, "zstd"), (extra, "none")],
        {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FROM_IMAGE=yes"], "Cmd": ["sh"], "WorkingDir": "/data"},
    )
    yield root
    containers = root / "containers"
    if containers.is_dir():
        names = [n for n in os.listdir(containers) if not n.startswith(".")]
        if names:
            subprocess.run([sys.executable, "-m", "engine", "rm", "-f", *names],
                           env={**os.environ, "BERTH_ROOT": str(root)}, capture_output=True)


@pytest.fixture(scope="session")
def berth(berth_root: Path) -> Berth:
    return Berth(berth_root)
