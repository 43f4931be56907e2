"""One suite every storage backend passes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.storage import filesystem, open_storage
from registry.storage.base import BlobStorage
from tests.conftest import new_bucket


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStorage]:
    if request.param == "file":
        yield open_storage(f"file://{tmp_path}/blobs")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        yield open_storage(f"s3://{new_bucket(endpoint)}/prefix", s3_endpoint=endpoint)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(storage: BlobStorage, name: str, chunks: list[bytes]) -> tuple[dict, int]:
    state, offset = storage.start_upload(name), 0
    for chunk in chunks:
        state = storage.write_upload(state, offset, [chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :]])
        offset += len(chunk)
    return state, offset


def test_upload_commit_read_delete(storage: BlobStorage) -> None:
    chunks = [b"a" * 1000, b"b" * 3000, b"c"]
    data = b"".join(chunks)
    state, size = upload(storage, "u1", chunks)
    assert b"".join(storage.read_upload(state, size)) == data
    assert storage.stat(digest(data)) is None
    storage.commit_upload(state, size, digest(data))
    assert storage.stat(digest(data)) == len(data)
    assert b"".join(storage.read(digest(data))) == data
    assert b"".join(storage.read(digest(data), 999, 1002)) == b"abb"
    storage.delete(digest(data))
    assert storage.stat(digest(data)) is None
    storage.delete(digest(data))


def test_put_stores_a_whole_blob_and_tolerates_a_second_put(storage: BlobStorage, tmp_path: Path) -> None:
    data = b"whole small blob"
    storage.put(digest(data), data)
    storage.put(digest(data), data)
    assert storage.stat(digest(data)) == len(data)
    assert b"".join(storage.read(digest(data))) == data
    assert storage.sweep_uploads(float("inf"), set()) == 0  # nothing went through upload sessions
    if (tmp_path / "blobs").exists():
        files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
        assert [p.name for p in files] == [digest(data).split(":")[1]]


def test_cancel_leaves_nothing(storage: BlobStorage) -> None:
    state, size = upload(storage, "u2", [b"partial"])
    storage.cancel_upload(state)
    with pytest.raises(OSError):
        b"".join(storage.read_upload(state, size))
    storage.cancel_upload(state)


def test_commit_of_existing_digest_is_idempotent(storage: BlobStorage) -> None:
    data = b"same bytes"
    for name in ("x1", "x2"):
        state, size = upload(storage, name, [data])
        storage.commit_upload(state, size, digest(data))
    assert b"".join(storage.read(digest(data))) == data


def test_redirect_is_optional(storage: BlobStorage) -> None:
    url = storage.redirect_url(digest(b"x"))
    assert url is None or url.startswith("http")


def test_small_chunks_are_merged_into_parts_and_join(storage: BlobStorage) -> None:
    """Many chunks below S3's 5 MiB part minimum, then a large one, read back and commit intact."""
    chunks = [bytes([i]) * (700 * 1024) for i in range(9)] + [b"z" * (6 * 1024 * 1024), b"tail"]
    data = b"".join(chunks)
    state, size = upload(storage, "many", chunks)
    assert hashlib.sha256(b"".join(storage.read_upload(state, size))).digest() == hashlib.sha256(data).digest()
    storage.commit_upload(state, size, digest(data))
    assert storage.stat(digest(data)) == len(data)
    assert hashlib.sha256(b"".join(storage.read(digest(data)))).digest() == hashlib.sha256(data).digest()
    assert b"".join(storage.read(digest(data), len(data) - 4)) == b"tail"


def test_put_without_proc_goes_through_an_upload_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no /proc lets an unnamed file be linked, `put` falls back to a named upload file."""
    monkeypatch.setattr(filesystem, "PROC_FDS", str(tmp_path / "no-proc"))
    storage = open_storage(f"file://{tmp_path}/blobs")
    data = b"stored without O_TMPFILE"
    storage.put(digest(data), data)
    assert b"".join(storage.read(digest(data))) == data
    assert list((tmp_path / "blobs" / "_uploads").iterdir()) == []
