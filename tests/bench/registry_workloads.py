"""The request-level workloads, identical for both registries: the manifest fixture, tags,
repositories, catalog paging and small blobs. Each returns figures; failures raise
`UnexpectedResponse` (or are collected by `run_pool`) with the exact request and response.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from registry_http import Connection, RunResult, UnexpectedResponse, run_pool

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
FIXTURE_REPO = "bench/manifest"
NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Fixture:
    """A small image: one config blob, one layer blob and the manifest that names them."""

    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digest(self) -> str:
        return sha256(self.layer)

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest)


def make_fixture() -> Fixture:
    layer = os.urandom(1024)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
            "config": {"Cmd": ["/bin/sh"]},
        },
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
            "annotations": {"org.opencontainers.image.title": "berth benchmark"},
        },
        separators=(",", ":"),
    ).encode()
    return Fixture(config, layer, manifest)


def _path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _with_digest(location: str, digest: str) -> str:
    path = _path(location)
    return path + ("&" if "?" in path else "?") + f"digest={digest}"


async def push_blob_two_step(conn: Connection, repo: str, data: bytes, digest: str | None = None) -> None:
    """POST to open an upload, then PUT ?digest= with the whole body (what docker does)."""
    digest = digest or sha256(data)
    started = await conn.request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
    location = started.headers.get("location")
    if not location:
        raise UnexpectedResponse(conn.server, "POST", f"/v2/{repo}/blobs/uploads/", {}, started, "a Location header")
    done = await conn.request(
        "PUT", _with_digest(location, digest), {"Content-Type": "application/octet-stream"}, data, expect=(201,)
    )
    if done.headers.get("docker-content-digest") != digest:
        raise UnexpectedResponse(conn.server, "PUT", _path(location), {}, done, f"Docker-Content-Digest: {digest}")


async def push_blob_one_request(conn: Connection, repo: str, data: bytes, digest: str) -> None:
    """The single-request monolithic form: POST ?digest= with the body, answered by 201."""
    path = f"/v2/{repo}/blobs/uploads/?digest={digest}"
    done = await conn.request("POST", path, {"Content-Type": "application/octet-stream"}, data, expect=(201,))
    if done.headers.get("docker-content-digest") != digest:
        raise UnexpectedResponse(conn.server, "POST", path, {}, done, f"Docker-Content-Digest: {digest}")


async def put_manifest(conn: Connection, repo: str, reference: str, manifest: bytes) -> None:
    await conn.request(
        "PUT", f"/v2/{repo}/manifests/{reference}", {"Content-Type": OCI_MANIFEST}, manifest, expect=(201,)
    )


async def mount(conn: Connection, repo: str, digest: str, source: str) -> None:
    await conn.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", expect=(201,))


async def install_fixture(
    server: str, host: str, port: int, fixture: Fixture, auth: dict[str, str] | None = None
) -> None:
    """The manifest every manifest workload uses, tagged `latest` in FIXTURE_REPO."""
    conn = Connection(server, host, port, auth)
    try:
        await push_blob_two_step(conn, FIXTURE_REPO, fixture.config)
        await push_blob_two_step(conn, FIXTURE_REPO, fixture.layer)
        await put_manifest(conn, FIXTURE_REPO, "latest", fixture.manifest)
        got = await conn.request("GET", f"/v2/{FIXTURE_REPO}/manifests/latest", {"Accept": MANIFEST_ACCEPT})
        if got.body != fixture.manifest:
            raise UnexpectedResponse(
                server, "GET", f"/v2/{FIXTURE_REPO}/manifests/latest", {}, got, "the exact manifest bytes that were PUT"
            )
    finally:
        await conn.close()


async def create_tags(
    server: str, host: str, port: int, fixture: Fixture, repo: str, count: int, concurrency: int
) -> RunResult:
    setup = Connection(server, host, port)
    try:
        await mount(setup, repo, fixture.config_digest, FIXTURE_REPO)
        await mount(setup, repo, fixture.layer_digest, FIXTURE_REPO)
    finally:
        await setup.close()

    async def job(conn: Connection, i: int) -> None:
        await put_manifest(conn, repo, f"t{i:05d}", fixture.manifest)

    return await run_pool(server, host, port, concurrency, range(count), job)


async def create_repositories(
    server: str, host: str, port: int, fixture: Fixture, prefix: str, count: int, concurrency: int
) -> RunResult:
    """Each repository: mount the config and layer from the fixture repository, PUT the manifest."""

    async def job(conn: Connection, i: int) -> None:
        repo = f"{prefix}{i:05d}"
        await mount(conn, repo, fixture.config_digest, FIXTURE_REPO)
        await mount(conn, repo, fixture.layer_digest, FIXTURE_REPO)
        await put_manifest(conn, repo, "v1", fixture.manifest)

    return await run_pool(server, host, port, concurrency, range(count), job)


async def list_paginated(server: str, host: str, port: int, first: str, key: str) -> tuple[list[str], int]:
    """Follow `Link: <...>; rel="next"` from `first`; returns every name and the page count."""
    conn = Connection(server, host, port)
    names: list[str] = []
    pages = 0
    path: str | None = first
    try:
        while path:
            response = await conn.request("GET", path)
            pages += 1
            try:
                names.extend(json.loads(response.body)[key] or [])
            except (ValueError, KeyError, TypeError) as exc:
                raise UnexpectedResponse(server, "GET", path, {}, response, f"a JSON body with {key!r}") from exc
            match = NEXT_LINK.search(response.headers.get("link", ""))
            path = _path(match.group(1)) if match else None
            if pages > 100000:
                raise UnexpectedResponse(server, "GET", first, {}, response, "pagination to end")
    finally:
        await conn.close()
    return names, pages


async def push_small_blobs(
    server: str, host: str, port: int, repo: str, blobs: list[tuple[bytes, str]], concurrency: int, one_request: bool
) -> RunResult:
    async def job(conn: Connection, blob: tuple[bytes, str]) -> None:
        data, digest = blob
        if one_request:
            await push_blob_one_request(conn, repo, data, digest)
        else:
            await push_blob_two_step(conn, repo, data, digest)

    return await run_pool(server, host, port, concurrency, blobs, job)


def small_blobs(count: int, size: int) -> list[tuple[bytes, str]]:
    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((data, sha256(data)))
    return out
