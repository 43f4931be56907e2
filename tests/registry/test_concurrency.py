"""Concurrent pushes of the same blob and the same tag: all succeed, nothing half-written."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.registry.conftest import Api, sha256


def test_same_blob_pushed_by_many_clients(api: Api) -> None:
    data = os.urandom(4 * 1024 * 1024)
    digest = sha256(data)

    def push(i: int) -> int:
        http = requests.Session()
        if i % 2:
            return http.post(api.url(f"blobs/uploads/?digest={digest}"), data=data).status_code
        location = http.post(api.url("blobs/uploads/")).headers["Location"]
        return http.put(f"{api.base}{location}?digest={digest}", data=data).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(push, range(16)))
    assert statuses == [201] * 16
    assert sha256(api.http.get(api.url(f"blobs/{digest}")).content) == digest


def test_same_tag_pushed_by_many_clients(api: Api) -> None:
    bodies = [api.image([f"layer {i}".encode()]) for i in range(12)]

    def push(body: bytes) -> int:
        return requests.put(
            api.url("manifests/race"), data=body, headers={"Content-Type": json.loads(body)["mediaType"]}
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(push, bodies))
    assert statuses == [201] * 12
    final = api.http.get(api.url("manifests/race"))
    assert final.content in bodies
    assert final.headers["Docker-Content-Digest"] == sha256(final.content)
    for body in bodies:
        assert api.http.head(api.url(f"manifests/{sha256(body)}")).status_code == 200
    assert api.http.get(api.url("tags/list")).json()["tags"] == ["race"]


def test_two_writers_on_one_upload_never_interleave(api: Api) -> None:
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    chunks = [bytes([i]) * (3 * 1024 * 1024) for i in range(4)]

    def patch(chunk: bytes) -> int:
        return requests.patch(
            f"{api.base}{location}", data=chunk, headers={"Content-Range": f"0-{len(chunk) - 1}"}
        ).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(patch, chunks))
    assert statuses.count(202) == 1 and statuses.count(416) == 3
    winner = chunks[statuses.index(202)]
    done = api.http.put(f"{api.base}{location}?digest={sha256(winner)}")
    assert done.status_code == 201, done.text
    assert api.http.get(api.url(f"blobs/{sha256(winner)}")).content == winner
