"""Blobs as files under the storage root: `ROOT/sha256/ab/abcd...`, uploads in `ROOT/_uploads/`.

A blob becomes visible by one `rename` of a complete, fsynced upload file, or for a blob
stored whole by linking a complete, fsynced unnamed file (`O_TMPFILE`) into place, so a
crash leaves nothing behind. The directory is fsynced after the rename or link (and its
parent after creating it): only then is the name itself on disk, and the caller's 201
survives a power loss.

The root and the digest-algorithm directories are marked as tops of directory hierarchies
(ext4's `chattr +T`), so the directories below them are spread over the filesystem's
block groups instead of packed into their parent's. New files are placed in their
directory's group, and ext4 without a journal scans every inode deleted in the last
minutes before it reuses one: in a group where something deleted thousands of files, each
file creation took half a millisecond of CPU; spread out, it takes microseconds.
"""

from __future__ import annotations

import array
import ctypes
import errno
import fcntl
import functools
import os
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from registry.storage.base import UploadState

READ_CHUNK = 4 * 1024 * 1024
IOV_MAX = 1024
WRITE_SLICE = 256 * 1024
"""Bytes per write call. Linux 6.18's ext4 gives a larger write larger page-cache folios, and
in a VM those cost far more to fill: 256 MiB written 4 MiB per call took 0.14-0.56 s of CPU,
1 MiB per call 0.05-0.16 s, 256 KiB per call 0.05-0.07 s (on the 2-core test VM, the
benchmark's server measured with perf)."""
ALGORITHMS = ("sha256", "sha512")
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000
SYNC_FILE_RANGE_WRITE = 2
PROC_FDS = "/proc/self/fd"


