"""A registry with accounts, grants and made-up images (an index, a referrer, a hostile label)
for the browser tests; the browser itself is in tests/ui/browser.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.conftest import RegistryProcess
from tests.registry.conftest import berth

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
PASSWORDS = {"root": "root-secret-1", "alice": "alice-secret-2", "reader": "reader-secret-3", "victim": "victim-4"}
EVIL = "<script>alert(1)</script>"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Pusher:
    """Pushes made-up images over the registry API with Basic credentials."""

    url: str
    auth: tuple[str, str] | None

    def blob(self, repository: str, data: bytes) -> str:
        digest = sha256(data)
        response = requests.post(
            f"{self.url}/v2/{repository}/blobs/uploads/", params={"digest": digest}, data=data, auth=self.auth
        )
        assert response.status_code == 201, response.text
        return digest

    def manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = requests.put(
            f"{self.url}/v2/{repository}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
            auth=self.auth,
        )
        assert response.status_code == 201, response.text
        return response.headers["Docker-Content-Digest"]

    def image(
        self, repository: str, tag: str | None, labels: dict[str, str] | None = None, arch: str = "amd64", **extra: Any
    ) -> str:
        layers = [f"{repository} {tag} {arch} layer {i}".encode() * (200 * (i + 1)) for i in range(2)]
        config = {
            "architecture": arch,
            "os": "linux",
            "created": "2026-01-02T03:04:05Z",
            "config": {
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve", "x y"],
                "Env": ["PATH=/usr/bin:/bin", "MODE=web"],
                "WorkingDir": "/srv",
                "User": "1000:1000",
                "ExposedPorts": {"8080/tcp": {}},
                "Labels": labels or {"org.opencontainers.image.title": repository},
            },
            "history": [
                {"created_by": "ADD rootfs.tar /"},
                {"created_by": "ENV MODE=web", "empty_layer": True},
                {"created_by": "COPY app /bin/app"},
            ],
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        }
        config_bytes = json.dumps(config).encode()
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": self.blob(repository, config_bytes),
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": self.blob(repository, layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
            **extra,
        }
        return self.manifest(
            repository, tag or sha256(json.dumps(body).encode()), json.dumps(body).encode(), OCI_MANIFEST
        )

    def index(self, repository: str, tag: str, children: dict[str, str]) -> str:
        """An index over already pushed images: platform (os/arch) -> digest."""
        manifests = []
        for platform, digest in children.items():
            size = int(
                requests.head(
                    f"{self.url}/v2/{repository}/manifests/{digest}",
                    headers={"Accept": OCI_MANIFEST},
                    auth=self.auth,
                ).headers["Content-Length"]
            )
            os_, arch = platform.split("/")
            manifests.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": os_, "architecture": arch},
                }
            )
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        return self.manifest(repository, tag, body, OCI_INDEX)

    def referrer(self, repository: str, subject: str, artifact_type: str) -> str:
        empty = b"{}"
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": self.blob(repository, empty),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/spdx+json",
                    "digest": self.blob(repository, b'{"spdxVersion":"SPDX-2.3"}'),
                    "size": 26,
                }
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 0},
            "annotations": {"org.example.note": EVIL},
        }
        data = json.dumps(body).encode()
        return self.manifest(repository, sha256(data), data, OCI_MANIFEST)


@dataclass
class Site:
    """The registry under test, its accounts, and what was pushed to it."""

    process: RegistryProcess
    digests: dict[str, str]

    @property
    def url(self) -> str:
        return self.process.url

    def admin(self, *args: str, stdin: str | None = None) -> str:
        return berth(*args, "--data-dir", str(self.process.data_dir), stdin=stdin)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """root (admin), alice (pull,push,delete on team/*), reader (pull on team/app only),
    anonymous (pull on public/*); images in team/app, team/tools, team/secret, public/base."""
    data = tmp_path_factory.mktemp("ui")
    for name, password in PASSWORDS.items():
        extra = ("--admin",) if name == "root" else ()
        berth("user", "add", name, "--password-stdin", *extra, "--data-dir", str(data), stdin=password + "\n")
    for principal, pattern, actions in [
        ("alice", "team/*", "pull,push,delete"),
        ("alice", "public/*", "pull,push"),
        ("reader", "team/app", "pull"),
        ("victim", "team/app", "pull"),
        ("anonymous", "public/*", "pull"),
    ]:
        berth("grant", principal, pattern, actions, "--data-dir", str(data))
    process = RegistryProcess(data)
    pusher = Pusher(process.url, ("alice", PASSWORDS["alice"]))
    digests = {
        "team/app:1.0": pusher.image("team/app", "1.0"),
        "team/app:evil": pusher.image("team/app", "evil", labels={"title": EVIL, "note": "a & b"}),
        "team/tools:latest": pusher.image("team/tools", "latest"),
        "team/secret:1": pusher.image("team/secret", "1"),
        "public/base:latest": pusher.image("public/base", "latest"),
    }
    arm = pusher.image("team/app", None, arch="arm64")
    digests["team/app:multi"] = pusher.index(
        "team/app", "multi", {"linux/amd64": digests["team/app:1.0"], "linux/arm64": arm}
    )
    digests["sbom"] = pusher.referrer("team/app", digests["team/app:1.0"], "application/spdx+json")
    yield Site(process, digests)
    process.stop()


def sign_in(page: Any, url: str, name: str, password: str | None = None) -> None:
    page.goto(f"{url}/signin")
    page.fill("#name", name)
    page.fill("#password", password if password is not None else PASSWORDS[name])
    page.click("form.stack button[type=submit]")
    page.wait_for_load_state()
