"""Blob storage: bytes keyed by digest, behind one narrow protocol with several backends."""

from __future__ import annotations

from urllib.parse import urlparse

from registry.storage.base import BlobStorage


def open_storage(url: str) -> BlobStorage:
    """Pick the backend for `file:///path` or `s3://bucket/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from registry.storage.filesystem import FilesystemStorage

        return FilesystemStorage(parsed.path or url)
    raise ValueError(f"unsupported storage URL {url!r} (use file:///path)")
