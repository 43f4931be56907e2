"""Layer unpacking: compression, whiteouts, metadata, and malicious tarballs that must write nothing outside."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.service.unpack import OPAQUE_XATTR, DigestMismatch, UnsafeLayer, unpack_layer
from registry.oci.digest import digest_bytes
from tests.engine.images import TarBuilder, compress

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts need CAP_MKNOD and trusted.* xattrs (root)")


def _unpack(tmp_path: Path, tar_bytes: bytes, kind: str = "none", **kw: object) -> Path:
    blob, _ = compress(tar_bytes, kind)
    blob_path = tmp_path / "blob"
    blob_path.write_bytes(blob)
    target = tmp_path / "layer"
    target.mkdir()
    unpack_layer(blob_path, target, digest=digest_bytes(blob), **kw)  # type: ignore[arg-type]
    return target


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_files_dirs_links_and_metadata(tmp_path: Path, kind: str) -> None:
    tar = (
        TarBuilder()
        .dir("usr")
        .dir("usr/bin", 0o750)
        .file("usr/bin/tool", b"#!/bin/sh\n", 0o4755, uid=12, gid=34)
        .symlink("usr/bin/alias", "tool")
        .hardlink("usr/bin/again", "usr/bin/tool")
        .file("deep/implicit/parent.txt", b"x")
        .bytes()
    )
    layer = _unpack(tmp_path, tar, kind)
    tool = layer / "usr/bin/tool"
    st = tool.stat()
    assert tool.read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert (st.st_uid, st.st_gid) == ((12, 34) if os.geteuid() == 0 else (st.st_uid, st.st_gid))
    assert stat.S_IMODE((layer / "usr/bin").stat().st_mode) == 0o750
    assert os.readlink(layer / "usr/bin/alias") == "tool"
    assert (layer / "usr/bin/again").stat().st_ino == st.st_ino
    assert (layer / "deep/implicit/parent.txt").read_bytes() == b"x"
    assert int(st.st_mtime) == 1700000000


@needs_root
def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    tar = TarBuilder().dir("etc").file("etc/.wh.passwd").dir("opt").file("opt/.wh..wh..opq").file("opt/x").bytes()
    layer = _unpack(tmp_path, tar)
    st = os.lstat(layer / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (layer / "etc/.wh.passwd").exists()
    assert os.getxattr(layer / "opt", OPAQUE_XATTR) == b"y"
    assert not (layer / "opt/.wh..wh..opq").exists()
    assert (layer / "opt/x").exists()


def test_device_nodes_are_skipped_by_default(tmp_path: Path) -> None:
    tar = TarBuilder().dir("dev").device("dev/sda", 8, 0, block=True).device("dev/mem", 1, 1).bytes()
    layer = _unpack(tmp_path, tar)
    assert not os.path.lexists(layer / "dev/sda")
    assert not os.path.lexists(layer / "dev/mem")


def test_digest_is_checked(tmp_path: Path) -> None:
    blob_path = tmp_path / "blob"
    blob_path.write_bytes(TarBuilder().file("a", b"a").bytes())
    (tmp_path / "t").mkdir()
    with pytest.raises(DigestMismatch):
        unpack_layer(blob_path, tmp_path / "t", digest="sha256:" + "0" * 64)


MALICIOUS = {
    "dotdot": TarBuilder().file("../escaped", b"pwned"),
    "nested-dotdot": TarBuilder().dir("a").file("a/../../escaped", b"pwned"),
    "absolute": TarBuilder().file("/tmp/escaped-absolute", b"pwned"),
    "symlink-dir": TarBuilder().symlink("link", "..").file("link/escaped", b"pwned"),
    "symlink-absolute": TarBuilder().symlink("link", "/tmp").file("link/escaped", b"pwned"),
    "symlink-then-file": TarBuilder().symlink("escaped", "../escaped").file("escaped", b"replaced link, not target"),
    "hardlink-dotdot": TarBuilder().hardlink("stolen", "../outside.txt"),
    "hardlink-absolute": TarBuilder().hardlink("stolen", "/etc/passwd"),
    "hardlink-through-symlink": TarBuilder().symlink("up", "..").hardlink("stolen", "up/outside.txt"),
    "whiteout-dotdot": TarBuilder().dir("a").file("a/.wh.."),
}


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_malicious_layers_write_nothing_outside(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    blob = tmp_path / "blob"
    blob.write_bytes(MALICIOUS[name].bytes())
    target = tmp_path / "layer"
    target.mkdir()
    before = _snapshot(tmp_path)
    try:
        unpack_layer(blob, target)
    except UnsafeLayer:
        pass
    assert all(p.startswith("layer/") for p in _snapshot(tmp_path) - before)
    assert outside.read_text() == "original"
    assert not Path("/tmp/escaped-absolute").exists()
    assert not (tmp_path.parent / "escaped").exists()
    if name == "symlink-then-file":
        assert (target / "escaped").read_bytes() == b"replaced link, not target"
        assert not os.path.islink(target / "escaped")


@pytest.mark.parametrize("name", ["dotdot", "absolute", "symlink-dir", "hardlink-dotdot", "hardlink-through-symlink"])
def test_malicious_layers_are_refused(tmp_path: Path, name: str) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(MALICIOUS[name].bytes())
    (tmp_path / "layer").mkdir()
    with pytest.raises(UnsafeLayer):
        unpack_layer(blob, tmp_path / "layer")
