"""HTTP to one other registry: manifests, blobs, tags and referrers, read (the pull-through cache)
and written (replication), with anonymous, Basic or token auth.

Only the upstream's configured credentials are ever sent, never a client's. Bearer tokens
are cached per repository until shortly before they expire; Basic credentials go only to
the upstream's own host (requests drops Authorization on a redirect to another host).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from registry.oci import mediatypes as mt

TIMEOUT = (10.0, 60.0)
MAX_MANIFEST = 4 * 1024 * 1024
MAX_LIST = 100_000
BASIC_REUSE = 300.0
"""Seconds Basic credentials are sent up front once a registry asked for them (a streamed
upload body cannot be sent a second time after a 401)."""
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
PUSH = "pull,push"
DELETE = "pull,push,delete"


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
        self.session.headers["User-Agent"] = "berth"
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
        """A streaming GET of a blob (the caller closes it); UpstreamRefused on 404. Asked
        unencoded: layers are compressed already, and only then is the length the blob's."""
        headers = {"Accept-Encoding": "identity"}
        response = self._request("GET", repository, f"blobs/{digest}", headers=headers, stream=True)
        if response.status_code == 404:
            response.close()
            raise UpstreamRefused(f"the upstream has no blob {digest} in {repository}")
        return response

    # pushes (replication) -----------------------------------------------------------------

    def start_upload(self, repository: str, digest: str, source: str | None = None) -> str | None:
        """Start a blob upload, mounting `digest` from `source` at the registry if it can;
        None when the mount made the blob present, else the upload's location."""
        params = {"mount": digest, "from": source} if source else None
        response = self._request("POST", repository, "blobs/uploads/", PUSH, params=params)
        with response:
            if response.status_code == 201 and source:
                return None
            if response.status_code != 202 or not response.headers.get("Location"):
                raise UpstreamRefused(f"POST blobs/uploads/ in {repository}: HTTP {response.status_code}")
            return urljoin(response.url, response.headers["Location"])

    def finish_upload(self, repository: str, location: str, digest: str, size: int, body: Iterator[bytes]) -> None:
        """Upload a whole blob into a started session in one PUT (streamed)."""
        separator = "&" if urlsplit(location).query else "?"
        url = f"{location}{separator}{urlencode({'digest': digest})}"
        headers = {"Content-Type": "application/octet-stream"}
        data = SizedBody(body, size)
        response = self._request_url("PUT", url, _scope(repository, PUSH), headers=headers, data=data, retry=False)
        with response:
            if response.status_code != 201:
                raise UpstreamRefused(f"PUT blob {digest} in {repository}: HTTP {response.status_code}")

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str | None:
        """PUT a manifest; its `OCI-Subject` answer (set when the registry indexed the referrer)."""
        response = self._request(
            "PUT", repository, f"manifests/{reference}", PUSH, data=body, headers={"Content-Type": media_type}
        )
        with response:
            if response.status_code == 404 or response.status_code >= 300:
                raise UpstreamRefused(f"PUT manifest {repository}:{reference}: HTTP {response.status_code}")
            return response.headers.get("OCI-Subject")

    def delete_manifest(self, repository: str, reference: str) -> bool:
        """Delete a manifest or tag; False when the registry did not have it."""
        response = self._request("DELETE", repository, f"manifests/{reference}", DELETE)
        response.close()
        return response.status_code != 404

    def tags(self, repository: str) -> list[str]:
        """Every tag of a repository ([] when the registry has no such repository)."""
        return self._pages(repository, f"{self.url}/v2/{repository}/tags/list?n=1000", "tags")

    def repositories(self) -> list[str]:
        return self._pages(None, f"{self.url}/v2/_catalog?n=1000", "repositories")

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests whose subject is `digest`; None when the registry has
        no referrers API (the caller then reads the tag schema's `sha256-HEX` index)."""
        response = self._request("GET", repository, f"referrers/{digest}", headers={"Accept": mt.OCI_INDEX})
        with response:
            if response.status_code == 404 or not response.headers.get("Content-Type", "").startswith(mt.OCI_INDEX):
                return None
            if len(response.content) > MAX_MANIFEST:
                raise UpstreamRefused(f"the referrers of {repository}@{digest} are too many")
            return descriptors(response.content)

    def _pages(self, repository: str | None, url: str, key: str) -> list[str]:
        found: list[str] = []
        scope = _scope(repository, "pull") if repository else "registry:catalog:*"
        while url and len(found) < MAX_LIST:
            response = self._request_url("GET", url, scope)
            with response:
                if response.status_code == 404:
                    return found
                try:
                    found += [str(v) for v in (response.json().get(key) or [])]
                except (ValueError, AttributeError):
                    raise UpstreamRefused(f"GET {url}: not a JSON list of {key}") from None
                link = response.links.get("next", {}).get("url")
                url = urljoin(url, link) if link else ""
        return found

    # requests and auth -------------------------------------------------------------------

    def _request(
        self, method: str, repository: str, path: str, actions: str = "pull", **kwargs: Any
    ) -> requests.Response:
        return self._request_url(method, f"{self.url}/v2/{repository}/{path}", _scope(repository, actions), **kwargs)

    def _request_url(self, method: str, url: str, scope: str, retry: bool = True, **kwargs: Any) -> requests.Response:
        """A request with the cached authorization for `scope`; on a 401, authorize and (unless
        the body is a stream that cannot be sent twice) send it again."""
        headers = dict(kwargs.pop("headers", {}))
        token = self._token(scope)
        if token:
            headers["Authorization"] = token
        response = self._send(method, url, headers, **kwargs)
        if response.status_code == 401 and (retry or not token):
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            headers["Authorization"] = self._authorize(scope, challenge)
            if not retry:
                raise UpstreamUnavailable(f"{method} {url}: authorized only after sending the body; retrying")
            response = self._send(method, url, headers, **kwargs)
        if response.status_code >= 500 or response.status_code == 429:
            response.close()
            raise UpstreamUnavailable(f"{method} {url}: HTTP {response.status_code}")
        if response.status_code in (401, 403) or (response.status_code >= 400 and response.status_code != 404):
            detail = _error_text(response)
            response.close()
            raise UpstreamRefused(f"{method} {url}: HTTP {response.status_code}{detail}")
        return response

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"{method} {url}: {exc}") from None

    def _token(self, scope: str) -> str | None:
        with self._lock:
            cached = self._tokens.get(scope)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        return None

    def _authorize(self, scope: str, challenge: str) -> str:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self.credentials:
                raise UpstreamRefused("the upstream asks for Basic credentials and none are configured")
            value = requests.auth._basic_auth_str(*self.credentials)
            with self._lock:
                self._tokens[scope] = (value, time.monotonic() + BASIC_REUSE)
            return value
        if scheme != "bearer":
            raise UpstreamRefused(f"the upstream asks for unsupported authentication {challenge[:100]!r}")
        params = dict(CHALLENGE.findall(challenge))
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise UpstreamRefused(f"the upstream's token realm {realm[:200]!r} is not an http(s) URL")
        query = {"scope": scope}
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
            self._tokens[scope] = (value, time.monotonic() + expires_in - 5)
        return value


def _scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


def _error_text(response: requests.Response) -> str:
    """The first error's code and message from an OCI error body, for logs (short, one line)."""
    try:
        first = response.json()["errors"][0]
        return f" ({str(first.get('code'))[:40]}: {str(first.get('message'))[:200]})".replace("\n", " ")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def descriptors(body: bytes) -> list[dict[str, Any]]:
    """The `manifests` of an index document, each with a media type, a digest and a size."""
    try:
        found = json.loads(body).get("manifests") or []
        return [d for d in found if isinstance(d, dict) and isinstance(d.get("digest"), str) and "size" in d]
    except (ValueError, AttributeError):
        raise UpstreamRefused("a referrers list that is not an OCI index") from None


class SizedBody:
    """A streamed body of a known length: requests sends it with Content-Length, not chunked
    (which some registries do not accept for blob uploads)."""

    def __init__(self, chunks: Iterator[bytes], size: int) -> None:
        self.chunks = chunks
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)
