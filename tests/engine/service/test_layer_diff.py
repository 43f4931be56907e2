"""An overlay upper directory becomes a layer with OCI whiteouts, reproducibly, and unpacks back."""

from __future__ import annotations

import gzip
import io
import os
import socket
import stat
import tarfile
from pathlib import Path

import pytest

from client.layout import Layout
from engine.service.layer_diff import has_changes, write_layer
from engine.service.unpack import unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are 0:0 devices and trusted.* xattrs: root only")


def make_upper(root: Path, mtime: int) -> Path:
    upper = root / "upper"
    (upper / "etc").mkdir(parents=True)
    os.mknod(upper / "etc" / "deleted", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "replaced").mkdir()
    os.setxattr(upper / "replaced", "trusted.overlay.opaque", b"y")
    (upper / "replaced" / "new").write_text("new\n")
    (upper / "bin").mkdir()
    tool = upper / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    os.chown(tool, 0, 12)
    os.chmod(tool, 0o4755)
    os.link(tool, upper / "bin" / "alias")
    (upper / "bin" / "link").symlink_to("tool")
    with socket.socket(socket.AF_UNIX) as sock:  # left by a RUN step's daemon: not content, skipped
        sock.bind(str(upper / "bin" / "sock"))
    os.setxattr(tool, "user.note", b"kept")
    for path in [*upper.rglob("*"), upper]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return upper


def members(layout: Layout, digest: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layout.read_blob(digest)))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_upper_dir_becomes_a_layer_with_whiteouts(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "store", create=True)
    upper = make_upper(tmp_path / "a", 1_700_000_000)
    assert has_changes(upper)
    blob = write_layer(upper, layout)
    found = members(layout, blob.digest)
    assert list(found) == [
        "bin",
        "bin/alias",
        "bin/link",
        "bin/tool",
        "etc",
        "etc/.wh.deleted",
        "replaced",
        "replaced/.wh..wh..opq",
        "replaced/new",
    ]
    assert found["bin/tool"].islnk() and found["bin/tool"].linkname == "bin/alias"
    assert found["bin/alias"].mode == 0o4755 and found["bin/alias"].gid == 12
    assert found["bin/alias"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert found["bin/link"].issym() and found["bin/link"].linkname == "tool"
    assert found["etc/.wh.deleted"].isreg() and found["etc/.wh.deleted"].size == 0

    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    unpack_layer(layout.blob_path(blob.digest), unpacked, digest=blob.digest)
    assert stat.S_ISCHR(os.lstat(unpacked / "etc" / "deleted").st_mode)
    assert os.getxattr(unpacked / "replaced", "trusted.overlay.opaque") == b"y"
    assert os.stat(unpacked / "bin" / "tool").st_ino == os.stat(unpacked / "bin" / "alias").st_ino


def test_source_date_epoch_makes_layers_identical(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "store", create=True)
    first = write_layer(make_upper(tmp_path / "a", 1_800_000_000), layout, epoch=1_000_000)
    second = write_layer(make_upper(tmp_path / "b", 1_900_000_000), layout, epoch=1_000_000)
    assert first == second
    assert {m.mtime for m in members(layout, first.digest).values()} == {1_000_000}
    unclamped = write_layer(make_upper(tmp_path / "c", 1_900_000_000), layout)
    assert unclamped.digest != first.digest


def test_zstd_and_empty_upper(tmp_path: Path) -> None:
    layout = Layout.open(tmp_path / "store", create=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not has_changes(empty)
    blob = write_layer(make_upper(tmp_path / "a", 1), layout, compression="zstd")
    assert blob.media_type.endswith("+zstd")
    assert layout.read_blob(blob.digest)[:4] == b"\x28\xb5\x2f\xfd"
    with pytest.raises(ValueError, match="unknown compression"):
        write_layer(empty, layout, compression="lz4")
