"""One build step's layer: the overlay upper directory written as a reproducible, compressed tar.

The upper directory of an overlay mount holds exactly what a step changed: new and modified
files (whole), directories, and overlayfs's own deletion marks, a 0:0 character device for a
deleted name and the `trusted.overlay.opaque` xattr on a directory that replaced one below.
Those become the OCI whiteouts `.wh.NAME` and `.wh..wh..opq`, so the layer applies anywhere.

Reproducible: entries in sorted order, numeric owners with no names, no atime/ctime, gzip
with no name and time in its header, and with `epoch` (SOURCE_DATE_EPOCH) every time
clamped to it. The tar is hashed (the diff_id) and compressed in one pass, and the compressed
bytes hashed while written (the blob digest), so a layer is read from disk once.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from client.layout import PARTIAL_DIR, Layout
from registry.oci import mediatypes as mt

if TYPE_CHECKING:
    import tarfile

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
KEPT_XATTRS = ("user.", "security.capability")
GZIP_LEVEL = 6
"""`gzip`'s own default, so layers compare with `tar | gzip` in size and speed."""
ZSTD_LEVEL = 3
COMPRESSIONS = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}


class LayerBlob(NamedTuple):
    """A layer written to the store: the compressed blob's digest and size, and the tar's diff_id."""

    digest: str
    size: int
    diff_id: str
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class _Sink:
    """A file object tarfile writes to: hashes the tar, and has a second thread compress, hash and store it.

    The tar is gathered into 1 MiB batches; hashing, zlib and zstd release the GIL on buffers that
    size, so reading files plus the diff_id and compressing plus the digest run side by side.
    """

    BATCH = 1 << 20

    def __init__(self, out: Any, compression: str) -> None:
        self.out = out
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        if compression == "gzip":
            self.compressor: Any = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        else:
            import zstandard

            self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        import queue  # ~0.7 ms: a cached build reads only LayerBlob from this module

        self.pending = bytearray()
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.failure: BaseException | None = None
        self.worker = threading.Thread(target=self._compress, daemon=True)
        self.worker.start()

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob.update(data)
            self.out.write(data)
            self.size += len(data)

    def _compress(self) -> None:
        try:
            while (batch := self.queue.get()) is not None:
                self._emit(self.compressor.compress(batch))
            self._emit(self.compressor.flush())
        except BaseException as exc:
            self.failure = exc
            while self.queue.get() is not None:  # let the writer finish; close() raises
                pass

    def write(self, data: bytes) -> int:
        self.pending += data
        if len(self.pending) >= self.BATCH:
            self._send()
        return len(data)

    def _send(self) -> None:
        batch = bytes(self.pending)
        self.pending.clear()
        self.diff.update(batch)
        self.queue.put(batch)

    def close(self) -> None:
        if self.pending:
            self._send()
        self.queue.put(None)
        self.worker.join()
        if self.failure is not None:
            raise self.failure

    def tell(self) -> int:
        return 0


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def has_changes(upper: Path) -> bool:
    """Whether the upper directory holds anything at all (an empty step writes no layer)."""
    with os.scandir(upper) as entries:
        return any(True for _ in entries) or is_opaque(str(upper))


def _walk(upper: Path, rel: str = ""):  # type: ignore[no-untyped-def]
    """(tar name, path, stat) for every entry, depth first, names sorted; an opaque mark after its directory."""
    directory = os.path.join(upper, rel) if rel else str(upper)
    for name in sorted(os.listdir(directory)):
        child = f"{rel}/{name}" if rel else name
        path = os.path.join(upper, child)
        st = os.lstat(path)
        yield child, path, st
        if stat.S_ISDIR(st.st_mode):
            if is_opaque(path):
                yield f"{child}/{OPAQUE_MARKER}", None, st
            yield from _walk(upper, child)


def _info(name: str, path: str | None, st: os.stat_result, epoch: int | None) -> tarfile.TarInfo:
    import tarfile  # here, not at the top: a cached build never writes a layer

    mtime = int(st.st_mtime)
    if epoch is not None and mtime > epoch:
        mtime = epoch
    if path is None or is_whiteout(st):
        parent, _, base = name.rpartition("/")
        marker = base if path is None else WHITEOUT_PREFIX + base
        info = tarfile.TarInfo(f"{parent}/{marker}" if parent else marker)
        info.mtime = mtime
        return info
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = mtime
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        raise ValueError(f"cannot put {path} in a layer: unknown file type")
    for key in os.listxattr(path, follow_symlinks=False) if not stat.S_ISLNK(st.st_mode) else ():
        if key.startswith(KEPT_XATTRS):
            value = os.getxattr(path, key, follow_symlinks=False)
            info.pax_headers = {**info.pax_headers, f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")}
    return info


def write_tar(upper: Path, fileobj: Any, epoch: int | None) -> None:
    """The upper directory as a tar stream with OCI whiteouts (see the module doc)."""
    import tarfile

    links: dict[tuple[int, int], str] = {}
    with tarfile.TarFile(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20) as tar:
        for name, path, st in _walk(upper):
            if stat.S_ISSOCK(st.st_mode):
                continue  # as tar and docker do: a socket is not content
            info = _info(name, path, st, epoch)
            if info.isreg() and path is not None and not is_whiteout(st) and info.size and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, links[key], 0
                    tar.addfile(info)
                    continue
                links[key] = name
            if info.isreg() and info.size and path is not None:
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def write_layer(upper: Path, layout: Layout, compression: str = "gzip", epoch: int | None = None) -> LayerBlob:
    """Write the upper directory's layer into the layout's blobs; its descriptor and diff_id."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r} (use gzip or zstd)")
    partial = layout.root / PARTIAL_DIR
    partial.mkdir(parents=True, exist_ok=True)
    import tempfile  # a step that runs; a cached build only reads LayerBlob from here

    fd, tmp = tempfile.mkstemp(dir=partial, prefix="layer-")
    try:
        with open(fd, "wb", buffering=1 << 20) as out:
            sink = _Sink(out, compression)
            try:
                write_tar(upper, sink, epoch)
            finally:
                sink.close()  # also stops the compressing thread when the tar failed
            out.flush()
            os.fsync(out.fileno())
        digest = "sha256:" + sink.blob.hexdigest()
        if layout.has_blob(digest):
            os.unlink(tmp)
        else:
            os.replace(tmp, layout.partial_path(digest))
            layout.commit_partial(digest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return LayerBlob(digest, sink.size, "sha256:" + sink.diff.hexdigest(), COMPRESSIONS[compression])
