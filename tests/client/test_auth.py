"""Basic (htpasswd) and Bearer token auth against Distribution, and credentials never leaking."""

from __future__ import annotations

import base64
import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from client.api import RegistryAPI
from client.credentials import Credentials
from client.errors import AuthError, NotFound
from client.layout import Layout, store_name
from tests.client.conftest import USERS, Berth
from tests.client.images import build_image
from tests.client.servers import TokenServer
from tests.conftest import free_port


def _login(berth: Berth, host: str, password: str = USERS["alice"], code: int = 0) -> Any:
    return berth("login", "-u", "alice", "--password-stdin", host, input=password + "\n", code=code)


def test_login_checks_and_stores_like_docker(htpasswd_registry, berth: Berth, isolated: Path) -> None:
    result = _login(berth, htpasswd_registry.host)
    assert "Login Succeeded" in result.output
    config_file = isolated / "docker-config" / "config.json"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    auth = json.loads(config_file.read_text())["auths"][htpasswd_registry.host]["auth"]
    assert base64.b64decode(auth).decode() == "alice:wonderland"

    berth("logout", htpasswd_registry.host)
    assert htpasswd_registry.host not in json.loads(config_file.read_text())["auths"]


def test_login_with_a_wrong_password_fails_with_auth_code(htpasswd_registry, berth: Berth, isolated: Path) -> None:
    _login(berth, htpasswd_registry.host, "wrong", code=3)
    assert not (isolated / "docker-config" / "config.json").exists()


def test_basic_auth_push_and_pull(htpasswd_registry, store: Layout, berth: Berth) -> None:
    ref = f"{htpasswd_registry.host}/basic/app:v1"
    pushed = build_image(store, store_name(ref), [{"f": b"basic" * 1000}])
    berth("push", ref, "-q", code=3)
    _login(berth, htpasswd_registry.host)
    out = json.loads(berth("push", ref, "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    store.remove(store_name(ref))
    store.gc()
    berth("pull", ref, "-q")
    assert store.resolve(store_name(ref)).digest == pushed.digest


def test_token_auth_push_pull_and_anonymous_pull(
    token_registry, token_server: TokenServer, store: Layout, berth: Berth
) -> None:
    ref = f"{token_registry.host}/token/app:v1"
    pushed = build_image(store, store_name(ref), [{"a": b"1" * 5000}, {"b": b"2" * 5000}, {"c": b"3"}])
    berth("push", ref, "-q", code=3)

    _login(berth, token_registry.host)
    before = len(token_server.requests)
    out = json.loads(berth("push", ref, "--jobs", "4", "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    pushes = token_server.requests[before:]
    assert {r["subject"] for r in pushes} == {"alice"}
    assert len(pushes) <= 3, "tokens are cached per scope, not fetched per request"

    berth("logout", token_registry.host)
    store.remove(store_name(ref))
    store.gc()
    berth("pull", ref, "-q")
    assert store.resolve(store_name(ref)).digest == pushed.digest
    assert token_server.requests[-1]["subject"] == ""


def test_cross_repository_mount_with_tokens(token_registry, store: Layout, berth: Berth) -> None:
    _login(berth, token_registry.host)
    src = f"{token_registry.host}/token/source:v1"
    build_image(store, store_name(src), [{"m": b"mount me" * 500}])
    berth("push", src, "-q")
    out = json.loads(berth("copy", src, f"{token_registry.host}/token/dest:v1", "--format", "json").stdout)
    assert set(out["blobs"].values()) == {"mounted"}


def test_expired_token_is_refreshed(token_registry, token_server: TokenServer) -> None:
    api = RegistryAPI.connect(token_registry.host, credentials=Credentials(*next(iter(USERS.items()))))
    with pytest.raises(NotFound):
        api.list_tags("never/pushed")
    before = len(token_server.requests)
    auth = api.transport.auth
    for token in auth._tokens.values():  # type: ignore[union-attr]
        token.expires_at = 0
    with pytest.raises(NotFound):
        api.list_tags("never/pushed")
    assert len(token_server.requests) == before + 1


class _Recorder(BaseHTTPRequestHandler):
    """Plays both a Basic-auth registry that redirects blobs and the storage it redirects to."""

    seen: list[dict[str, str]] = []
    storage = ""

    def log_message(self, *args: Any) -> None:
        return None

    def do_GET(self) -> None:  # noqa: N802
        _Recorder.seen.append(
            {"path": self.path, "host": self.headers["Host"], "auth": self.headers.get("Authorization", "")}
        )
        if self.path.startswith("/storage/"):
            self._reply(200, b"blob-bytes")
        elif not self.headers.get("Authorization"):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif "/blobs/" in self.path:
            self.send_response(307)
            self.send_header("Location", f"{_Recorder.storage}/storage/blob")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._reply(200, b"{}")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_credentials_never_follow_a_redirect_to_another_host() -> None:
    servers = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    registry, storage = (f"127.0.0.1:{s.server_address[1]}" for s in servers)
    _Recorder.storage = f"http://{storage}"
    _Recorder.seen = []
    try:
        api = RegistryAPI.connect(registry, credentials=Credentials("alice", "secret"))
        response = api.get_blob("some/repo", "sha256:" + "0" * 64)
        assert response.content == b"blob-bytes"
        to_registry = [s for s in _Recorder.seen if s["host"] == registry and "/blobs/" in s["path"]]
        to_storage = [s for s in _Recorder.seen if s["host"] == storage]
        assert any(s["auth"].startswith("Basic ") for s in to_registry)
        assert to_storage and all(s["auth"] == "" for s in to_storage)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_auth_error_is_raised_without_credentials(htpasswd_registry) -> None:
    api = RegistryAPI.connect(htpasswd_registry.host, credentials=Credentials())
    with pytest.raises(AuthError):
        api.ping()


def test_identity_token_uses_the_refresh_token_grant(
    token_registry, token_server: TokenServer, store: Layout, berth: Berth, isolated: Path
) -> None:
    config = isolated / "docker-config" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"auths": {token_registry.host: {"identitytoken": "refresh-alice"}}}))
    ref = f"{token_registry.host}/identity/app:v1"
    pushed = build_image(store, store_name(ref), [{"i": b"identity"}])
    before = len(token_server.requests)
    out = json.loads(berth("push", ref, "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    assert {(r["method"], r["subject"]) for r in token_server.requests[before:]} == {("POST", "alice")}


def test_token_flow_on_both_registries(token_auth_registry, store: Layout, berth: Berth) -> None:
    host = token_auth_registry.host
    ref = f"{host}/team/tokens:v1"
    pushed = build_image(store, store_name(ref), [{"a": b"a" * 3000}, {"b": b"b" * 3000}])
    berth("push", ref, "-q", code=3)
    _login(berth, host, "wrong", code=3)
    _login(berth, host)
    out = json.loads(berth("push", ref, "--jobs", "4", "--format", "json").stdout)
    assert out["digest"] == pushed.digest
    mounted = json.loads(berth("copy", ref, f"{host}/team/mounted:v1", "--format", "json").stdout)
    assert set(mounted["blobs"].values()) == {"mounted"}
    assert "v1" in berth("tags", ref).stdout.split()

    berth("logout", host)
    store.remove(store_name(ref))
    store.gc()
    berth("pull", ref, "-q")
    assert store.resolve(store_name(ref)).digest == pushed.digest
    berth("push", ref, f"{host}/team/anonymous:v1", "-q", code=3)
