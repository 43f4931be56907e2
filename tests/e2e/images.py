"""Images made on this machine, never pulled: a busybox root filesystem, a docker build context, OCI layouts."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.processes import run

# The multi-layer image: one layer adds FIRST_FILE, the next adds PAYLOAD_FILE, a later one deletes FIRST_FILE.
DOCKERFILE = """\
FROM {base}
COPY first.txt /data/first.txt
COPY payload.bin /data/payload.bin
RUN rm /data/first.txt
CMD ["/bin/sh"]
"""
FIRST_FILE = "/data/first.txt"
PAYLOAD_FILE = "/data/payload.bin"
PAYLOAD_SIZE = 2 * 1024 * 1024 + 12345  # incompressible, so the layer blob is a few MiB


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_rootfs(busybox: str, target: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    """A root filesystem of the static busybox binary and one symlink per applet, plus `extra` files."""
    bindir = target / "bin"
    bindir.mkdir(parents=True)
    binary = bindir / "busybox"
    binary.write_bytes(Path(busybox).read_bytes())
    binary.chmod(0o755)
    applets = run([busybox, "--list"]).stdout.split()
    assert "sh" in applets, f"{busybox} --list has no sh applet: {applets[:20]}"
    for applet in applets:
        if applet != "busybox":
            (bindir / applet).symlink_to("busybox")
    for sub in ("etc", "tmp", "data", "proc", "sys", "dev"):
        (target / sub).mkdir(exist_ok=True)
    (target / "tmp").chmod(0o1777)
    for name, content in (extra or {}).items():
        path = target / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return target


def tar_directory(source: Path, tar_path: Path) -> Path:
    """A tar of `source`'s contents with root ownership, the shape `docker import` expects."""

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(tar_path, "w") as tar:
        for entry in sorted(source.iterdir()):
            tar.add(entry, arcname=entry.name, filter=as_root)
    return tar_path


def build_context(target: Path, base: str) -> dict[str, str]:
    """Writes the Dockerfile and its files; returns the sha256 of each file the image should contain."""
    target.mkdir(parents=True)
    (target / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (target / "first.txt").write_text("this file is deleted by a later layer\n")
    (target / "payload.bin").write_bytes(os.urandom(PAYLOAD_SIZE))
    return {PAYLOAD_FILE: sha256_file(target / "payload.bin")}


@dataclass(frozen=True)
class LayoutImage:
    """The tagged top-level manifest of an OCI image layout and the raw bytes behind it."""

    root: Path
    digest: str
    media_type: str
    raw: bytes

    def blob(self, digest: str) -> bytes:
        algorithm, _, hex_digest = digest.partition(":")
        return (self.root / "blobs" / algorithm / hex_digest).read_bytes()

    def json(self) -> dict:
        return json.loads(self.raw)


def read_layout(root: Path, tag: str) -> LayoutImage:
    index = json.loads((root / "index.json").read_text())
    for descriptor in index["manifests"]:
        if descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            digest = descriptor["digest"]
            algorithm, _, hex_digest = digest.partition(":")
            raw = (root / "blobs" / algorithm / hex_digest).read_bytes()
            assert sha256_digest(raw) == digest, f"layout blob {digest} does not match its name"
            return LayoutImage(root=root, digest=digest, media_type=descriptor["mediaType"], raw=raw)
    raise AssertionError(f"no manifest tagged {tag!r} in {root}/index.json: {index}")
