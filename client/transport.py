"""HTTP to one registry host: scheme and TLS choice as docker makes it, and retries.

Docker reads extra trust for a registry from `/etc/docker/certs.d/HOST[:PORT]/`: every
`*.crt` is a CA, and a `*.cert`/`*.key` pair is a client certificate. Loopback registries
and those named with `--insecure` may speak plain HTTP; docker tries HTTPS first.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from client.errors import NetworkError

CERTS_DIR = Path(os.environ.get("BERTH_CERTS_DIR", "/etc/docker/certs.d"))
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TIMEOUT = (15.0, 300.0)
USER_AGENT = "berth/0.1"
_bundles: dict[tuple[str, ...], str] = {}
_bundles_lock = threading.Lock()


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _ca_bundle(extra: list[Path]) -> str:
    """A file with the default CAs plus `extra`: requests takes one bundle, docker adds to the pool."""
    key = tuple(sorted(str(p) for p in extra))
    with _bundles_lock:
        if key not in _bundles:
            default = os.environ.get("REQUESTS_CA_BUNDLE") or requests.certs.where()
            text = Path(default).read_text() + "".join("\n" + p.read_text() for p in extra)
            fd, path = tempfile.mkstemp(prefix="berth-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as out:
                out.write(text)
            _bundles[key] = path
        return _bundles[key]


def _speaks_tls(host: str) -> bool:
    """Whether HOST[:PORT] completes a TLS handshake: how an insecure registry's scheme is chosen.

    A bare handshake with an unverified context costs a millisecond on loopback, where a
    full HTTPS request through requests would load the CA bundle first.
    """
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name or not port.isdigit():
        name, port = host, "443"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((name.strip("[]"), int(port)), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname=name.strip("[]")):
                return True
    except (ssl.SSLError, OSError):
        return False


def retry_after(response: requests.Response | None, attempt: int) -> float:
    """Seconds to wait: the server's Retry-After (seconds or HTTP date), else exponential backoff."""
    header = response.headers.get("Retry-After") if response is not None else None
    if header:
        try:
            return min(max(float(header), 0.0), 60.0)
        except ValueError:
            try:
                return min(max(parsedate_to_datetime(header).timestamp() - time.time(), 0.0), 60.0)
            except (TypeError, ValueError):
                pass
    return min(0.25 * 2**attempt, 8.0) * (0.5 + random.random() / 2)


def _replayable(data: Any) -> bool:
    return data is None or isinstance(data, bytes | str | dict)


class Transport:
    """A pooled session for one registry host that picks the scheme once and retries safely.

    Only requests whose body can be sent again are retried; a streamed upload that fails
    is restarted by its caller.
    """

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        ca_cert: str | None = None,
        pool_size: int = 16,
        attempts: int = 5,
        certs_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.insecure = insecure or is_loopback(host)
        self.attempts = attempts
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        if self.insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._configure_tls(ca_cert, certs_dir or CERTS_DIR)
        self._base: str | None = None
        self._base_lock = threading.Lock()

    def _configure_tls(self, ca_cert: str | None, certs_dir: Path) -> None:
        """Per-request `verify` is passed explicitly: requests lets REQUESTS_CA_BUNDLE override the session's."""
        host_dir = certs_dir / self.host
        cas = sorted(host_dir.glob("*.crt")) if host_dir.is_dir() else []
        if ca_cert:
            cas.append(Path(ca_cert))
        if cas:
            self.session.verify = _ca_bundle(cas)
        for cert in sorted(host_dir.glob("*.cert")) if host_dir.is_dir() else []:
            key = cert.with_suffix(".key")
            if key.exists():
                self.session.cert = (str(cert), str(key))
                break

    def set_auth(self, auth: AuthBase | None) -> None:
        self.session.auth = auth

    @property
    def base_url(self) -> str:
        """`https://HOST` or, for an insecure registry that does not speak TLS, `http://HOST`."""
        with self._base_lock:
            if self._base is None:
                self._base = self._pick_scheme()
            return self._base

    def _pick_scheme(self) -> str:
        https = f"https://{self.host}"
        if not self.insecure:
            return https
        if not _speaks_tls(self.host):
            return f"http://{self.host}"
        self.session.verify = False
        return https

    def url(self, path: str) -> str:
        return path if "://" in path else self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        stream: bool = False,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """Send, retrying connection errors, 429 and 5xx while the body can be replayed."""
        url = self.url(path)
        attempts = self.attempts if _replayable(data) else 1
        for attempt in range(attempts):
            response = None
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=dict(headers or {}),
                    params=params,
                    data=data,
                    stream=stream,
                    allow_redirects=allow_redirects,
                    timeout=TIMEOUT,
                    verify=self.session.verify,
                )
            except requests.exceptions.SSLError as exc:
                raise NetworkError(f"TLS error talking to {self.host}: {exc}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt + 1 >= attempts:
                    raise NetworkError(f"cannot reach {self.host}: {exc}") from None
            else:
                if response.status_code not in RETRY_STATUSES or attempt + 1 >= attempts:
                    return response
                response.close()
            time.sleep(retry_after(response, attempt))
        raise NetworkError(f"cannot reach {self.host}")

    def close(self) -> None:
        self.session.close()


class NoAuth(AuthBase):
    """Keeps the session's registry auth off a request (the scheme probe, the token realm)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r
