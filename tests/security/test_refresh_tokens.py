"""Refresh tokens: none unless `--refresh-tokens`, and then only while the account they stand for
is what it was (not expired, not removed or made again, same password), never extending themselves."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from tests.conftest import RegistryProcess
from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    ContainerTools,
    Docker,
    container_tools,
    docker,
    e2e_dir,
    launch_registry,
    podman,
    registry,
)
from tests.registry.conftest import berth

PASSWORD = "alice-secret"


def admin(data: Path, *args: str, stdin: str | None = None) -> str:
    return berth(*args, "--data-dir", str(data), stdin=stdin)


def password_grant(url: str, user: str, password: str) -> requests.Response:
    """Docker's OAuth2 login: the POST form, asking for offline access."""
    form = {
        "grant_type": "password",
        "username": user,
        "password": password,
        "service": "berth",
        "scope": "repository:team/app:pull,push",
        "access_type": "offline",
        "client_id": "docker",
    }
    return requests.post(f"{url}/token", data=form)


def refresh_grant(url: str, refresh_token: str) -> requests.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "service": "berth",
        "scope": "repository:team/app:pull,push",
        "access_type": "offline",
        "client_id": "docker",
    }
    return requests.post(f"{url}/token", data=form)


def new_registry(tmp_path_factory: pytest.TempPathFactory, *args: str) -> RegistryProcess:
    data = tmp_path_factory.mktemp("refresh")
    admin(data, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    admin(data, "grant", "alice", "team/*", "pull,push")
    return RegistryProcess(data, args=args)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    server = new_registry(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def refreshing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    server = new_registry(tmp_path_factory, "--refresh-tokens")
    yield server
    server.stop()


def refresh_token_for(url: str, user: str, password: str) -> str:
    response = password_grant(url, user, password)
    assert response.status_code == 200, response.text
    return response.json()["refresh_token"]


def test_no_refresh_token_unless_switched_on(default: RegistryProcess) -> None:
    posted = password_grant(default.url, "alice", PASSWORD)
    assert posted.status_code == 200 and "refresh_token" not in posted.json(), posted.json()
    offline = requests.get(
        f"{default.url}/token", params={"service": "berth", "offline_token": "true"}, auth=("alice", PASSWORD)
    )
    assert offline.status_code == 200 and "refresh_token" not in offline.json(), offline.json()
    # Nor is a refresh token of the same key honoured: the registry answers as if it had issued none.
    assert refresh_grant(default.url, posted.json()["token"]).status_code == 401


def test_a_refresh_renews_access_but_not_itself(refreshing: RegistryProcess) -> None:
    refresh = refresh_token_for(refreshing.url, "alice", PASSWORD)
    renewed = refresh_grant(refreshing.url, refresh)
    assert renewed.status_code == 200, renewed.text
    access = jwt.decode(renewed.json()["access_token"], options={"verify_signature": False})
    assert access["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    assert "refresh_token" not in renewed.json(), "a refresh must not extend its own lifetime"


def test_a_refresh_token_dies_with_the_password_it_was_issued_for(refreshing: RegistryProcess) -> None:
    admin(refreshing.data_dir, "user", "add", "carol", "--password-stdin", stdin="carol-old\n")
    admin(refreshing.data_dir, "grant", "carol", "team/*", "pull,push")
    refresh = refresh_token_for(refreshing.url, "carol", "carol-old")
    assert refresh_grant(refreshing.url, refresh).status_code == 200
    admin(refreshing.data_dir, "user", "passwd", "carol", "--password-stdin", stdin="carol-new\n")
    refused = refresh_grant(refreshing.url, refresh)
    assert refused.status_code == 401 and "password changed" in refused.text, refused.text
    assert refresh_grant(refreshing.url, refresh_token_for(refreshing.url, "carol", "carol-new")).status_code == 200


def test_a_refresh_token_dies_with_its_robot(refreshing: RegistryProcess) -> None:
    data = refreshing.data_dir
    secret = admin(data, "token", "create", "ci", "--grant", "team/*:pull,push").strip()
    refresh = refresh_token_for(refreshing.url, "ci", secret)
    admin(data, "token", "revoke", "ci")
    assert refresh_grant(refreshing.url, refresh).status_code == 401
    # A robot made again under the same name is another account.
    admin(data, "token", "create", "ci", "--grant", "team/*:pull,push")
    again = refresh_grant(refreshing.url, refresh)
    assert again.status_code == 401, again.text


def test_a_refresh_token_dies_when_its_robot_expires(refreshing: RegistryProcess) -> None:
    secret = admin(refreshing.data_dir, "token", "create", "short", "--grant", "team/*:pull", "--expires", "10s")
    refresh = refresh_token_for(refreshing.url, "short", secret.strip())
    assert refresh_grant(refreshing.url, refresh).status_code == 200
    # The robot expires 10 s after it was made; its refresh token (30 days) must die with it.
    deadline = time.monotonic() + 60
    while (refused := refresh_grant(refreshing.url, refresh)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert refused.status_code == 401 and "expired" in refused.text, refused.text


def test_hostile_refresh_tokens_are_refused_cleanly(refreshing: RegistryProcess) -> None:
    access = password_grant(refreshing.url, "alice", PASSWORD).json()["access_token"]
    now = int(time.time())
    claims = {"sub": "alice", "typ": "refresh", "aud": "berth", "iss": "berth", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (access, unsigned, "", "x" * 100_000, base64.b64encode(b"\x00\xff" * 50).decode(), "a.b.c"):
        response = refresh_grant(refreshing.url, token)
        assert response.status_code == 401, (token[:40], response.status_code, response.text)
        assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


@pytest.mark.e2e
def test_docker_login_leaves_an_auth_file_podman_can_log_in_with(
    docker: Docker,  # noqa: F811
    podman: ContainerTools,  # noqa: F811
    e2e_dir: Path,  # noqa: F811
) -> None:
    data = e2e_dir / "refresh-default"
    admin(data, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    server = launch_registry(data, e2e_dir / "refresh-default.log")
    try:
        login = docker("login", "-u", "alice", "--password-stdin", server.host, stdin=PASSWORD.encode())
        assert "Login Succeeded" in login.stdout, login
        auth_file = Path(docker.env["DOCKER_CONFIG"]) / "config.json"
        stored = json.loads(auth_file.read_text())["auths"][server.host]
        assert "identitytoken" not in stored, stored
        again = podman.podman(
            "login",
            "--tls-verify=false",
            "--authfile",
            auth_file,
            "-u",
            "alice",
            "--password-stdin",
            server.host,
            stdin=PASSWORD.encode(),
            check=False,
        )
        assert again.returncode == 0 and "Login Succeeded" in again.stdout + again.stderr, again
    finally:
        docker("logout", server.host, check=False)
        server.stop()


@pytest.mark.e2e
def test_docker_refresh_token_stops_working_when_the_password_changes(
    docker: Docker,  # noqa: F811
    e2e_dir: Path,  # noqa: F811
) -> None:
    """With --refresh-tokens docker keeps an identity token instead of the password, and renews its
    access with it, until the password changes."""
    data = e2e_dir / "refresh-on"
    admin(data, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    admin(data, "grant", "alice", "team/*", "pull,push")
    server = launch_registry(data, e2e_dir / "refresh-on.log", "--refresh-tokens")
    missing = f"{server.host}/team/never-pushed:1"
    try:
        docker("login", "-u", "alice", "--password-stdin", server.host, stdin=PASSWORD.encode())
        stored = json.loads((Path(docker.env["DOCKER_CONFIG"]) / "config.json").read_text())["auths"][server.host]
        assert stored.get("identitytoken"), stored
        # Authorized through the refresh token: the registry answers that the image is not there.
        allowed = docker("pull", missing, check=False)
        assert allowed.returncode != 0 and "not found" in (allowed.stdout + allowed.stderr).lower(), allowed
        admin(data, "user", "passwd", "alice", "--password-stdin", stdin="alice-new-secret\n")
        refused = docker("pull", missing, check=False)
        output = (refused.stdout + refused.stderr).lower()
        assert refused.returncode != 0 and "unauthorized" in output and "not found" not in output, refused
    finally:
        docker("logout", server.host, check=False)
        server.stop()
