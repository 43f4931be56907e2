"""Blob uploads and downloads over HTTP against a live registry."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from urllib.parse import urlparse

import requests

from tests.registry.conftest import Api, error_code, sha256


def test_api_base_answers_with_version_header(registry_url: str) -> None:
    response = requests.get(f"{registry_url}/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_monolithic_post_then_head_and_get(api: Api) -> None:
    data = os.urandom(100_000)
    digest = api.push_blob(data)
    head = api.http.head(api.url(f"blobs/{digest}"))
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    got = api.http.get(api.url(f"blobs/{digest}"))
    assert got.content == data


def test_range_requests(api: Api) -> None:
    data = bytes(range(256)) * 40
    digest = api.push_blob(data)
    part = api.http.get(api.url(f"blobs/{digest}"), headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = api.http.get(api.url(f"blobs/{digest}"), headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    beyond = api.http.get(api.url(f"blobs/{digest}"), headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"


def test_unknown_blob_and_bad_digest(api: Api) -> None:
    missing = sha256(b"never pushed")
    assert api.http.head(api.url(f"blobs/{missing}")).status_code == 404
    response = api.http.get(api.url(f"blobs/{missing}"))
    assert response.status_code == 404 and error_code(response) == "BLOB_UNKNOWN"
    bad = api.http.get(api.url("blobs/sha256:xyz"))
    assert bad.status_code == 400 and error_code(bad) == "DIGEST_INVALID"


def test_wrong_digest_is_refused_and_nothing_is_visible(api: Api) -> None:
    data, claimed = b"actual content", sha256(b"other content")
    response = api.http.post(api.url(f"blobs/uploads/?digest={claimed}"), data=data)
    assert response.status_code == 400 and error_code(response) == "DIGEST_INVALID"
    assert api.http.head(api.url(f"blobs/{claimed}")).status_code == 404
    assert api.http.head(api.url(f"blobs/{sha256(data)}")).status_code == 404


def test_post_then_single_put(api: Api) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    start = api.http.post(api.url("blobs/uploads/"))
    assert start.status_code == 202
    assert start.headers["Docker-Upload-UUID"]
    assert start.headers["Range"] == "0-0"
    location = start.headers["Location"]
    assert location.startswith(f"/v2/{api.name}/blobs/uploads/")
    done = api.http.put(f"{api.base}{location}?digest={sha256(data)}", data=data)
    assert done.status_code == 201, done.text
    assert done.headers["Location"] == f"/v2/{api.name}/blobs/{sha256(data)}"
    assert api.http.get(api.url(f"blobs/{sha256(data)}")).content == data


def test_chunked_upload_with_status_and_out_of_order_chunk(api: Api) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    first, second = data[: 2 * 1024 * 1024], data[2 * 1024 * 1024 :]
    response = api.http.patch(
        f"{api.base}{location}",
        data=first,
        headers={"Content-Range": f"0-{len(first) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["Range"] == f"0-{len(first) - 1}"
    location = response.headers["Location"]
    status = api.http.get(f"{api.base}{location}")
    assert status.status_code == 204 and status.headers["Range"] == f"0-{len(first) - 1}"
    skipped = api.http.patch(
        f"{api.base}{location}",
        data=second,
        headers={"Content-Range": f"{len(first) + 10}-{len(first) + 9 + len(second)}"},
    )
    assert skipped.status_code == 416
    assert api.http.get(f"{api.base}{location}").headers["Range"] == f"0-{len(first) - 1}"
    response = api.http.patch(
        f"{api.base}{location}", data=second, headers={"Content-Range": f"{len(first)}-{len(data) - 1}"}
    )
    assert response.status_code == 202
    done = api.http.put(f"{api.base}{location}?digest={sha256(data)}")
    assert done.status_code == 201, done.text
    assert api.http.get(api.url(f"blobs/{sha256(data)}")).content == data
    assert api.http.get(f"{api.base}{location}").status_code == 404


def test_final_put_with_last_chunk_and_sha512(api: Api) -> None:
    data = os.urandom(70_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    location = api.http.patch(f"{api.base}{location}", data=data[:1000]).headers["Location"]
    done = api.http.put(f"{api.base}{location}?digest={digest}", data=data[1000:])
    assert done.status_code == 201, done.text
    assert api.http.get(api.url(f"blobs/{digest}")).content == data


def test_cancel_upload(api: Api) -> None:
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    api.http.patch(f"{api.base}{location}", data=b"partial")
    assert api.http.delete(f"{api.base}{location}").status_code == 204
    gone = api.http.get(f"{api.base}{location}")
    assert gone.status_code == 404 and error_code(gone) == "BLOB_UPLOAD_UNKNOWN"
    again = api.http.put(f"{api.base}{location}?digest={sha256(b'partial')}")
    assert again.status_code == 404


def test_session_without_bytes_can_be_cancelled_and_is_then_unknown(api: Api) -> None:
    """A session gets no row until its first byte: cancelling or finishing it must still end it."""
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    assert api.http.get(f"{api.base}{location}").status_code == 204
    assert api.http.delete(f"{api.base}{location}").status_code == 204
    assert api.http.delete(f"{api.base}{location}").status_code == 404
    refused = api.http.put(f"{api.base}{location}?digest={sha256(b'late')}", data=b"late")
    assert refused.status_code == 404 and error_code(refused) == "BLOB_UPLOAD_UNKNOWN"
    assert api.http.head(api.url(f"blobs/{sha256(b'late')}")).status_code == 404
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    assert api.http.put(f"{api.base}{location}?digest={sha256(b'once')}", data=b"once").status_code == 201
    again = api.http.put(f"{api.base}{location}?digest={sha256(b'twice')}", data=b"twice")
    assert again.status_code == 404 and error_code(again) == "BLOB_UPLOAD_UNKNOWN"
    assert api.http.patch(f"{api.base}{location}", data=b"more").status_code == 404


def test_forged_or_foreign_session_ids_are_unknown(api: Api) -> None:
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    tampered = upload_id[:-1] + ("0" if upload_id[-1] != "0" else "1")
    other = Api(api.base, api.name + "-other", api.http)
    for url in (
        f"{api.base}{location.replace(upload_id, tampered)}",
        f"{api.base}{location.replace(upload_id, '11111111-2222-3333-4444-555555555555')}",
        other.url(f"blobs/uploads/{upload_id}"),
    ):
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            response = api.http.request(method, url + ("?digest=" + sha256(b"x") if method == "PUT" else ""), data=b"x")
            assert response.status_code == 404 and error_code(response) == "BLOB_UPLOAD_UNKNOWN", (method, url)
    assert api.http.put(f"{api.base}{location}?digest={sha256(b'x')}", data=b"x").status_code == 201


def test_put_without_digest_is_invalid(api: Api) -> None:
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    response = api.http.put(f"{api.base}{location}", data=b"x")
    assert response.status_code == 400 and error_code(response) == "BLOB_UPLOAD_INVALID"


def test_cross_repository_mount(api: Api) -> None:
    digest = api.push_blob(b"shared layer")
    other = Api(api.base, api.name + "-other", api.http)
    mounted = other.http.post(other.url(f"blobs/uploads/?mount={digest}&from={api.name}"))
    assert mounted.status_code == 201
    assert mounted.headers["Location"] == f"/v2/{other.name}/blobs/{digest}"
    assert other.http.head(other.url(f"blobs/{digest}")).status_code == 200
    third = Api(api.base, api.name + "-third", api.http)
    without_from = third.http.post(third.url(f"blobs/uploads/?mount={digest}"))
    assert without_from.status_code == 201
    unknown = sha256(b"not anywhere")
    fallback = third.http.post(third.url(f"blobs/uploads/?mount={unknown}&from={api.name}"))
    assert fallback.status_code == 202 and fallback.headers["Docker-Upload-UUID"]


def test_blob_is_not_visible_in_another_repository(api: Api) -> None:
    digest = api.push_blob(b"private bytes")
    other = Api(api.base, api.name + "-stranger", api.http)
    assert other.http.head(other.url(f"blobs/{digest}")).status_code == 404


def test_delete_blob(api: Api) -> None:
    digest = api.push_blob(b"to be deleted")
    assert api.http.delete(api.url(f"blobs/{digest}")).status_code == 202
    assert api.http.head(api.url(f"blobs/{digest}")).status_code == 404
    assert api.http.delete(api.url(f"blobs/{digest}")).status_code == 404


def test_interrupted_upload_leaves_no_blob(api: Api) -> None:
    data = os.urandom(2 * 1024 * 1024)
    digest = sha256(data)
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    url = urlparse(api.base)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = (f"PUT {location}?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        sock.sendall(head + data[: len(data) // 2])
    assert api.http.head(api.url(f"blobs/{digest}")).status_code == 404
    deadline = time.monotonic() + 10
    while True:  # the server notices the disconnect asynchronously
        status = api.http.get(f"{api.base}{location}")
        assert status.status_code == 204
        if status.headers["Range"] != "0-0" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    offset = int(status.headers["Range"].split("-")[1]) + 1
    assert 0 < offset <= len(data) // 2
    resumed = api.http.put(
        f"{api.base}{location}?digest={digest}",
        data=data[offset:],
        headers={"Content-Range": f"{offset}-{len(data) - 1}"},
    )
    assert resumed.status_code == 201, resumed.text
    assert api.http.get(api.url(f"blobs/{digest}")).content == data


def test_invalid_repository_name(registry_url: str) -> None:
    response = requests.post(f"{registry_url}/v2/Bad_Name/blobs/uploads/")
    assert response.status_code == 400 and error_code(response) == "NAME_INVALID"
