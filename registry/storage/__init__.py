"""Blob storage: bytes keyed by digest, behind one narrow protocol with several backends."""

from __future__ import annotations

from urllib.parse import urlparse

from registry.storage.base import BlobStorage


def open_storage(url: str, s3_endpoint: str | None = None, s3_redirect: bool = False) -> BlobStorage:
    """Pick the backend for `file:///path` or `s3://bucket/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from registry.storage.filesystem import FilesystemStorage

        return FilesystemStorage(parsed.path or url)
    if parsed.scheme == "s3":
        from registry.storage.s3 import S3Storage

        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket (use s3://BUCKET/PREFIX)")
        return S3Storage(parsed.netloc, parsed.path, endpoint_url=s3_endpoint, redirect=s3_redirect)
    raise ValueError(f"unsupported storage URL {url!r} (use file:///path or s3://bucket/prefix)")
