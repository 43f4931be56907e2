"""Helpers for talking to a live registry in tests."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests

from registry.clock import SYSTEM_CLOCK, Clock
from registry.config import load_settings
from registry.wiring import Registry
from tests.conftest import BACKENDS, RegistryProcess, backend_args

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Api:
    """A thin requests wrapper bound to one repository of one registry."""

    base: str
    name: str
    http: requests.Session

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.name}/{path}"

    def push_blob(self, data: bytes) -> str:
        digest = sha256(data)
        response = self.http.post(self.url(f"blobs/uploads/?digest={digest}"), data=data)
        assert response.status_code == 201, response.text
        return digest

    def image(self, layers: list[bytes], config: bytes | None = None, **extra: object) -> bytes:
        config = config if config is not None else json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.push_blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": self.push_blob(layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
            **extra,
        }
        return json.dumps(manifest).encode()

    def put_manifest(self, reference: str, body: bytes, media_type: str = OCI_MANIFEST) -> requests.Response:
        return self.http.put(self.url(f"manifests/{reference}"), data=body, headers={"Content-Type": media_type})


def error_code(response: requests.Response) -> str:
    return response.json()["errors"][0]["code"]


@pytest.fixture
def api(registry_url: str) -> Api:
    return Api(registry_url, f"test/{uuid.uuid4().hex[:12]}", requests.Session())


def berth(*args: str, stdin: str | None = None) -> str:
    """Run a `berth` command (as its console script would) and return its output."""
    result = subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """A registry of the module's own on each backend, for tests that run admin commands on it."""
    process = RegistryProcess(tmp_path_factory.mktemp("server"), args=backend_args(request, request.param))
    yield process
    process.stop()


class ManualClock:
    """A clock a test moves forward, instead of sleeping until something expires."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


def in_process(server: RegistryProcess, clock: Clock = SYSTEM_CLOCK) -> Registry:
    """The parts of the registry `server` runs, wired in this process (as an admin command
    would), reading time from `clock`."""
    flags = dict(zip(server.settings_flags()[::2], server.settings_flags()[1::2], strict=True))
    settings = load_settings(
        None,
        data_dir=flags["--data-dir"],
        database_url=flags.get("--database-url"),
        storage=flags.get("--storage"),
        s3_endpoint=flags.get("--s3-endpoint"),
    )
    return Registry(settings, clock=clock)
