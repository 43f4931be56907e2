"""One suite every storage backend passes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
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


def test_writes_of_any_shape_land_in_order(storage: BlobStorage) -> None:
    """Chunks larger than a write call takes, empty ones, and more tiny ones than one call's
    vector holds, in single writes, read back byte for byte."""
    big = bytes(range(256)) * (3 * filesystem.WRITE_SLICE // 256) + b"odd"
    tiny = [bytes([i % 251]) * 7 for i in range(filesystem.IOV_MAX + 5)]
    batches = [[big, b"", b"x"], tiny, [memoryview(big)[5:], b"end"]]
    state, offset = storage.start_upload("shapes"), 0
    for batch in batches:
        state = storage.write_upload(state, offset, batch)
        offset += sum(len(chunk) for chunk in batch)
    data = b"".join(bytes(chunk) for batch in batches for chunk in batch)
    assert offset == len(data)
    assert b"".join(storage.read_upload(state, offset)) == data


def test_a_short_write_continues_where_it_stopped(tmp_path: Path) -> None:
    """A file size limit makes the kernel write part of a call: what was written is exactly the
    data's beginning, and the rest is tried again (and refused, past the limit) rather than
    dropped or looped on. What follows a short write that the kernel then accepts is shown by
    the next test (a regular file cannot be made to write short and then accept more)."""
    limit = filesystem.WRITE_SLICE + 100
    script = f"""
import errno, resource, signal, sys
from registry.storage import filesystem
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
storage = filesystem.FilesystemStorage(sys.argv[1])
chunks = [bytes([i % 256]) * 1000 for i in range(300)]
try:
    storage.write_upload(storage.start_upload("short"), 0, chunks)
except OSError as exc:
    sys.exit(0 if exc.errno == errno.EFBIG else 3)
sys.exit(4)
"""
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "blobs")], check=True, timeout=60)
    written = (tmp_path / "blobs" / "_uploads" / "short.part").read_bytes()
    assert written == b"".join(bytes([i % 256]) * 1000 for i in range(300))[:limit]


def test_the_rest_of_a_short_write_is_what_follows_its_last_byte() -> None:
    views = [memoryview(b"abc"), memoryview(b"defg"), memoryview(b"h")]
    rest = filesystem._after(views, 5)
    assert [bytes(v) for v in rest] == [b"fg", b"h"]
    assert [bytes(v) for v in filesystem._after(views, 3)] == [b"defg", b"h"]
    assert [bytes(v) for v in filesystem._after(views, 0)] == [b"abc", b"defg", b"h"]
