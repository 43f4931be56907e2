"""HTTP to one registry host: scheme and TLS choice as docker makes it, and retries.

Docker reads extra trust for a registry from `/etc/docker/certs.d/HOST[:PORT]/`: every
`*.crt` is a CA, and a `*.cert`/`*.key` pair is a client certificate. Loopback registries
and those named with `--insecure` may speak plain HTTP; docker tries HTTPS first.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from client.errors import NetworkError
from client.http import Pool, Response, TransportErrors, encode_body, with_params

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

CERTS_DIR = Path(os.environ.get("BERTH_CERTS_DIR", "/etc/docker/certs.d"))
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "berth/0.1"


class Auth(Protocol):
    """What the transport asks of the registry's auth (client.auth.RegistryAuth)."""

    def header(self, method: str, url: str) -> str | None:
        """Authorization for a request about to be sent, when the challenge is known."""
        ...

    def challenged(self, method: str, url: str, challenge: str, had_auth: bool, replayable: bool) -> str | None:
        """After a 401: the Authorization to send the request again with, or None to give up."""
        ...


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if not (":" in name or name[-1:].isdigit()):
        return False  # a host name: no need to parse it (every pull passes here)
    address = _ip_address(name)
    return address is not None and address.is_loopback


def _ip_address(name: str) -> IPv4Address | IPv6Address | None:
    """`name` as an IP address, or None for a host name."""
    import ipaddress  # loaded with urllib.parse anyway; here to say who needs it

    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def default_cafile() -> str | None:
    """The CA bundle to trust: $REQUESTS_CA_BUNDLE or $SSL_CERT_FILE, else certifi's, else the system's."""
    chosen = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if chosen:
        return chosen
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _speaks_tls(host: str) -> bool:
    """Whether HOST[:PORT] completes a TLS handshake: how an insecure registry's scheme is chosen.

    A bare handshake with an unverified context costs a millisecond on loopback, where a
    verified context would load the CA bundle first.
    """
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name or not port.isdigit():
        name, port = host, "443"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    address = name.strip("[]")
    # ssl sends no SNI for an IP address: None says the same and spares ssl the idna codec, which
    # getaddrinfo would import too for a str (client/http.py passes ASCII hosts as bytes, as here).
    server_name = None if _ip_address(address) is not None else address
    host_bytes = address.encode("ascii") if address.isascii() else address
    try:
        with socket.create_connection((host_bytes, int(port)), timeout=5) as sock:  # type: ignore[arg-type]
            with context.wrap_socket(sock, server_hostname=server_name):
                return True
    except (ssl.SSLError, OSError):
        return False


def retry_after(response: Response | None, attempt: int) -> float:
    """Seconds to wait: the server's Retry-After (seconds or HTTP date), else exponential backoff."""
    header = response.headers.get("Retry-After") if response is not None else None
    if header:
        try:
            return min(max(float(header), 0.0), 60.0)
        except ValueError:
            from email.utils import parsedate_to_datetime  # here: the email package costs ~10 ms to import

            try:
                return min(max(parsedate_to_datetime(header).timestamp() - time.time(), 0.0), 60.0)
            except (TypeError, ValueError):
                pass
    return min(0.25 * 2**attempt, 8.0) * (0.5 + random.random() / 2)


class Transport:
    """Pooled connections to one registry host; picks the scheme once and retries safely.

    Only requests whose body can be sent again are retried; a streamed upload that fails
    is restarted by its caller. Docker adds a host's `certs.d` CAs to the default trust, and
    so does this transport.
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
        self.pool_size = pool_size
        self.auth: Auth | None = None
        self._cas: list[Path] = []
        self._client_cert: tuple[str, str] | None = None
        self._trust(ca_cert, certs_dir or CERTS_DIR)
        self._verify = True
        self._pool: Pool | None = None
        self._base: str | None = None
        self._lock = threading.Lock()

    def _trust(self, ca_cert: str | None, certs_dir: Path) -> None:
        host_dir = certs_dir / self.host
        self._cas = sorted(host_dir.glob("*.crt")) if host_dir.is_dir() else []
        if ca_cert:
            self._cas.append(Path(ca_cert))
        for cert in sorted(host_dir.glob("*.cert")) if host_dir.is_dir() else []:
            key = cert.with_suffix(".key")
            if key.exists():
                self._client_cert = (str(cert), str(key))
                break

    def _context(self) -> ssl.SSLContext:
        if not self._verify:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=default_cafile())
            for ca in self._cas:
                context.load_verify_locations(cafile=str(ca))
        if self._client_cert:
            context.load_cert_chain(*self._client_cert)
        return context

    @property
    def pool(self) -> Pool:
        """Made on first use, once the scheme (and so whether to verify TLS) is known."""
        self.base_url  # noqa: B018 -- picks the scheme
        with self._lock:
            if self._pool is None:
                self._pool = Pool(self._context, self.pool_size)
            return self._pool

    def set_auth(self, auth: Auth | None) -> None:
        self.auth = auth

    @property
    def base_url(self) -> str:
        """`https://HOST` or, for an insecure registry that does not speak TLS, `http://HOST`."""
        with self._lock:
            if self._base is None:
                self._base = self._pick_scheme()
            return self._base

    def _pick_scheme(self) -> str:
        https = f"https://{self.host}"
        if not self.insecure:
            return https
        if not _speaks_tls(self.host):
            return f"http://{self.host}"
        self._verify = False
        return https

    def url(self, path: str) -> str:
        return path if "://" in path else self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
        data: Any = None,
        stream: bool = False,
        allow_redirects: bool = True,
        auth: bool = True,
    ) -> Response:
        """Send, retrying connection errors, 429 and 5xx while the body can be replayed.

        With `auth`, the registry's credentials go along (only to its own `/v2/` paths), and a
        401 with a challenge is answered once, if the body can be sent again.
        """
        url = with_params(self.url(path), params)
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        body = encode_body(data, sent)
        attempts = self.attempts if _replayable(body) else 1
        for attempt in range(attempts):
            response = None
            try:
                response = self._send(method, url, sent, body, allow_redirects, stream, auth)
            except ssl.SSLError as exc:
                raise NetworkError(f"TLS error talking to {self.host}: {exc}") from None
            except TransportErrors as exc:
                if attempt + 1 >= attempts:
                    raise NetworkError(f"cannot reach {self.host}: {exc}") from None
            else:
                if response.status_code not in RETRY_STATUSES or attempt + 1 >= attempts:
                    return response
                response.close()
            time.sleep(retry_after(response, attempt))
        raise NetworkError(f"cannot reach {self.host}")

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: Any, follow: bool, stream: bool, auth: bool
    ) -> Response:
        registry_auth = self.auth if auth else None
        sent = dict(headers)
        if registry_auth is not None and (value := registry_auth.header(method, url)):
            sent["Authorization"] = value
        response = self.pool.send(method, url, sent, body, follow, stream)
        if response.status_code != 401 or registry_auth is None:
            return response
        retry = registry_auth.challenged(
            method,
            url,
            response.headers.get("WWW-Authenticate", ""),
            "Authorization" in sent,
            _replayable(body),
        )
        if retry is None:
            return response
        response.close()
        return self.pool.send(method, url, {**headers, "Authorization": retry}, body, follow, stream)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _replayable(body: Any) -> bool:
    return body is None or isinstance(body, bytes)
