"""Applying one layer tarball as a changeset into its own directory, overlayfs style.

Each layer is unpacked alone into a fresh directory that becomes one overlay `lowerdir`,
so a layer's whiteouts are translated to overlayfs's own: `.wh.NAME` becomes a 0:0
character device named NAME and `.wh..wh..opq` becomes the `trusted.overlay.opaque`
xattr on its directory (see the kernel's overlayfs documentation).

Nothing may be written outside the target. Every path is walked one component at a
time from a directory file descriptor with `O_NOFOLLOW`, so an entry can never be
written through a symlink (within one layer there is no legitimate reason to); `..`
and absolute names are refused outright, hardlink sources are resolved the same way,
and existing names are unlinked before being replaced rather than opened. Device nodes
are skipped unless explicitly allowed; xattrs are limited to `user.*` and file
capabilities so a layer cannot forge overlay metadata.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from engine.runtime.rootfs import OPAQUE_XATTR

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_ALLOWED_XATTRS = ("user.", "security.capability")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Ownership is kept only when unpacking as root; anyone else gets their own files, as with tar.
_AS_ROOT = os.geteuid() == 0


class UnsafeLayer(ValueError):
    """A layer entry that would write outside its directory; the whole layer is refused."""


class DigestMismatch(ValueError):
    """The layer's bytes do not hash to the digest the manifest names."""


