"""Fixtures for the engine API: `berth engine serve` and a private dockerd, each in a network namespace
of its own, driven by the same docker CLI so that the two can be compared.

The private dockerd runs with --bridge=none (tests/conftest.py dockerd_command), so the
scenarios compared with it use `--network none`; berth's own half also runs on its bridge.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

import pytest

from tests.conftest import dockerd_command
from tests.engine.conftest import root_skip_reason
from tests.engine.images import IMAGE, busybox_base, standard_image, write_image
from tests.engine.netns import NetNS

IMAGE_NAME = "berth-busybox"  # the same image under the same name in both engines (no Cmd, as `docker import`)


def until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@dataclass
class Engine:
    """One engine behind a socket and the docker CLI (or any command) pointed at it."""

    name: str
    socket: Path
    config: Path
    netns: NetNS
    process: subprocess.Popen[bytes] | None = None
    root: Path | None = None
    argv: list[str] = field(default_factory=list)
    log: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config)}
        env.pop("DOCKER_CONTEXT", None)
        if self.root is not None:
            env["BERTH_ROOT"] = str(self.root)
        return env

    def docker(
        self,
        *args: str,
        timeout: float = 60,
        extra_env: dict[str, str] | None = None,
        text: bool = True,
        **kwargs: object,
    ) -> subprocess.CompletedProcess[str]:
        """The docker CLI on this engine (`text=False`: bytes in and out, for tar streams)."""
        env = {**self.env, **(extra_env or {})}
        return subprocess.run(["docker", *args], capture_output=True, text=text, timeout=timeout, env=env, **kwargs)

    def ok(self, *args: str) -> str:
        result = self.docker(*args)
        assert result.returncode == 0, f"{self.name}: docker {' '.join(args)}: {result.stderr}"
        return result.stdout

    def berth(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = self.netns.wrap([sys.executable, "-m", "engine", *args])
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)

    def start(self) -> None:
        """Start (or restart) the engine's service and wait until it answers."""
        assert self.log is not None
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.netns.wrap(self.argv), stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        if not until(lambda: self.docker("version").returncode == 0 or self.process.poll() is not None, 60):
            raise RuntimeError(f"{self.name} did not answer: {self.log.read_text()[-2000:]}")
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def clean(self) -> None:
        listed = self.docker("ps", "-aq").stdout.split()
        if listed:
            self.docker("rm", "-f", *listed)


def http(engine: Engine, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request over the engine's unix socket with http.client (chunked answers de-chunked)."""

    class Connection(HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(str(engine.socket))

    connection = Connection("docker", timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body, headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def berth_engine(tmp: Path) -> Iterator[Engine]:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp / "root"
    standard_image(root)
    write_image(root, f"docker.io/library/{IMAGE_NAME}:latest", [(busybox_base().bytes(), "gzip")])
    (tmp / "config").mkdir()
    socket = tmp / "engine.sock"
    engine = Engine("berth", socket, tmp / "config", NetNS("berth-api"), root=root, log=tmp / "serve.log")
    engine.argv = [sys.executable, "-m", "engine", "engine", "serve", "--socket", str(socket)]
    try:
        engine.start()
        yield engine
    finally:
        engine.clean()
        engine.stop()
        engine.netns.delete()


def docker_engine(tmp: Path) -> Iterator[Engine]:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed")
    (tmp / "config").mkdir()
    engine = Engine("docker", tmp / "docker.sock", tmp / "config", NetNS("docker-api"), log=tmp / "dockerd.log")
    engine.argv = dockerd_command(tmp)
    try:
        try:
            engine.start()
        except RuntimeError as exc:
            pytest.skip(f"the private dockerd did not start here: {exc}")
        tar = busybox_base().bytes()
        subprocess.run(
            ["docker", "import", "-", IMAGE_NAME], input=tar, capture_output=True, check=True, env=engine.env
        )
        yield engine
    finally:
        engine.clean()
        engine.stop()
        engine.netns.delete()


@pytest.fixture(scope="module")
def berth_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    yield from berth_engine(tmp_path_factory.mktemp("berth-api"))


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    yield from docker_engine(tmp_path_factory.mktemp("dockerd-api"))


@pytest.fixture(scope="module", params=["berth", "docker"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each scenario runs against both, asserting the same outcomes: a difference from dockerd fails one half."""
    return request.getfixturevalue("berth_api" if request.param == "berth" else "dockerd")


__all__ = ["IMAGE", "IMAGE_NAME", "Engine", "http", "until"]
