"""Two `berth serve` replicas on one PostgreSQL database and one S3 bucket (moto), behind a round-robin proxy:
docker pushes through the proxy, then pulls from each replica directly and runs the image.

The proxy alternates backends per TCP connection. docker keeps connections alive, so the test also reads
both replicas' access logs to check that each one served part of the push.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import new_bucket
from tests.e2e.conftest import BuiltImage, Docker, Registry, launch_registry, restore_built_image
from tests.e2e.images import sha256_digest
from tests.e2e.proxy import RoundRobinProxy

pytestmark = pytest.mark.e2e

ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
# uvicorn's access log line: INFO:     127.0.0.1:PORT - "PATCH /v2/e2e/replicated/blobs/uploads/ID HTTP/1.1" 202
ACCESS = re.compile(r'"(GET|HEAD|POST|PATCH|PUT|DELETE) (/v2/e2e/replicated/[^ ?"]*)[^"]*" (\d{3})')
UPLOAD_PATH = re.compile(r"/blobs/uploads/([^/]+)$")


@dataclass
class Replicas:
    registries: list[Registry]
    proxy: RoundRobinProxy
    database_url: str
    storage: str

    def requests(self, replica: Registry) -> list[tuple[str, str, int]]:
        """(method, path, status) of every /v2/e2e/replicated/ request this replica's access log shows."""
        text = replica.log.read_text(errors="replace")
        return [(m.group(1), m.group(2), int(m.group(3))) for m in ACCESS.finditer(text)]


def _fresh_database(server_url: str) -> str:
    """A new database on the session's PostgreSQL, so nothing else's rows meet this test's bucket."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[test]')")

    name = f"berth_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def replicas(postgres_url: str, s3_endpoint: str, e2e_dir: Path) -> Iterator[Replicas]:
    database_url = _fresh_database(postgres_url)
    storage = f"s3://{new_bucket(s3_endpoint)}/e2e"
    backend = ("--database-url", database_url, "--storage", storage, "--s3-endpoint", s3_endpoint)
    started: list[Registry] = []
    proxy: RoundRobinProxy | None = None
    try:
        for name in ("replica-a", "replica-b"):  # one after the other: the first applies the migrations
            started.append(launch_registry(e2e_dir / name, e2e_dir / f"{name}.log", *backend, "--log-level", "debug"))
        proxy = RoundRobinProxy.start([("127.0.0.1", int(r.host.rsplit(":", 1)[1])) for r in started])
        yield Replicas(registries=started, proxy=proxy, database_url=database_url, storage=storage)
    finally:
        if proxy is not None:
            proxy.close()
        for reg in started:
            reg.stop()


def test_docker_push_through_proxy_pull_from_each_replica(
    docker: Docker, replicas: Replicas, built_image: BuiltImage
) -> None:
    proxied = f"{replicas.proxy.host}/e2e/replicated:1"
    direct = [f"{reg.host}/e2e/replicated:1" for reg in replicas.registries]
    restore_built_image(docker, built_image)  # test_docker removes it
    try:
        docker("tag", built_image.name, proxied)
        pushed = docker("push", proxied).stdout
        match = re.search(r"1: digest: (sha256:[0-9a-f]{64}) size: \d+", pushed)
        assert match, f"docker push printed no digest:\n{pushed}"
        digest = match.group(1)

        # Both replicas took connections and served requests of this push.
        stats = {b.address[1]: (b.connections, b.bytes_in, b.bytes_out) for b in replicas.proxy.backends}
        assert all(connections >= 1 for connections, _, _ in stats.values()), stats
        served = {reg.host: replicas.requests(reg) for reg in replicas.registries}
        assert all(served.values()), f"a replica served none of the push: {stats}\n{served}"
        writes = {host: [r for r in reqs if r[0] in ("POST", "PATCH", "PUT")] for host, reqs in served.items()}
        assert sum(len(w) for w in writes.values()) >= 2, writes
        errors = [r for reqs in served.values() for r in reqs if r[2] >= 500]
        assert not errors, errors
        hopped = _uploads_served_by_both(served)
        print(f"proxy per backend (connections, bytes in, bytes out): {stats}; uploads that hopped: {hopped}")

        # Each replica serves the same manifest bytes, from the shared index and bucket.
        for reg in replicas.registries:
            response = reg.get("/v2/e2e/replicated/manifests/1", headers={"Accept": ACCEPT})
            assert response.status_code == 200, (reg.host, response.text)
            assert response.headers["Docker-Content-Digest"] == digest == sha256_digest(response.content)
            for layer in response.json()["layers"]:
                head = reg.head(f"/v2/e2e/replicated/blobs/{layer['digest']}")
                assert head.status_code == 200 and int(head.headers["Content-Length"]) == layer["size"], reg.host

        docker("rmi", proxied, built_image.name)
        assert not docker.has_image(built_image.image_id)
        paths = sorted(built_image.file_sha256)
        for ref in direct:
            pulled = docker("pull", ref).stdout
            assert f"Digest: {digest}" in pulled, pulled
            # The base layer may still be here (the busybox base image); every layer above it is downloaded.
            downloaded, kept = pulled.count("Pull complete"), pulled.count("Already exists")
            assert downloaded >= len(built_image.diff_ids) - 1 and downloaded + kept == len(built_image.diff_ids), (
                pulled
            )
            info = docker.inspect(ref)
            assert info["Id"] == built_image.image_id and info["RootFS"]["Layers"] == built_image.diff_ids
            out = docker("run", "--rm", "--network=none", ref, "sha256sum", *paths).stdout
            assert {line.split()[1]: line.split()[0] for line in out.splitlines()} == built_image.file_sha256, ref
            docker("rmi", ref)
            assert not docker.has_image(built_image.image_id)
    finally:
        restore_built_image(docker, built_image, proxied, *direct)


def _uploads_served_by_both(served: dict[str, list[tuple[str, str, int]]]) -> int:
    """How many upload sessions had requests (PATCH/PUT on the session URL) on more than one replica."""
    replicas_of: dict[str, set[str]] = {}
    for host, requests in served.items():
        for _method, path, _status in requests:
            match = UPLOAD_PATH.search(path)
            if match:
                replicas_of.setdefault(match.group(1), set()).add(host)
    return Counter(len(hosts) > 1 for hosts in replicas_of.values())[True]
