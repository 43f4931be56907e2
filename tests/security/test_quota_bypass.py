"""Issue 11, item 4: bytes count against a quota as they arrive, and rejected bytes go at once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import RegistryProcess
from tests.registry.conftest import berth, error_code, sha256

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """On the filesystem backend, so the test can look at what is left on disk."""
    process = RegistryProcess(tmp_path_factory.mktemp("quota"))
    berth("quota", "set", "capped/*", "1MiB", *process.settings_flags())
    yield process
    process.stop()


def leftovers(registry: RegistryProcess) -> list[Path]:
    return [p for p in (registry.data_dir / "blobs" / "_uploads").iterdir() if p.stat().st_size]


def chunks(count: int, size: int = MIB) -> Iterator[bytes]:
    """A body without Content-Length (chunked transfer encoding)."""
    for _ in range(count):
        yield os.urandom(size)


def test_chunked_patches_without_length_stop_at_the_quota(registry: RegistryProcess) -> None:
    location = requests.post(f"{registry.url}/v2/capped/app/blobs/uploads/").headers["Location"]
    response = requests.patch(f"{registry.url}{location}", data=chunks(8))
    assert response.status_code == 403 and error_code(response) == "DENIED"
    assert "quota of capped/*" in response.json()["errors"][0]["message"]
    assert requests.get(f"{registry.url}{location}").status_code == 404  # the session ended
    assert leftovers(registry) == []


def test_many_small_patches_stop_at_the_quota(registry: RegistryProcess) -> None:
    location = requests.post(f"{registry.url}/v2/capped/many/blobs/uploads/").headers["Location"]
    accepted = 0
    for _ in range(8):
        response = requests.patch(f"{registry.url}{location}", data=chunks(1, MIB // 4))
        if response.status_code != 202:
            break
        accepted += MIB // 4
    assert response.status_code == 403 and accepted <= MIB
    assert leftovers(registry) == []


def test_a_wrong_digest_leaves_no_bytes_behind(registry: RegistryProcess) -> None:
    data = os.urandom(20 * MIB)
    claimed = sha256(b"something else")
    response = requests.post(f"{registry.url}/v2/uncapped/app/blobs/uploads/?digest={claimed}", data=data)
    assert response.status_code == 400 and error_code(response) == "DIGEST_INVALID"
    assert leftovers(registry) == []
    location = requests.post(f"{registry.url}/v2/uncapped/app/blobs/uploads/").headers["Location"]
    assert requests.patch(f"{registry.url}{location}", data=data[: 2 * MIB]).status_code == 202
    wrong = requests.put(f"{registry.url}{location}?digest={claimed}", data=data[2 * MIB :])
    assert wrong.status_code == 400 and error_code(wrong) == "DIGEST_INVALID"
    assert leftovers(registry) == []
    assert requests.head(f"{registry.url}/v2/uncapped/app/blobs/{sha256(data)}").status_code == 404


def test_within_the_quota_a_chunked_upload_still_completes(registry: RegistryProcess) -> None:
    data = os.urandom(MIB // 2)
    location = requests.post(f"{registry.url}/v2/capped/fits/blobs/uploads/").headers["Location"]
    assert requests.patch(f"{registry.url}{location}", data=iter([data[:1000], data[1000:]])).status_code == 202
    done = requests.put(f"{registry.url}{location}?digest={sha256(data)}")
    assert done.status_code == 201
    assert requests.get(f"{registry.url}/v2/capped/fits/blobs/{sha256(data)}").content == data


def test_parallel_sessions_share_one_quota(registry: RegistryProcess) -> None:
    berth("quota", "set", "pair/*", "1MiB", *registry.settings_flags())
    uploads = f"{registry.url}/v2/pair/app/blobs/uploads/"
    first, second = (requests.post(uploads).headers["Location"] for _ in range(2))
    assert requests.patch(f"{registry.url}{first}", data=chunks(3, MIB // 4)).status_code == 202
    refused = requests.patch(f"{registry.url}{second}", data=chunks(3, MIB // 4))
    assert refused.status_code == 403 and error_code(refused) == "DENIED"
    assert requests.delete(f"{registry.url}{first}").status_code == 204  # cancelling frees its bytes
    third = requests.post(uploads).headers["Location"]
    assert requests.patch(f"{registry.url}{third}", data=chunks(3, MIB // 4)).status_code == 202
    assert requests.delete(f"{registry.url}{third}").status_code == 204
    assert leftovers(registry) == []
