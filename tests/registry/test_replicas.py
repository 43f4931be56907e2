"""Two `berth serve` processes sharing one PostgreSQL and one bucket act as one registry."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import RegistryProcess, new_bucket, new_database
from tests.registry.conftest import Api, sha256


@pytest.fixture(scope="module")
def replicas(postgres_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    args = (
        "--database-url",
        new_database(postgres_url),
        "--storage",
        f"s3://{new_bucket(s3_endpoint)}/shared",
        "--s3-endpoint",
        s3_endpoint,
    )
    servers = [RegistryProcess(tmp_path_factory.mktemp(f"replica{i}"), args=args) for i in range(2)]
    yield [server.url for server in servers]
    for server in servers:
        server.stop()


def test_chunked_upload_hops_between_replicas(replicas: list[str]) -> None:
    data = os.urandom(12 * 1024 * 1024 + 5)
    chunks = [data[i : i + 3 * 1024 * 1024] for i in range(0, len(data), 3 * 1024 * 1024)]
    name = "replicas/hop"
    location = requests.post(f"{replicas[0]}/v2/{name}/blobs/uploads/").headers["Location"]
    offset = 0
    for number, chunk in enumerate(chunks):
        base = replicas[number % 2]
        response = requests.patch(
            f"{base}{location}", data=chunk, headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
        )
        assert response.status_code == 202, response.text
        offset += len(chunk)
        location = response.headers["Location"]
    digest = sha256(data)
    done = requests.put(f"{replicas[len(chunks) % 2]}{location}?digest={digest}")
    assert done.status_code == 201, done.text
    for base in replicas:
        got = requests.get(f"{base}/v2/{name}/blobs/{digest}")
        assert hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]


def test_push_on_one_pull_from_the_other(replicas: list[str]) -> None:
    writer = Api(replicas[0], "replicas/image", requests.Session())
    body = writer.image([os.urandom(1000), os.urandom(2000)])
    assert writer.put_manifest("v1", body).status_code == 201
    reader = Api(replicas[1], "replicas/image", requests.Session())
    assert reader.http.get(reader.url("manifests/v1")).content == body
    for layer in json.loads(body)["layers"]:
        assert reader.http.head(reader.url(f"blobs/{layer['digest']}")).status_code == 200
    assert "replicas/image" in requests.get(f"{replicas[1]}/v2/_catalog").json()["repositories"]


def test_blob_get_redirects_to_a_presigned_url(
    postgres_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    args = (
        "--database-url",
        new_database(postgres_url),
        "--storage",
        f"s3://{new_bucket(s3_endpoint)}/r",
        "--s3-endpoint",
        s3_endpoint,
        "--s3-redirect",
    )
    server = RegistryProcess(tmp_path_factory.mktemp("redirect"), args=args)
    try:
        api = Api(server.url, "redirect/app", requests.Session())
        data = os.urandom(10_000)
        digest = api.push_blob(data)
        response = requests.get(api.url(f"blobs/{digest}"), allow_redirects=False)
        assert response.status_code == 307
        assert response.headers["Location"].startswith(s3_endpoint)
        assert requests.get(response.headers["Location"]).content == data
        assert requests.head(api.url(f"blobs/{digest}")).headers["Content-Length"] == str(len(data))
    finally:
        server.stop()
