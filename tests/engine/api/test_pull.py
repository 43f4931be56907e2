"""`docker login`, `docker push` and `docker pull` through berth's engine API and through the private dockerd,
from a berth registry with accounts.

The registry runs inside the engine's network namespace (its loopback is the engine's; dockerd
speaks plain HTTP to a registry on 127.0.0.0/8, as to any it deems insecure), with one user who may
pull and push `team/*`. The docker CLI keeps its login in a config of its own, so the engine can
only authenticate with what the CLI sends (X-Registry-Auth).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.engine.api.conftest import IMAGE_NAME, Engine, until

pytestmark = [pytest.mark.root, pytest.mark.e2e]
USER, PASSWORD = "alice", "alice-secret"


def registry_admin(data: Path, *args: str, stdin: str | None = None) -> None:
    argv = [sys.executable, "-m", "engine", *args, "--data-dir", str(data)]
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def registry(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("registry")
    registry_admin(data, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
    registry_admin(data, "grant", USER, "team/*", "pull,push")
    port = free_port()
    argv = [sys.executable, "-m", "registry", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)]
    process = subprocess.Popen(engine.netns.wrap([*argv, "--log-level", "warning"]))
    probe = (
        f"import urllib.request as u\ntry: u.urlopen('http://127.0.0.1:{port}/v2/')\nexcept Exception as e: print(e)"
    )
    assert until(lambda: "401" in engine.netns.run(sys.executable, "-c", probe).stdout, 60)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def client(engine: Engine, config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**engine.env, "DOCKER_CONFIG": str(config)}
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_login_then_pull(engine: Engine, registry: str, tmp_path: Path) -> None:
    config = tmp_path / "client-config"
    config.mkdir()
    wrong = client(engine, config, "login", "-u", USER, "--password-stdin", registry, stdin="nope\n")
    # the wording differs: dockerd quotes Go's `Get "http://HOST/v2/": unauthorized: ...`, berth its token service's
    assert wrong.returncode == 1 and wrong.stderr.startswith("Error response from daemon: "), wrong.stderr
    good = client(engine, config, "login", "-u", USER, "--password-stdin", registry, stdin=PASSWORD + "\n")
    assert good.returncode == 0 and "Login Succeeded" in good.stdout, good.stderr
    assert not (engine.config / "config.json").exists() or registry not in (engine.config / "config.json").read_text()
    reference = f"{registry}/team/app:1"
    engine.ok("tag", IMAGE_NAME, reference)
    anonymous = tmp_path / "anonymous"
    anonymous.mkdir()
    # an anonymous token is answered with insufficient_scope: dockerd gives up at once (a bare UNAUTHORIZED
    # made it retry for ~50 s, "Retrying in N seconds", then print "unauthorized")
    refused = client(engine, anonymous, "push", reference)
    assert refused.returncode == 1 and "Retrying" not in refused.stdout, refused.stdout
    assert "denied: requested access to the resource is denied" in refused.stderr, refused.stderr
    pushed = client(engine, config, "push", reference)
    assert pushed.returncode == 0, pushed.stderr
    assert f"The push refers to repository [{registry}/team/app]" in pushed.stdout
    assert "Pushed" in pushed.stdout and "1: digest: sha256:" in pushed.stdout
    again = client(engine, config, "push", reference)
    assert "Layer already exists" in again.stdout
    engine.ok("rmi", reference)
    pulled = client(engine, config, "pull", reference)
    assert pulled.returncode == 0, pulled.stderr
    assert f"Status: Downloaded newer image for {reference}" in pulled.stdout
    again = client(engine, config, "pull", reference)
    assert f"Status: Image is up to date for {reference}" in again.stdout
    assert client(engine, config, "run", "--rm", "--network", "none", reference, "echo", "pulled").stdout == "pulled\n"
    missing = client(engine, config, "pull", f"{registry}/team/absent:1")
    assert missing.returncode == 1 and "absent" in missing.stderr + missing.stdout
    denied = client(engine, anonymous, "pull", f"{registry}/team/app:1")
    assert denied.returncode == 1
    engine.ok("rmi", reference)


def test_hostile_registry_auth_headers(berth_api: Engine) -> None:
    from tests.engine.api.test_service import request

    for header in ("!!!not-base64", "bm90IGpzb24", "WzEsMl0"):  # garbage, "not json", "[1,2]"
        status, body = request(
            berth_api, "POST", "/v1.41/images/create?fromImage=x&tag=1", headers=f"X-Registry-Auth: {header}\r\n"
        )
        assert status == 400 and b"X-Registry-Auth" in body
    status, _ = request(berth_api, "POST", "/v1.41/images/create")
    assert status == 400
    assert os.path.exists(berth_api.socket)
