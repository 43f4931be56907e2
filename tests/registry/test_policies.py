"""Quotas, retention, immutable tags and storage accounting, through the CLI and the API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import requests

from tests.conftest import RegistryProcess
from tests.registry.conftest import Api, ManualClock, berth, error_code, in_process, sha256


def on(server: RegistryProcess, *args: str) -> str:
    """A `berth` admin command acting on this registry."""
    return berth(*args, *server.settings_flags())


def test_quota_refuses_before_storing_and_leaves_nothing(server: RegistryProcess) -> None:
    on(server, "quota", "set", "quota_team/*", "100KiB")
    api = Api(server.url, "quota_team/app", requests.Session())
    first = os.urandom(60 * 1024)
    api.push_blob(first)
    assert api.push_blob(first) == sha256(first)  # the same bytes again cost nothing
    second = os.urandom(60 * 1024)
    refused = api.http.post(api.url(f"blobs/uploads/?digest={sha256(second)}"), data=second)
    assert refused.status_code == 403 and error_code(refused) == "DENIED"
    assert "quota of quota_team/*" in refused.json()["errors"][0]["message"]
    assert api.http.head(api.url(f"blobs/{sha256(second)}")).status_code == 404
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]
    chunk = api.http.patch(f"{server.url}{location}", data=second)
    assert chunk.status_code == 403
    assert api.http.get(f"{server.url}{location}").headers["Range"] == "0-0"
    other = Api(server.url, "quota_team/other", api.http)
    mounted = other.http.post(other.url(f"blobs/uploads/?mount={sha256(first)}&from={api.name}"))
    assert mounted.status_code == 201
    assert "quota_team/*\t60.0 KiB of 100.0 KiB" in on(server, "quota", "list")
    on(server, "quota", "rm", "quota_team/*")
    assert api.http.post(api.url(f"blobs/uploads/?digest={sha256(second)}"), data=second).status_code == 201


def test_quota_checked_when_size_is_unknown_until_the_end(server: RegistryProcess) -> None:
    on(server, "quota", "set", "chunked_team/*", "10KiB")
    api = Api(server.url, "chunked_team/app", requests.Session())
    data = os.urandom(20 * 1024)
    location = api.http.post(api.url("blobs/uploads/")).headers["Location"]

    def body() -> Iterator[bytes]:  # chunked transfer encoding: no Content-Length
        yield data[:5000]
        yield data[5000:]

    response = api.http.put(f"{server.url}{location}?digest={sha256(data)}", data=body())
    assert response.status_code == 403
    assert api.http.head(api.url(f"blobs/{sha256(data)}")).status_code == 404
    assert api.http.get(f"{server.url}{location}").status_code == 404


def test_immutable_tags_never_move(server: RegistryProcess) -> None:
    on(server, "immutable", "add", "release/*", "v*")
    api = Api(server.url, "release/app", requests.Session())
    first, second = api.image([b"one"]), api.image([b"two"])
    assert api.put_manifest("v1", first).status_code == 201
    assert api.put_manifest("v1", first).status_code == 201  # pushing the same manifest again is fine
    moved = api.put_manifest("v1", second)
    assert moved.status_code == 409 and error_code(moved) == "DENIED"
    assert api.http.get(api.url("manifests/v1")).content == first
    assert api.http.head(api.url(f"manifests/{sha256(second)}")).status_code == 404
    assert api.http.delete(api.url("manifests/v1")).status_code == 409
    assert api.http.delete(api.url(f"manifests/{sha256(first)}")).status_code == 409
    assert api.http.get(api.url("manifests/v1")).content == first
    assert api.put_manifest("latest", second).status_code == 201
    assert api.put_manifest("latest", first).status_code == 201


def test_retention_keeps_the_newest_and_spares_immutable(server: RegistryProcess) -> None:
    api = Api(server.url, "retained/app", requests.Session())
    for number in range(5):
        assert api.put_manifest(f"build-{number}", api.image([f"build {number}".encode()])).status_code == 201
    api.put_manifest("stable", api.image([b"stable"]))
    on(server, "immutable", "add", "retained/*", "build-0")
    on(server, "retention", "set", "retained/*", "--tags", "build-*", "--keep", "2")
    dry = on(server, "retention", "apply", "--dry-run")
    assert "would remove tag retained/app:build-1" in dry and "build-0" not in dry
    out = on(server, "gc", "--grace", "1h")
    assert "removed tag retained/app:build-2" in out
    tags = api.http.get(api.url("tags/list")).json()["tags"]
    assert tags == ["build-0", "build-3", "build-4", "stable"]
    on(server, "retention", "set", "retained/*", "--tags", "stable", "--max-age", "1h")
    on(server, "retention", "apply")
    assert "stable" in api.http.get(api.url("tags/list")).json()["tags"]
    later = ManualClock()
    later.advance(timedelta(hours=2))
    removed = in_process(server, later).policies.apply_retention(False)
    assert [(t.repository, t.tag) for t in removed if t.repository == "retained/app"] == [("retained/app", "stable")]
    assert api.http.get(api.url("tags/list")).json()["tags"] == ["build-0", "build-3", "build-4"]
    assert "stable" not in api.http.get(api.url("tags/list")).json()["tags"]


def stored_bytes(server: RegistryProcess) -> int:
    """What the blob store really holds, read from the filesystem or the bucket."""
    flags = dict(zip(server.args[::2], server.args[1::2], strict=True))
    if "--storage" not in flags:
        root = Path(server.data_dir) / "blobs"
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "_uploads" not in p.parts)
    import boto3

    bucket, _, prefix = flags["--storage"].removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=flags["--s3-endpoint"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/blobs/")
    return sum(item["Size"] for page in pages for item in page.get("Contents", []))


def test_bytes_on_disk_match_the_accounting_after_gc(server: RegistryProcess) -> None:
    api = Api(server.url, "accounting/app", requests.Session())
    api.put_manifest("v1", api.image([os.urandom(3000), os.urandom(5000)]))
    api.push_blob(os.urandom(7000))
    on(server, "gc", "--grace", "0", "--untagged")
    on_disk = stored_bytes(server)
    out = on(server, "usage", "--bytes")
    stored = int(out.strip().splitlines()[-1].split()[-1])
    assert stored == on_disk
    by_namespace = on(server, "usage", "--by", "namespace", "--bytes")
    assert "accounting" in by_namespace
