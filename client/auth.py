"""Registry authentication for the transport: Basic, and the Bearer token challenge.

A 401 carries `WWW-Authenticate: Bearer realm=...,service=...,scope=...` (or `Basic`). The
handler fetches a token for the scope, caches it per scope until it expires, and replays the
request. Once the challenge is known it attaches credentials before sending, so streamed
uploads are not refused halfway. Credentials go only to the registry's own host and its
`/v2/` paths: a blob redirected to object storage never sees them.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from client.credentials import Credentials
from client.errors import AuthError
from client.transport import Transport, basic_auth

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")
REFRESH_MARGIN = 10.0
CLIENT_ID = "berth"


class Challenge(NamedTuple):
    """A WWW-Authenticate challenge: its scheme (Basic, Bearer) and parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _PARAM_RE.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def scopes_for(method: str, url: str) -> tuple[str, ...]:
    """The scopes a request needs, as Distribution's token auth names them."""
    parts = urlsplit(url)
    if parts.path.rstrip("/") == "/v2/_catalog":
        return ("registry:catalog:*",)
    match = _REPO_PATH_RE.match(parts.path)
    if not match:
        return ()
    repository = match.group(1)
    if method in ("GET", "HEAD"):
        actions = "pull"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull,push"
    scopes = [f"repository:{repository}:{actions}"]
    for source in parse_qs(parts.query).get("from", []):
        scopes.append(f"repository:{source}:pull")
    return tuple(scopes)


def _covers(granted: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    have: dict[str, set[str]] = {}
    for scope in granted:
        resource, _, actions = scope.rpartition(":")
        have.setdefault(resource, set()).update(actions.split(","))
    for scope in wanted:
        resource, _, actions = scope.rpartition(":")
        if not set(actions.split(",")) <= have.get(resource, set()):
            return False
    return True


class _Token:
    """A bearer token and when it stops being good (seconds since the epoch)."""

    __slots__ = ("value", "expires_at")

    def __init__(self, value: str, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


class RegistryAuth:
    """Thread-safe: one instance serves every request to one registry host.

    Tokens are fetched through `transport` without the registry's own auth (the realm may be
    another host; Basic credentials go to it only as the token request's own).
    """

    def __init__(self, host: str, credentials: Credentials | None, transport: Transport) -> None:
        self.host = host
        self.credentials = credentials
        self.transport = transport
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._fetching: dict[tuple[str, ...], threading.Lock] = {}

    def _applies(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.netloc == self.host and parts.path.startswith("/v2/")

    def header(self, method: str, url: str) -> str | None:
        if not self._applies(url):
            return None
        return self._header(scopes_for(method, url), refresh=False)

    def _header(self, scopes: tuple[str, ...], refresh: bool) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials
            if creds and creds.username is not None:
                return basic_auth(creds.username, creds.password or "")
            return None
        if challenge.scheme == "bearer":
            return f"Bearer {self._token(scopes, refresh)}"
        return None

    def _cached(self, scopes: tuple[str, ...]) -> str | None:
        """A live token whose scopes cover `scopes` (a pull,push token serves a pull)."""
        now = time.time()
        for key, token in self._tokens.items():
            if token.expires_at - REFRESH_MARGIN > now and _covers(key, scopes):
                return token.value
        return None

    def _token(self, scopes: tuple[str, ...], refresh: bool) -> str:
        key = tuple(sorted(set(scopes)))
        with self._lock:
            fetch_lock = self._fetching.setdefault(key, threading.Lock())
        with fetch_lock:
            if not refresh:
                with self._lock:
                    cached = self._cached(key)
                if cached:
                    return cached
            token = self._fetch_token(key)
            with self._lock:
                self._tokens[key] = token
            return token.value

    def _fetch_token(self, scopes: tuple[str, ...]) -> _Token:
        assert self._challenge is not None
        params = self._challenge.params
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.host} sent a Bearer challenge without a realm")
        service = params.get("service")
        creds = self.credentials
        headers: dict[str, str] = {}
        if creds and creds.identity_token:
            form: dict[str, Any] = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": CLIENT_ID,
                "scope": " ".join(scopes),
            }
            if service:
                form["service"] = service
            response = self.transport.request("POST", realm, data=form, auth=False)
        else:
            query: list[tuple[str, str]] = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            if creds and creds.username is not None:
                query.append(("account", creds.username))
                headers["Authorization"] = basic_auth(creds.username, creds.password or "")
            response = self.transport.request("GET", realm, params=query, headers=headers, auth=False)
        if response.status_code in (401, 403):
            raise AuthError(f"the token service {realm} refused the credentials ({response.status_code})")
        if response.status_code != 200:
            raise AuthError(f"the token service {realm} answered {response.status_code}")
        body = response.json()
        value = body.get("token") or body.get("access_token")
        if not value:
            raise AuthError(f"the token service {realm} returned no token")
        expires_in = float(body.get("expires_in") or 60)
        return _Token(value, time.time() + expires_in)

    def challenged(self, method: str, url: str, challenge: str, had_auth: bool, replayable: bool) -> str | None:
        """Learn the challenge of a 401; the Authorization to replay the request with, if any."""
        if not self._applies(url):
            return None
        parsed = parse_challenge(challenge)
        if parsed is None or parsed.scheme not in ("basic", "bearer"):
            return None
        with self._lock:
            self._challenge = parsed
        if not replayable or (had_auth and parsed.scheme == "basic"):
            return None
        scopes = scopes_for(method, url)
        if parsed.scheme == "bearer" and parsed.params.get("scope"):
            scopes = tuple(parsed.params["scope"].split(" ")) + scopes
        return self._header(scopes, refresh=had_auth)
