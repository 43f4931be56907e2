"""podman push and pull against our registry, of the image docker built (loaded from `docker save`).

Only push and pull: podman run (crun/runc under these hybrid cgroups) is not what is being proven here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import BuiltImage, ContainerTools, Registry
from tests.e2e.images import sha256_digest

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"


def _podman_image(podman: ContainerTools, ref: str) -> dict:
    return json.loads(podman.podman("image", "inspect", ref).stdout)[0]


@pytest.mark.parametrize(
    ("tag", "format_flags", "media_type"),
    [("1", [], DOCKER_MANIFEST), ("oci", ["--format", "oci"], OCI_MANIFEST)],
    ids=["docker-v2s2", "oci"],
)
def test_podman_push_pull(
    podman: ContainerTools,
    registry: Registry,
    built_image: BuiltImage,
    e2e_dir: Path,
    tag: str,
    format_flags: list[str],
    media_type: str,
) -> None:
    assert built_image.archive is not None
    podman.podman("load", "-i", built_image.archive)
    local = _podman_image(podman, built_image.image_id.removeprefix("sha256:"))
    assert local["RootFS"]["Layers"] == built_image.diff_ids

    ref = f"{registry.host}/e2e/podman:{tag}"
    digest_file = e2e_dir / f"podman-{tag}.digest"
    podman.podman(
        "push",
        "--tls-verify=false",
        *format_flags,
        "--digestfile",
        digest_file,
        built_image.image_id.removeprefix("sha256:"),
        f"docker://{ref}",
    )
    digest = digest_file.read_text().strip()

    response = registry.get(f"/v2/e2e/podman/manifests/{tag}", headers={"Accept": ACCEPT})
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert sha256_digest(response.content) == digest
    manifest = response.json()
    assert manifest["mediaType"] == media_type
    assert len(manifest["layers"]) == len(built_image.diff_ids)
    if media_type == DOCKER_MANIFEST:  # unchanged config: same image ID as docker's
        assert manifest["config"]["digest"] == built_image.image_id

    podman.podman("rmi", "--all", "--force")
    assert podman.podman("image", "exists", ref, check=False).returncode == 1

    podman.podman("pull", "--tls-verify=false", ref)
    pulled = _podman_image(podman, ref)
    assert pulled["Digest"] == digest
    assert pulled["RootFS"]["Layers"] == built_image.diff_ids
    assert pulled["Id"] == manifest["config"]["digest"].removeprefix("sha256:")

    podman.podman("pull", "--tls-verify=false", f"{registry.host}/e2e/podman@{digest}")
    assert f"{registry.host}/e2e/podman@{digest}" in _podman_image(podman, ref)["RepoDigests"]
    podman.podman("rmi", "--all", "--force")


def test_berth_and_podman_exchange_images(
    podman: ContainerTools, registry: Registry, built_image: BuiltImage, tmp_path: Path
) -> None:
    """What `berth copy` pushes, podman pulls with the same digest; what podman pushes, `berth pull` fetches."""
    assert built_image.archive is not None
    env = {**os.environ, "BERTH_ROOT": str(tmp_path / "berth"), "DOCKER_CONFIG": str(tmp_path / "docker")}

    def berth(*args: str) -> str:
        command = [sys.executable, "-c", "from engine.cli import main; main()", *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    pushed = f"{registry.host}/e2e/from-berth:1"
    berth("copy", "--quiet", f"docker-archive:{built_image.archive}", f"docker://{pushed}")
    digest = registry.get("/v2/e2e/from-berth/manifests/1", headers={"Accept": ACCEPT}).headers["Docker-Content-Digest"]
    podman.podman("pull", "--tls-verify=false", pushed)
    assert digest in _podman_image(podman, pushed)["RepoDigests"][0]

    back = f"{registry.host}/e2e/from-podman:1"
    podman.podman("push", "--tls-verify=false", "--format", "oci", pushed, f"docker://{back}")
    served = registry.get("/v2/e2e/from-podman/manifests/1", headers={"Accept": ACCEPT})
    berth("pull", "--quiet", back)
    stored = tmp_path / "berth" / "images" / "blobs" / "sha256" / served.headers["Docker-Content-Digest"][7:]
    assert stored.read_bytes() == served.content