class _HashingReader(io.RawIOBase):
    """Hashes every byte read, so the digest is checked while the layer streams."""

    def __init__(self, raw: BinaryIO, algorithm: str) -> None:
        self._raw = raw
        self.hash = hashlib.new(algorithm)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.hash.update(memoryview(buffer)[:n])
        return n or 0

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _split(name: str) -> list[str]:
    """The safe components of an entry name; refuses absolute names and `..`."""
    if name.startswith("/"):
        raise UnsafeLayer(f"absolute path in layer: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"path traversal in layer: {name!r}")
    return parts


class _Tree:
    """A directory tree addressed only through descriptors opened without following links."""

    def __init__(self, root: Path) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        self._cached: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        self.forget()
        os.close(self.root_fd)

    def forget(self) -> None:
        """Drop the cached parent descriptor (a name on its path may be replaced next)."""
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def parent(self, parts: list[str], create: bool = True) -> int:
        """A descriptor of the directory that holds `parts[-1]`, owned by the tree."""
        key = tuple(parts[:-1])
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        self.forget()
        fd = os.dup(self.root_fd)
        try:
            for name in key:
                fd = self._descend(fd, name, create, "/".join(parts))
        except BaseException:
            os.close(fd)
            raise
        self._cached = (key, fd)
        return fd

    @staticmethod
    def _descend(fd: int, name: str, create: bool, full: str) -> int:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise UnsafeLayer(f"link target missing in layer: {full!r}") from None
            os.mkdir(name, 0o755, dir_fd=fd)
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeLayer(f"layer entry goes through a symlink or file: {full!r}") from None
            raise
        os.close(fd)
        return child


def _remove(dir_fd: int, name: str, keep_dir: bool) -> None:
    """Unlink whatever is at `name` so the entry can be created fresh (never opened)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def open_layer(raw: io.RawIOBase) -> IO[bytes]:
    """A stream of the tar bytes, whatever the compression (sniffed from the magic)."""
    buffered = io.BufferedReader(raw, 1 << 20)
    magic = buffered.peek(4)[:4]
    if magic.startswith(_GZIP_MAGIC):
        import gzip

        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if magic == _ZSTD_MAGIC:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
    return buffered


def unpack_layer(
    blob: Path,
    target: Path,
    *,
    digest: str | None = None,
    allow_devices: bool = False,
) -> None:
    """Apply the layer at `blob` into the existing, empty directory `target`.

    When `digest` is given the compressed bytes must hash to it, or `DigestMismatch`.
    """
    algorithm = digest.split(":", 1)[0] if digest else "sha256"
    with open(blob, "rb", buffering=0) as raw:
        hashing = _HashingReader(raw, algorithm)
        stream = open_layer(hashing)
        tree = _Tree(target)
        dir_times: list[tuple[list[str], int]] = []
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    _apply(tree, archive, member, allow_devices, dir_times)
            for parts, mtime in reversed(dir_times):
                fd = tree.parent(parts, create=False)
                os.utime(parts[-1], (mtime, mtime), dir_fd=fd, follow_symlinks=False)
        finally:
            tree.close()
        hashing.drain()
    if digest and f"{algorithm}:{hashing.hash.hexdigest()}" != digest:
        raise DigestMismatch(f"layer {blob} does not match {digest}")


def _apply(
    tree: _Tree,
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    allow_devices: bool,
    dir_times: list[tuple[list[str], int]],
) -> None:
    parts = _split(member.name)
    if not parts:
        return
    base = parts[-1]
    if base.startswith(WHITEOUT_PREFIX):
        _whiteout(tree, parts)
        return
    if member.isdir():
        tree.forget()
        fd = tree.parent(parts)
        _remove(fd, base, keep_dir=True)
        try:
            os.mkdir(base, 0o700, dir_fd=fd)
        except FileExistsError:
            pass
        dir_times.append((parts, int(member.mtime)))
    elif member.isreg():
        fd = tree.parent(parts)
        _remove(fd, base, keep_dir=False)
        _write_file(fd, base, archive, member)
        return
    elif member.issym():
        tree.forget()
        fd = tree.parent(parts)
        _remove(fd, base, keep_dir=False)
        os.symlink(member.linkname, base, dir_fd=fd)
    elif member.islnk():
        _hardlink(tree, parts, member)
        return
    elif member.isfifo():
        fd = tree.parent(parts)
        _remove(fd, base, keep_dir=False)
        os.mkfifo(base, 0o600, dir_fd=fd)
    elif member.ischr() or member.isblk():
        if not allow_devices:
            return
        fd = tree.parent(parts)
        _remove(fd, base, keep_dir=False)
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=fd)
    else:
        return
    _set_metadata(tree.parent(parts), base, member)


def _whiteout(tree: _Tree, parts: list[str]) -> None:
    tree.forget()
    fd = tree.parent(parts)
    if parts[-1] == OPAQUE_MARKER:
        os.setxattr(fd, OPAQUE_XATTR, b"y")
        return
    name = parts[-1][len(WHITEOUT_PREFIX) :]
    if not name or name in (".", ".."):
        raise UnsafeLayer(f"malformed whiteout in layer: {'/'.join(parts)!r}")
    _remove(fd, name, keep_dir=False)
    os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=fd)


def _write_file(dir_fd: int, name: str, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    with open(fd, "wb", closefd=True) as out:
        source = archive.extractfile(member)
        if source is not None:
            shutil.copyfileobj(source, out, 1 << 20)
        out.flush()
        for key, value in _xattrs(member):
            os.setxattr(fd, key, value)
        if _AS_ROOT:
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, stat.S_IMODE(member.mode))
        os.utime(fd, (member.mtime, member.mtime))


def _hardlink(tree: _Tree, parts: list[str], member: tarfile.TarInfo) -> None:
    source_parts = _split(member.linkname)
    if not source_parts:
        raise UnsafeLayer(f"hardlink to the layer root: {member.name!r}")
    tree.forget()
    source_fd = os.dup(tree.parent(source_parts, create=False))
    try:
        try:
            st = os.lstat(source_parts[-1], dir_fd=source_fd)
        except FileNotFoundError:
            raise UnsafeLayer(f"hardlink to a file not in this layer: {member.linkname!r}") from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"hardlink to a directory: {member.linkname!r}")
        fd = tree.parent(parts)
        if source_parts == parts:
            return
        _remove(fd, parts[-1], keep_dir=False)
        os.link(source_parts[-1], parts[-1], src_dir_fd=source_fd, dst_dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(source_fd)


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr.") :]
            if name.startswith(_ALLOWED_XATTRS):
                yield name, value.encode("utf-8", "surrogateescape")


def _set_metadata(dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
    if _AS_ROOT:
        os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
    if not member.issym():
        os.chmod(name, stat.S_IMODE(member.mode), dir_fd=dir_fd)
        if member.isdir():
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                for key, value in _xattrs(member):
                    os.setxattr(fd, key, value)
            finally:
                os.close(fd)
    if not member.isdir():
        os.utime(name, (member.mtime, member.mtime), dir_fd=dir_fd, follow_symlinks=False)
