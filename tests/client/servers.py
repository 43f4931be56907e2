"""Registries the client tests run against: CNCF Distribution (plain, htpasswd, token) and ours."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import free_port

DISTRIBUTION = shutil.which("docker-registry")


def bcrypt_hash(password: str) -> str:
    """Distribution's htpasswd accepts only bcrypt: the `bcrypt` package if present, else crypt(3).

    libxcrypt's crypt(3) makes `$2b$` hashes; Python's `crypt` module wraps it until 3.13.
    """
    try:
        import bcrypt  # type: ignore[import-not-found]

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0, address: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for 127.0.0.1, valid for a day: (certificate, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Distribution:
    """`docker-registry serve` (CNCF Distribution 2.8) with filesystem storage in `root`."""

    def __init__(
        self,
        root: Path,
        auth: dict[str, Any] | None = None,
        tls: tuple[Path, Path] | None = None,
        access_log: Path | None = None,
        address: str = "127.0.0.1",
        enter: tuple[str, ...] = (),
    ) -> None:
        """`access_log`: write Distribution's access log (one line per request) to this file.

        `address` and `enter`: listen on that address, started through that command (e.g.
        `nsenter --net=...`, which then execs Distribution), for a Distribution in another
        network namespace (tests/bench/bench_upstream.py's emulated link)."""
        assert DISTRIBUTION, "docker-registry is not installed"
        self.port = free_port()
        self.host = f"{address}:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        http: dict[str, Any] = {"addr": self.host, "secret": "berth-tests"}
        if tls:
            http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": access_log is None}},
            "storage": {
                "filesystem": {"rootdirectory": str(root / "data")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": http,
        }
        if auth:
            config["auth"] = auth
        path = root / "config.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        log = open(access_log, "ab") if access_log else None  # noqa: SIM115 (the child keeps it)
        output = log or subprocess.DEVNULL
        self.process = subprocess.Popen(
            [*enter, DISTRIBUTION, "serve", str(path)], stdout=output, stderr=output, start_new_session=True
        )
        if log:
            log.close()
        wait_port(self.port, self.process, address=address)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)


def htpasswd_auth(root: Path, users: dict[str, str]) -> dict[str, Any]:
    path = root / "htpasswd"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in users.items()))
    return {"htpasswd": {"realm": "berth-tests", "path": str(path)}}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The `kid` Distribution looks up in its root bundle: libtrust's fingerprint of the key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    encoded = base64.b32encode(digest.finalize()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


class TokenServer:
    """A Docker token service: checks Basic credentials, grants what is asked, signs RS256 JWTs."""

    def __init__(
        self, root: Path, users: dict[str, str], expires_in: int = 300, refuse: Callable[[str, str], bool] | None = None
    ) -> None:
        """`refuse(subject, repository)`: True to grant that subject nothing on that repository."""
        self.users = users
        self.refuse = refuse or (lambda subject, repository: False)
        self.expires_in = expires_in
        self.requests: list[dict[str, Any]] = []
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth-test-token")])
        now = time.time()
        import datetime as dt

        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
            .sign(self.key, hashes.SHA256())
        )
        root.mkdir(parents=True, exist_ok=True)
        self.bundle = root / "token.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_key_id(self.key.public_key())
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def distribution_auth(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": "berth-tests",
                "issuer": "berth-test-token",
                "rootcertbundle": str(self.bundle),
            }
        }

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims = {
            "iss": "berth-test-token",
            "sub": subject,
            "aud": "berth-tests",
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.expires_in,
            "jti": f"{now}-{len(self.requests)}",
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802
                query = parse_qs(urlsplit(self.path).query)
                subject = ""
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server.users.get(user) != password:
                        self._deny()
                        return
                    subject = user
                self._grant(subject, [s for value in query.get("scope", []) for s in value.split(" ")])

            def do_POST(self) -> None:  # noqa: N802
                """The OAuth2 refresh-token grant docker uses with an identity token."""
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                token = form.get("refresh_token", [""])[0]
                subject = token.removeprefix("refresh-")
                if form.get("grant_type") != ["refresh_token"] or subject not in server.users:
                    self._deny()
                    return
                self._grant(subject, " ".join(form.get("scope", [])).split())

            def _deny(self) -> None:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _grant(self, subject: str, scopes: list[str]) -> None:
                server.requests.append({"subject": subject, "scopes": scopes, "method": self.command})
                access = []
                for scope in scopes:
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    allowed = actions.split(",") if subject else [a for a in actions.split(",") if a == "pull"]
                    if kind == "repository" and server.refuse(subject, name):
                        allowed = []
                    access.append({"type": kind, "name": name, "actions": allowed})
                body = json.dumps(
                    {"access_token": server.sign(subject, access), "expires_in": server.expires_in}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
