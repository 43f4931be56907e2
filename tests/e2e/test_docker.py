"""docker push, rmi, pull and run against our registry, with the real docker CLI and a private dockerd."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import BuiltImage, Docker, Registry
from tests.e2e.images import FIRST_FILE, sha256_digest

pytestmark = pytest.mark.e2e

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT_ALL = ", ".join(
    [
        DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def test_docker_push_rmi_pull_run(docker: Docker, registry: Registry, built_image: BuiltImage) -> None:
    ref = f"{registry.host}/e2e/busybox:1"
    docker("tag", built_image.name, ref)
    pushed = docker("push", ref).stdout
    match = re.search(r"1: digest: (sha256:[0-9a-f]{64}) size: (\d+)", pushed)
    assert match, f"docker push printed no digest:\n{pushed}"
    digest, size = match.group(1), int(match.group(2))

    # The registry serves exactly the bytes docker pushed, under the digest docker computed.
    response = registry.get("/v2/e2e/busybox/manifests/1", headers={"Accept": ACCEPT_ALL})
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Type"] == DOCKER_MANIFEST
    assert sha256_digest(response.content) == digest and len(response.content) == size
    manifest = response.json()
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == built_image.image_id
    # base + COPY first.txt + COPY payload.bin + RUN rm first.txt
    assert len(manifest["layers"]) == len(built_image.diff_ids) == 4
    for layer in manifest["layers"]:
        head = registry.head(f"/v2/e2e/busybox/blobs/{layer['digest']}")
        assert head.status_code == 200, (layer, head.status_code)
        assert int(head.headers["Content-Length"]) == layer["size"]

    # Pushing again uploads nothing (blob HEAD); pushing to a second repository mounts every layer across.
    again = docker("push", ref).stdout
    assert again.count("Layer already exists") == 4, again
    mounted_ref = f"{registry.host}/e2e/mounted:1"
    docker("tag", built_image.name, mounted_ref)
    mounted = docker("push", mounted_ref).stdout
    assert mounted.count("Mounted from e2e/busybox") == 4, mounted
    assert f"1: digest: {digest}" in mounted, mounted
    docker("rmi", mounted_ref)

    tags = registry.get("/v2/e2e/busybox/tags/list")
    assert tags.status_code == 200 and tags.json() == {"name": "e2e/busybox", "tags": ["1"]}
    catalog = registry.get("/v2/_catalog")
    assert catalog.status_code == 200
    assert {"e2e/busybox", "e2e/mounted"} <= set(catalog.json()["repositories"])

    # Forget every local copy of the image and its base, so each layer must come back from the registry.
    docker("rmi", ref, built_image.name, built_image.base)
    assert not docker.has_image(built_image.image_id)

    pulled = docker("pull", ref).stdout
    assert f"Digest: {digest}" in pulled, pulled
    assert "Already exists" not in pulled, pulled
    info = docker.inspect(ref)
    assert info["Id"] == built_image.image_id
    assert info["RootFS"]["Layers"] == built_image.diff_ids
    assert f"{registry.host}/e2e/busybox@{digest}" in info["RepoDigests"]

    # Run it: the files are the ones built, and the file deleted by the upper layer is gone.
    paths = sorted(built_image.file_sha256)
    out = docker("run", "--rm", "--network=none", ref, "sha256sum", *paths).stdout
    sums = {line.split()[1]: line.split()[0] for line in out.splitlines() if line.strip()}
    assert sums == built_image.file_sha256
    probe = docker(
        "run",
        "--rm",
        "--network=none",
        ref,
        "sh",
        "-c",
        f"if [ -e {FIRST_FILE} ]; then echo present; else echo absent; fi; ls -a /data",
    ).stdout.split()
    assert probe[0] == "absent", probe
    assert sorted(probe[1:]) == [".", "..", "payload.bin"]

    # Pull by digest too, as `docker pull name@digest` does a manifest GET by digest.
    by_digest = f"{registry.host}/e2e/busybox@{digest}"
    docker("rmi", ref)
    docker("pull", by_digest)
    assert docker.inspect(by_digest)["Id"] == built_image.image_id
    docker("rmi", by_digest)


def test_docker_pull_unknown_tag_fails_cleanly(docker: Docker, registry: Registry) -> None:
    result = docker("pull", f"{registry.host}/e2e/busybox:no-such-tag", check=False)
    assert result.returncode != 0
    assert "not found" in (result.stderr + result.stdout).lower(), result.stderr
    errors = registry.get("/v2/e2e/busybox/manifests/no-such-tag").json()["errors"]
    # MANIFEST_UNKNOWN when the repository exists, NAME_UNKNOWN when this test runs alone.
    assert errors[0]["code"] in {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}, json.dumps(errors)
