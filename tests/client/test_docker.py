"""Interop with a real docker daemon started for the session (dockerd on a private socket)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.layout import Layout, store_name
from tests.client.conftest import USERS, Berth
from tests.client.images import build_image, random_bytes
from tests.conftest import dockerd_command

pytestmark = pytest.mark.e2e


class Docker:
    def __init__(self, root: Path) -> None:
        if not shutil.which("dockerd") or not shutil.which("docker") or os.geteuid() != 0:
            pytest.skip("dockerd and docker (and root) are needed")
        self.socket = root / "docker.sock"  # where dockerd_command puts it
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(root / "config")}
        self.log = (root / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            dockerd_command(root),
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "version"], env=self.env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                pytest.skip(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-500:]}")
            time.sleep(0.2)

    def __call__(self, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
        done = subprocess.run(
            ["docker", *args], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=120, input=input
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(20)
        self.log.close()


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    daemon = Docker(tmp_path_factory.mktemp("docker"))
    yield daemon
    daemon.stop()


def test_docker_pulls_what_berth_pushed(docker: Docker, distribution, store: Layout, berth: Berth) -> None:
    ref = f"{distribution.host}/docker/from-berth:v1"
    pushed = build_image(store, store_name(ref), [{"etc/os-release": b"ID=berth\n"}, {"bin/x": random_bytes(1000, 2)}])
    berth("push", ref, "-q")
    docker("pull", ref)
    digests = json.loads(docker("image", "inspect", ref))[0]["RepoDigests"]
    assert f"{distribution.host}/docker/from-berth@{pushed.digest}" in digests


def test_berth_pulls_what_docker_pushed(
    docker: Docker, distribution, store: Layout, berth: Berth, tmp_path: Path
) -> None:
    """A docker-archive written by berth is loaded by docker, pushed by docker and pulled by berth."""
    staged = f"{distribution.host}/docker/staging:v1"
    build_image(store, store_name(staged), [{"hello.txt": b"from docker\n"}])
    archive = tmp_path / "image.tar"
    berth("copy", f"local:{staged}", f"docker-archive:{archive}:{staged}", "-q")
    docker("load", "-i", str(archive))
    ref = f"{distribution.host}/docker/from-docker:v1"
    docker("tag", staged, ref)
    pushed = docker("push", ref)
    digest = next(w for w in pushed.split() if w.startswith("sha256:"))
    berth("pull", ref, "-q")
    assert store.resolve(store_name(ref)).digest == digest


def test_a_docker_login_serves_berth(
    docker: Docker, htpasswd_registry, store: Layout, berth: Berth, isolated: Path
) -> None:
    """`docker login` writes the config; berth pushes with it without a login of its own."""
    config = {"DOCKER_CONFIG": str(isolated / "docker-config")}
    user, password = next(iter(USERS.items()))
    docker("login", "-u", user, "--password-stdin", htpasswd_registry.host, env=config, input=password + "\n")
    ref = f"{htpasswd_registry.host}/docker/logged-in:v1"
    pushed = build_image(store, store_name(ref), [{"login": b"by docker"}])
    out = json.loads(berth("push", ref, "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    berth("logout", htpasswd_registry.host)
    berth("push", ref, f"{htpasswd_registry.host}/docker/after-logout:v1", "-q", code=3)