class FilesystemStorage:
    write_batch = 1024 * 1024

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        _spread_subdirectories(self.root)
        for algorithm in ALGORITHMS:
            (self.root / algorithm).mkdir(exist_ok=True)
            _spread_subdirectories(self.root / algorithm)
        self.uploads = self.root / "_uploads"
        self.uploads.mkdir(exist_ok=True)

    def _path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / algorithm / hexdigest[:2] / hexdigest

    def stat(self, digest: str) -> int | None:
        try:
            return os.stat(self._path(digest)).st_size
        except FileNotFoundError:
            return None

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with open(self._path(digest), "rb", buffering=0) as fh:
            fh.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                chunk = fh.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self._path(digest))
        except FileNotFoundError:
            pass

    def redirect_url(self, digest: str) -> str | None:
        return None

    def put(self, digest: str, data: bytes) -> None:
        target = self._path(digest)
        try:
            fd = _unnamed_file(target.parent)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.ENOENT):
                raise
            # No O_TMPFILE on this filesystem, or no /proc to link one through: go through _uploads/.
            state = self.write_upload(self.start_upload(f"put-{os.urandom(8).hex()}"), 0, [data])
            self.commit_upload(state, len(data), digest)
            return
        try:
            self._write_at(fd, 0, [data])
            os.fdatasync(fd)
            try:
                _link(fd, target)
            except FileExistsError:  # stored meanwhile by another request: same digest, same bytes
                pass
            _sync_directory(target.parent)
        finally:
            os.close(fd)

    def start_upload(self, upload_id: str) -> UploadState:
        # The file is made by the first write: a session finished by one small PUT never
        # creates (and deletes) an empty file.
        return {"file": f"{upload_id}.part"}

    def _upload_path(self, state: UploadState) -> Path:
        name = state["file"]
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad upload state {state!r}")
        return self.uploads / name

    def write_upload(
        self, state: UploadState, offset: int, chunks: Sequence[bytes], writeback: bool = True
    ) -> UploadState:
        fd = os.open(self._upload_path(state), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            written = self._write_at(fd, offset, chunks)
            if writeback:
                _start_writeback(fd, offset, written)
        finally:
            os.close(fd)
        return state

    @staticmethod
    def _write_at(fd: int, offset: int, chunks: Sequence[bytes]) -> int:
        """`pwritev`s of at most WRITE_SLICE bytes each, straight from the chunks (no joining
        copy in Python). Returns the bytes written."""
        pending = deque(_slices(chunks))
        start = offset
        while pending:
            group = [pending.popleft()]
            total = len(group[0])
            while pending and len(group) < IOV_MAX and total + len(pending[0]) <= WRITE_SLICE:
                total += len(pending[0])
                group.append(pending.popleft())
            written = os.pwritev(fd, group, offset)
            if not written:
                raise OSError(errno.EIO, f"pwritev wrote nothing at offset {offset}")
            offset += written
            if written < total:  # a short write: the rest goes first in the next call
                pending.extendleft(reversed(_after(group, written)))
        return offset - start

    def read_upload(self, state: UploadState, size: int) -> Iterator[bytes]:
        if size == 0:
            return
        with open(self._upload_path(state), "rb", buffering=0) as fh:
            remaining = size
            while remaining > 0:
                chunk = fh.read(min(READ_CHUNK, remaining))
                if not chunk:
                    raise OSError(f"upload {state['file']} is shorter than {size} bytes")
                remaining -= len(chunk)
                yield chunk

    def commit_upload(self, state: UploadState, size: int, digest: str) -> None:
        source = self._upload_path(state)
        fd = os.open(source, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, size)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        target = self._path(digest)
        _make_directory(target.parent)
        os.replace(source, target)
        _sync_directory(target.parent)

    def cancel_upload(self, state: UploadState) -> None:
        try:
            os.unlink(self._upload_path(state))
        except FileNotFoundError:
            pass

    def sweep_uploads(self, older_than: float, active: set[str]) -> int:
        freed = 0
        for entry in os.scandir(self.uploads):
            upload_id = entry.name.removesuffix(".part")
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # completed (renamed away) while we looked
                continue
            if upload_id not in active and info.st_mtime < older_than:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                freed += info.st_size
        return freed


def _slices(chunks: Sequence[bytes]) -> Iterator[memoryview]:
    """The chunks' bytes as views of at most WRITE_SLICE bytes (empty chunks dropped)."""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        for start in range(0, len(view), WRITE_SLICE):
            yield view[start : start + WRITE_SLICE]


def _after(views: list[memoryview], skip: int) -> list[memoryview]:
    """What is left of `views` once their first `skip` bytes are written."""
    left = []
    for view in views:
        if skip >= len(view):
            skip -= len(view)
            continue
        left.append(view[skip:])
        skip = 0
    return left


@functools.cache
def _has_directory(path: str) -> bool:
    """Asked once per process: /proc does not come and go, and `put` is on the small-blob hot path."""
    return os.path.isdir(path)


def _unnamed_file(directory: Path) -> int:
    """A file in `directory`'s filesystem that has no name until it is linked (through /proc)."""
    if not _has_directory(PROC_FDS):
        raise FileNotFoundError(errno.ENOENT, "no /proc to link an unnamed file through", PROC_FDS)
    try:
        return os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o644)
    except FileNotFoundError:
        _make_directory(directory)
        return os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o644)


def _make_directory(directory: Path) -> None:
    """Create a blob directory durably: a new one's name is fsynced into its parent."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    except FileNotFoundError:
        _make_directory(directory.parent)
        _make_directory(directory)
        return
    _sync_directory(directory.parent)


def _sync_directory(directory: Path) -> None:
    """fsync a directory, so the names created or renamed in it survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link(fd: int, target: Path) -> None:
    """Give an unnamed file a name: `linkat` through /proc, following the fd's link."""
    fds = os.open(PROC_FDS, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(str(fd), target, src_dir_fd=fds, follow_symlinks=True)
    finally:
        os.close(fds)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range back: `sync_file_range(SYNC_FILE_RANGE_WRITE)`.

    An upload's pages go to the disk while the rest of the body arrives, so the fdatasync
    at completion finds little left to write (256 MiB: 100 ms -> 8 ms). It is only a hint:
    without libc's call (Python's os module has none) it does nothing, and errors are ignored.
    """
    call = _sync_file_range()
    if call is not None:
        call(fd, offset, length, SYNC_FILE_RANGE_WRITE)


@functools.cache
def _sync_file_range() -> Any | None:
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return call


def _spread_subdirectories(directory: Path) -> None:
    """Set the ext2/3/4 "top of directory hierarchy" flag; elsewhere a no-op."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_TOPDIR_FL:
            flags[0] |= FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
    except OSError:  # not ext*, or flags not settable here: placement is only a preference
        pass
    finally:
        os.close(fd)
