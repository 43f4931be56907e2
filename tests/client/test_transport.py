"""Retries with Retry-After, the scheme choice, and trust from a certs.d directory over real TLS."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from client.api import RegistryAPI
from client.errors import NetworkError
from client.transport import Transport, is_loopback, retry_after
from tests.client.fakes import ScriptedServer, reply
from tests.client.servers import Distribution, loopback_certificate


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example:5000") and not is_loopback("10.0.0.1")


def test_503_with_retry_after_is_retried() -> None:
    calls = {"n": 0}

    def handle(request: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        if calls["n"] <= 2 and request.path.startswith("/v2/repo/tags"):
            reply(request, 503, b"busy", {"Retry-After": "1"})
        else:
            reply(request, 200, b'{"name":"repo","tags":["a"]}', {"Content-Type": "application/json"})

    server = ScriptedServer(handle)
    try:
        api = RegistryAPI.connect(server.host)
        started = time.monotonic()
        assert api.list_tags("repo") == ["a"]
        assert time.monotonic() - started >= 2.0
    finally:
        server.stop()


def test_retry_after_forms() -> None:
    class R:
        headers = {"Retry-After": "3"}

    assert retry_after(R(), 0) == 3.0  # type: ignore[arg-type]
    R.headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert retry_after(R(), 0) == 0.0  # type: ignore[arg-type]
    assert 0 < retry_after(None, 3) <= 8


def test_plain_http_is_chosen_for_a_loopback_registry(distribution: Distribution) -> None:
    transport = Transport(distribution.host)
    assert transport.base_url == f"http://{distribution.host}"


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tls")
    cert, key = loopback_certificate(root)
    server = Distribution(root, tls=(cert, key))
    yield server, cert
    server.stop()


def _verified(host: str, **kwargs) -> Transport:
    """A transport that verifies TLS as for a remote registry (loopback would be insecure)."""
    transport = Transport(host, **kwargs)
    transport.insecure = False
    return transport


def test_tls_needs_the_ca_from_certs_d(tls_registry, tmp_path: Path) -> None:
    server, cert = tls_registry
    with pytest.raises(NetworkError, match="TLS"):
        _verified(server.host, certs_dir=tmp_path).request("GET", "/v2/")
    host_dir = tmp_path / server.host
    host_dir.mkdir()
    (host_dir / "ca.crt").write_bytes(cert.read_bytes())
    assert _verified(server.host, certs_dir=tmp_path).request("GET", "/v2/").status_code == 200
    assert (
        _verified(server.host, ca_cert=str(cert), certs_dir=tmp_path / "none").request("GET", "/v2/").status_code == 200
    )


def test_insecure_loopback_tls_is_used_without_verification(tls_registry) -> None:
    server, _ = tls_registry
    transport = Transport(server.host)
    assert transport.base_url == f"https://{server.host}"
    assert transport.request("GET", "/v2/").status_code == 200
