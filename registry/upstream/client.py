"""HTTP to one upstream registry: manifests and blobs, with anonymous, Basic or token auth.

Only the upstream's configured credentials are ever sent, never a client's. Bearer tokens
are cached per repository until shortly before they expire; Basic credentials go only to
the upstream's own host (requests drops Authorization on a redirect to another host).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from typing import Any

import requests

from registry.oci import mediatypes as mt

TIMEOUT = (10.0, 60.0)
MAX_MANIFEST = 4 * 1024 * 1024
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class UpstreamUnavailable(Exception):
    """The upstream cannot answer now: unreachable, timing out, 5xx or 429."""


class UpstreamRefused(Exception):
    """The upstream answered, but not with what was asked (401/403 after auth, other 4xx)."""


class UpstreamClient:
    def __init__(self, url: str, username: str | None, password: str | None, ca_pem: str | None) -> None:
        self.url = url.rstrip("/")
        self.credentials = (username, password or "") if username else None
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["User-Agent"] = "berth-pull-through-cache"
        self._ca_file: str | None = None
        if ca_pem:
            fd, self._ca_file = tempfile.mkstemp(prefix="berth-upstream-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as fh:
                fh.write(ca_pem)
            self.session.verify = self._ca_file
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()
        if self._ca_file:
            os.unlink(self._ca_file)

    # the API ---------------------------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest the upstream has for a reference (None when it has none)."""
        response = self._request("HEAD", repository, f"manifests/{reference}", headers={"Accept": mt.ACCEPT_ALL})
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        _body, _media_type, digest = self.get_manifest(repository, reference)
        return digest

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str | None]:
        """A manifest's exact bytes, media type and announced digest; UpstreamRefused on 404."""
        response = self._request(
            "GET", repository, f"manifests/{reference}", headers={"Accept": mt.ACCEPT_ALL}, stream=True
        )
        with response:
            if response.status_code == 404:
                raise UpstreamRefused(f"the upstream has no manifest {repository}:{reference}")
            body = bytearray()
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > MAX_MANIFEST:
                    raise UpstreamRefused(f"the upstream's manifest {repository}:{reference} is too large")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return bytes(body), media_type, response.headers.get("Docker-Content-Digest")

    def blob_size(self, repository: str, digest: str) -> int | None:
        response = self._request("HEAD", repository, f"blobs/{digest}")
        if response.status_code == 404:
            return None
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None

    def open_blob(self, repository: str, digest: str) -> requests.Response:
        """A streaming GET of a blob (the caller closes it); UpstreamRefused on 404."""
        response = self._request("GET", repository, f"blobs/{digest}", stream=True)
        if response.status_code == 404:
            response.close()
            raise UpstreamRefused(f"the upstream has no blob {digest} in {repository}")
        return response

    # requests and auth -------------------------------------------------------------------

    def _request(self, method: str, repository: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.url}/v2/{repository}/{path}"
        headers = dict(kwargs.pop("headers", {}))
        token = self._token(repository)
        if token:
            headers["Authorization"] = token
        response = self._send(method, url, headers, **kwargs)
        if response.status_code == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            headers["Authorization"] = self._authorize(repository, challenge)
            response = self._send(method, url, headers, **kwargs)
        if response.status_code >= 500 or response.status_code == 429:
            response.close()
            raise UpstreamUnavailable(f"{method} {url}: HTTP {response.status_code}")
        if response.status_code in (401, 403) or (response.status_code >= 400 and response.status_code != 404):
            response.close()
            raise UpstreamRefused(f"{method} {url}: HTTP {response.status_code}")
        return response

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"{method} {url}: {exc}") from None

    def _token(self, repository: str) -> str | None:
        with self._lock:
            cached = self._tokens.get(repository)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        return None

    def _authorize(self, repository: str, challenge: str) -> str:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self.credentials:
                raise UpstreamRefused("the upstream asks for Basic credentials and none are configured")
            return requests.auth._basic_auth_str(*self.credentials)
        if scheme != "bearer":
            raise UpstreamRefused(f"the upstream asks for unsupported authentication {challenge[:100]!r}")
        params = dict(CHALLENGE.findall(challenge))
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise UpstreamRefused(f"the upstream's token realm {realm[:200]!r} is not an http(s) URL")
        query = {"scope": f"repository:{repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            response = self.session.get(realm, params=query, auth=self.credentials, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"token request to {realm}: {exc}") from None
        if response.status_code >= 500:
            raise UpstreamUnavailable(f"token request to {realm}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise UpstreamRefused(f"token request to {realm}: HTTP {response.status_code}")
        try:
            body = response.json()
            token = str(body.get("token") or body["access_token"])
            expires_in = max(int(body.get("expires_in") or 60), 10)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UpstreamRefused(f"token request to {realm}: no token in the answer") from None
        value = f"Bearer {token}"
        with self._lock:
            self._tokens[repository] = (value, time.monotonic() + expires_in - 5)
        return value
