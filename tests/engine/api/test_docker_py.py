"""The docker SDK for Python (docker-py, from PyPI) against berth's engine API and a private dockerd alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.api.conftest import IMAGE_NAME, Engine

docker = pytest.importorskip("docker", reason="the docker SDK for Python is in the test extra")

pytestmark = [pytest.mark.root, pytest.mark.e2e]


@pytest.fixture
def client(engine: Engine) -> Iterator[docker.DockerClient]:
    sdk = docker.DockerClient(base_url=f"unix://{engine.socket}", version="auto")
    yield sdk
    sdk.close()


def test_version_is_negotiated(client: docker.DockerClient) -> None:
    assert client.api.api_version == "1.41"
    assert client.ping() is True


def test_run_collects_output_and_raises_on_failure(client: docker.DockerClient) -> None:
    out = client.containers.run(IMAGE_NAME, ["sh", "-c", "echo from sdk"], network_mode="none", remove=True)
    assert out == b"from sdk\n"
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run(IMAGE_NAME, ["sh", "-c", "exit 9"], network_mode="none", remove=True)
    assert failed.value.exit_status == 9
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("no-such-container")


def test_detached_lifecycle(client: docker.DockerClient) -> None:
    container = client.containers.run(
        IMAGE_NAME,
        ["sh", "-c", "echo ready; exec sleep 600"],
        detach=True,
        name="sdk-box",
        network_mode="none",
        labels={"purpose": "test"},
        environment={"A": "1"},
    )
    assert [c.name for c in client.containers.list(filters={"label": "purpose=test"})] == ["sdk-box"]
    container.reload()
    assert container.status == "running"
    assert container.exec_run(["sh", "-c", "echo $A"], environment={"A": "2"}).output == b"2\n"
    container.kill()
    assert container.wait()["StatusCode"] == 137
    assert container.logs() == b"ready\n"
    container.remove()
    assert client.containers.list(all=True, filters={"name": "sdk-box"}) == []


def test_images(client: docker.DockerClient) -> None:
    image = client.images.get(IMAGE_NAME)
    assert f"{IMAGE_NAME}:latest" in image.tags
    assert image.id in [i.id for i in client.images.list()]
