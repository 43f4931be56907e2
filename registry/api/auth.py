"""`require(request, repository, action)`: the one call every handler makes before it acts.

Basic credentials and bearer tokens are accepted on every endpoint. This module reads
them from the headers and writes the challenges; the rules (an open registry while no
account exists, grants, what a token covers) are `registry.auth.gate`'s, login
throttling `registry.auth.logins`'s.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from registry.api.base import call
from registry.auth.access import ANONYMOUS, Access, Grants
from registry.auth.gate import Gate, Principal, Verdict
from registry.auth.logins import Logins
from registry.auth.proxies import TrustedProxies
from registry.auth.tokens import InvalidToken, TokenAuthority
from registry.errors import Denied, Unauthorized

if TYPE_CHECKING:
    from registry.metadata.accounts import Accounts

FORWARDED_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,255}")


@dataclass
class Authenticator:
    """Credentials in, challenges out, over the rules of `gate` and `logins`."""

    gate: Gate
    authority: TokenAuthority
    logins: Logins
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    refresh_tokens: bool = False

    @property
    def accounts(self) -> Accounts:
        return self.gate.accounts

    def known_open(self) -> bool:
        return self.gate.known_open()

    def is_open(self) -> bool:
        return self.gate.is_open()

    def grants(self, principal: str) -> Grants:
        return self.gate.grants(principal)

    # -- credentials

    def client_address(self, request: Request) -> str:
        """The client's address: the peer's, or the one a trusted proxy forwarded."""
        peer = request.client.host if request.client else "unknown"
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        return self.proxies.client(peer, forwarded or None)

    async def login(self, request: Request, name: str, password: str, challenge: bool = True) -> None:
        """Check a password (throttled); Unauthorized (with a challenge, except from /token) when wrong."""
        if not await self.logins.check(name, password, self.client_address(request)):
            headers = self.challenge(request, None) if challenge else None
            raise Unauthorized("invalid username or password", headers=headers)

    def identify(self, request: Request, login: str | None) -> Principal:
        """Who sent this request: the account of a checked Basic login, a bearer token's subject,
        or anonymous (raises Unauthorized for a bad token)."""
        if login is not None:
            return Principal(login)
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            try:
                claims = self.authority.verify(value.strip())
            except InvalidToken as exc:
                raise Unauthorized(f"invalid token: {exc}", headers=self.challenge(request, None)) from None
            return Principal(claims.subject or ANONYMOUS, claims=claims)
        return Principal(ANONYMOUS)

    # -- the challenge docker and friends follow

    def realm(self, request: Request) -> str:
        scheme, host = request.url.scheme, request.headers.get("host", request.url.netloc)
        if request.client and self.proxies.trusts(request.client.host):
            proto = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip().lower()
            forwarded_host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
            scheme = proto if proto in ("http", "https") else scheme
            host = forwarded_host if FORWARDED_HOST.fullmatch(forwarded_host) else host
        return f"{scheme}://{host}/token"

    def challenge(self, request: Request, access: Access | None, error: str | None = None) -> dict[str, str]:
        value = f'Bearer realm="{self.realm(request)}",service="{self.authority.service}"'
        if access is not None:
            value += f',scope="{access.scope()}"'
        if error:
            value += f',error="{error}"'
        return {"WWW-Authenticate": value}


def decode_basic(value: str) -> tuple[str, str]:
    try:
        name, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("malformed Basic credentials") from None
    return name, password


def _wanted(repository: str, action: str) -> Access:
    """The scope a client should ask for; a push also needs pull (docker asks for both)."""
    actions = {"pull", "push"} if action == "push" else {action}
    return Access("repository", repository, frozenset(actions))


def _authorize(
    auth: Authenticator, request: Request, repository: str | None, action: str, login: str | None
) -> Principal:
    if auth.is_open():
        return Principal(ANONYMOUS, open_registry=True)
    principal = auth.identify(request, login)
    verdict = auth.gate.decide(principal, repository, action)
    if verdict is Verdict.ALLOW:
        return principal
    wanted = None if repository is None else _wanted(repository, action)
    if verdict is Verdict.WIDER_TOKEN:
        raise Unauthorized(
            "token does not cover this request", headers=auth.challenge(request, wanted, "insufficient_scope")
        )
    if verdict is Verdict.LOG_IN:
        # With an anonymous token in hand, only credentials would help: say so (RFC 6750's
        # insufficient_scope, as Distribution's token auth answers), or dockerd reads the bare
        # UNAUTHORIZED as transient and retries a push for ~50 s before it gives up.
        error = "insufficient_scope" if principal.claims is not None else None
        raise Unauthorized(headers=auth.challenge(request, wanted, error))
    raise Denied(f"{principal.name} may not {action} {repository}")


async def require(request: Request, repository: str | None, action: str) -> Principal:
    """Authorize `action` on `repository` (None: the registry itself), or raise 401/403."""
    principal = await _require(request, repository, action)
    request.scope["berth.user"] = principal.name
    return principal


async def _require(request: Request, repository: str | None, action: str) -> Principal:
    auth: Authenticator = request.app.state.auth
    if auth.known_open():
        return Principal(ANONYMOUS, open_registry=True)
    header = request.headers.get("authorization", "")
    if repository is not None and header[:7].lower() == "bearer ":
        claims = auth.authority.cached(header[7:].strip())
        if claims is not None and claims.allows(repository, action):
            return Principal(claims.subject or ANONYMOUS, claims=claims)
    login = None
    if header[:6].lower() == "basic " and not await call(request, auth.is_open):
        login, password = decode_basic(header[6:])
        await auth.login(request, login, password)
    return await call(request, _authorize, auth, request, repository, action, login)


def can_pull(request: Request, principal: Principal) -> Callable[[str], bool]:
    """A predicate for mounts, links of a manifest's blobs, and the catalog (runs in a thread)."""
    gate = request.app.state.auth.gate
    return lambda repository: gate.can_pull(principal, repository)
