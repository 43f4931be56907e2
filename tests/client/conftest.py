"""Client fixtures: registries on loopback ports, a private BERTH_ROOT and DOCKER_CONFIG per test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from client.cli import COMMANDS
from client.layout import Layout, open_store
from tests.client.servers import DISTRIBUTION, Distribution, TokenServer, htpasswd_auth
from tests.conftest import RegistryProcess

USERS = {"alice": "wonderland"}
BERTH_COMMAND = [
    sys.executable,
    "-c",
    "import sys, click; from client.cli import COMMANDS; "
    "click.Group('berth', commands={c.name: c for c in COMMANDS})(sys.argv[1:])",
]
"""The client's commands in a process of their own, independent of the root `berth` group."""


@dataclass
class Registry:
    kind: str
    host: str


def _ours_available() -> bool:
    done = subprocess.run([sys.executable, "-m", "registry", "--help"], capture_output=True, text=True)
    return done.returncode == 0 and "--data-dir" in done.stdout


@pytest.fixture(scope="session", params=["distribution", "berth"])
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An empty-ish registry without auth: CNCF Distribution, then Berth's own server."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "distribution":
        if not DISTRIBUTION:
            pytest.skip("docker-registry (CNCF Distribution) is not installed")
        server = Distribution(root)
        yield Registry("distribution", server.host)
        server.stop()
        return
    if not _ours_available():
        pytest.skip("python -m registry does not serve yet")
    ours = RegistryProcess(root)
    yield Registry("berth", f"127.0.0.1:{ours.port}")
    ours.stop()


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    if not DISTRIBUTION:
        pytest.skip("docker-registry (CNCF Distribution) is not installed")
    server = Distribution(tmp_path_factory.mktemp("distribution-plain"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    if not DISTRIBUTION:
        pytest.skip("docker-registry (CNCF Distribution) is not installed")
    root = tmp_path_factory.mktemp("distribution-htpasswd")
    server = Distribution(root, htpasswd_auth(root, USERS))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path_factory.mktemp("token"), USERS)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer) -> Iterator[Distribution]:
    if not DISTRIBUTION:
        pytest.skip("docker-registry (CNCF Distribution) is not installed")
    server = Distribution(tmp_path_factory.mktemp("distribution-token"), token_server.distribution_auth())
    yield server
    server.stop()


def _berth_admin(data_dir: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture(scope="session", params=["distribution", "berth"])
def token_auth_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[Registry]:
    """A registry that answers with Bearer challenges; alice may push under team/, anyone may pull."""
    root = tmp_path_factory.mktemp(f"token-{request.param}")
    if request.param == "distribution":
        if not DISTRIBUTION:
            pytest.skip("docker-registry (CNCF Distribution) is not installed")
        server = Distribution(root, token_server.distribution_auth())
        yield Registry("distribution", server.host)
        server.stop()
        return
    if not _ours_available():
        pytest.skip("python -m registry does not serve yet")
    for user, password in USERS.items():
        _berth_admin(root, "user", "add", user, "--password-stdin", stdin=password + "\n")
    _berth_admin(root, "grant", "alice", "team/*", "pull,push,delete")
    _berth_admin(root, "grant", "anonymous", "team/*", "pull")
    ours = RegistryProcess(root)
    yield Registry("berth", f"127.0.0.1:{ours.port}")
    ours.stop()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own local store and docker config; nothing reads the real ones."""
    monkeypatch.setenv("BERTH_ROOT", str(tmp_path / "berth"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "containers-auth.json"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return tmp_path


@pytest.fixture
def store(isolated: Path) -> Layout:
    """The local store as the commands open it (it records where its blobs came from and went)."""
    return open_store()


class Berth:
    """Runs the client's commands in-process, as `berth ARGS...` would."""

    def __init__(self) -> None:
        import click

        self.group = click.Group("berth", commands={c.name: c for c in COMMANDS if c.name})

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> Result:
        result = CliRunner().invoke(self.group, list(args), input=input, catch_exceptions=False)
        assert result.exit_code == code, f"berth {' '.join(args)} -> {result.exit_code}: {result.output}"
        return result


@pytest.fixture
def berth() -> Berth:
    return Berth()


def need(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        pytest.skip(f"{binary} is not installed")
    return path
