"""The OCI Distribution API of one registry host: one method per endpoint.

Methods return plain values or raise `client.errors` exceptions; they know the protocol
(status codes, Location, Range, Link pagination) but not images or layouts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple
from urllib.parse import urljoin

from client.auth import RegistryAuth
from client.credentials import Credentials, load_credentials
from client.errors import AuthError, ClientError, RegistryDenied, RegistryError, RegistryNotFound
from client.http import Response
from client.transport import Transport
from registry.oci import mediatypes as mt


class ManifestInfo(NamedTuple):
    """What a registry says of a manifest without sending it (HEAD): its media type, digest and size."""

    media_type: str
    digest: str | None
    size: int


def _errors(response: Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def check(response: Response, *expected: int) -> Response:
    """Return `response` if its status is expected, else raise the matching error."""
    if response.status_code in expected:
        return response
    errors = _errors(response)
    url = response.url
    response.close()
    if response.status_code == 401 and 'error="insufficient_scope"' in response.headers.get("www-authenticate", ""):
        # the token in hand does not cover the request and asking again will not help: a denial, as docker reads it
        raise RegistryDenied(401, [{"code": "DENIED", "message": "requested access to the resource is denied"}], url)
    if response.status_code == 401:
        raise AuthError(f"authentication required for {url}" + (": " + errors[0].get("message", "") if errors else ""))
    if response.status_code == 403:
        raise RegistryDenied(response.status_code, errors, url)
    if response.status_code == 404:
        raise RegistryNotFound(response.status_code, errors, url)
    raise RegistryError(response.status_code, errors, url)


class RegistryAPI:
    def __init__(self, transport: Transport, credentials: Credentials | None = None) -> None:
        self.transport = transport
        self.host = transport.host
        creds = credentials if credentials is not None else load_credentials(transport.host)
        transport.set_auth(RegistryAuth(transport.host, creds, transport))

    @classmethod
    def connect(
        cls,
        host: str,
        *,
        insecure: bool = False,
        ca_cert: str | None = None,
        pool_size: int = 16,
        credentials: Credentials | None = None,
    ) -> RegistryAPI:
        transport = Transport(host, insecure=insecure, ca_cert=ca_cert, pool_size=pool_size)
        return cls(transport, credentials)

    def _send(self, method: str, path: str, **kwargs: Any) -> Response:
        return self.transport.request(method, path, **kwargs)

    def ping(self) -> None:
        """GET /v2/: proves the registry speaks the API and that the credentials are accepted."""
        check(self._send("GET", "/v2/"), 200)

    def get_manifest(self, repository: str, reference: str, accept: str = mt.ACCEPT_ALL) -> tuple[bytes, str]:
        response = check(self._send("GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept}), 200)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return response.content, media_type

    def head_manifest(self, repository: str, reference: str) -> ManifestInfo | None:
        response = self._send("HEAD", f"/v2/{repository}/manifests/{reference}", headers={"Accept": mt.ACCEPT_ALL})
        if response.status_code == 404:
            return None
        check(response, 200)
        return ManifestInfo(
            response.headers.get("Content-Type", "").split(";")[0].strip(),
            response.headers.get("Docker-Content-Digest"),
            int(response.headers.get("Content-Length") or 0),
        )

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str | None:
        response = check(
            self._send(
                "PUT", f"/v2/{repository}/manifests/{reference}", data=data, headers={"Content-Type": media_type}
            ),
            201,
            200,
        )
        return response.headers.get("Docker-Content-Digest")

    def delete_manifest(self, repository: str, digest: str) -> None:
        check(self._send("DELETE", f"/v2/{repository}/manifests/{digest}"), 202, 200)

    def head_blob(self, repository: str, digest: str) -> int | None:
        """The blob's size if the repository has it, else None."""
        response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return None
        check(response, 200)
        return int(response.headers.get("Content-Length") or 0)

    def get_blob(self, repository: str, digest: str, offset: int = 0) -> Response:
        """A streaming response; 206 when the registry honoured `offset`, 200 from the start."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._send("GET", f"/v2/{repository}/blobs/{digest}", headers=headers, stream=True)
        if offset and response.status_code == 416:
            response.close()
            response = self._send("GET", f"/v2/{repository}/blobs/{digest}", stream=True)
        return check(response, 200, 206)

    def _location(self, response: Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(response.status_code, [{"message": "no Location header"}], response.url)
        return urljoin(response.url, location)

    def start_upload(self, repository: str) -> str:
        """POST an upload session; return its absolute Location."""
        response = check(self._send("POST", f"/v2/{repository}/blobs/uploads/"), 202)
        return self._location(response)

    def mount_blob(self, repository: str, digest: str, source: str) -> str | None:
        """Cross-repository mount: None when mounted, else the Location of a new upload session."""
        response = check(
            self._send("POST", f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source}), 201, 202
        )
        return None if response.status_code == 201 else self._location(response)

    def upload_chunk(self, location: str, chunk: bytes, start: int) -> str:
        """PATCH one chunk at `start`; return the next Location."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
            "Content-Length": str(len(chunk)),
        }
        return self._location(check(self._send("PATCH", location, data=chunk, headers=headers), 202))

    def finish_upload(self, location: str, digest: str, body: Any = None, length: int = 0) -> str | None:
        """PUT ?digest= closing the upload, with the whole blob (`body`) or nothing left to send."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        response = check(
            self._send("PUT", location, params={"digest": digest}, data=body or b"", headers=headers), 201, 204
        )
        return response.headers.get("Docker-Content-Digest")

    def cancel_upload(self, location: str) -> None:
        """Best effort: the registry expires abandoned sessions anyway, so a failure here is not reported."""
        try:
            self._send("DELETE", location).close()
        except ClientError:
            pass

    def _paged(self, path: str, key: str, page_size: int | None) -> Iterable[str]:
        params: dict[str, Any] | None = {"n": page_size} if page_size else None
        url = path
        while url:
            response = check(self._send("GET", url, params=params), 200)
            try:
                page = response.json()
            except ValueError:
                raise RegistryError(200, [{"message": f"{key} list is not JSON"}], response.url) from None
            yield from page.get(key) or []
            url = response.links.get("next", "")
            params = None

    def list_tags(self, repository: str, page_size: int | None = None) -> list[str]:
        return list(self._paged(f"/v2/{repository}/tags/list", "tags", page_size))

    def catalog(self, page_size: int | None = None) -> list[str]:
        return list(self._paged("/v2/_catalog", "repositories", page_size))

    def close(self) -> None:
        self.transport.close()
