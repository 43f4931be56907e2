"""Blobs as files under a root directory: `blobs/sha256/ab/abcd...`, uploads in `uploads/`.

A blob becomes visible by one `rename` of a complete, fsynced upload file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from registry.storage.base import UploadState

READ_CHUNK = 4 * 1024 * 1024
IOV_MAX = 1024


class FilesystemStorage:
    write_batch = 1024 * 1024

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.uploads = self.root / "_uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)

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

    def start_upload(self, upload_id: str) -> UploadState:
        # The file is made by the first write: a session finished by one small PUT never
        # creates (and deletes) an empty file.
        return {"file": f"{upload_id}.part"}

    def _upload_path(self, state: UploadState) -> Path:
        name = state["file"]
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad upload state {state!r}")
        return self.uploads / name

    def write_upload(self, state: UploadState, offset: int, chunks: Sequence[bytes]) -> UploadState:
        """One `pwritev` per batch of chunks: no joining copy in Python."""
        pending = [memoryview(c) for c in chunks if c]
        fd = os.open(self._upload_path(state), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while pending:
                written = os.pwritev(fd, pending[:IOV_MAX], offset)
                offset += written
                while written and written >= len(pending[0]):
                    written -= len(pending.pop(0))
                if written:
                    pending[0] = pending[0][written:]
        finally:
            os.close(fd)
        return state

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
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

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
