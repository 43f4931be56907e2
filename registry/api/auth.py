"""`require(request, Access)`: the one call every handler makes before it acts.

Basic credentials and bearer tokens are accepted on every endpoint. While no account
exists the registry is open (the quick start); after that anonymous requests get only
what the `anonymous` principal was granted.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from threading import Lock

from starlette.requests import Request

from registry.api.base import call
from registry.auth.access import ANONYMOUS, Access, Grants
from registry.auth.passwords import verify_password
from registry.auth.tokens import Claims, InvalidToken, TokenAuthority
from registry.errors import Denied, TooManyRequests, Unauthorized
from registry.metadata.accounts import Accounts

OPEN_CHECK_SECONDS = 2.0
PASSWORD_CACHE_SECONDS = 60.0
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=1)


@dataclass
class Principal:
    """The caller: an account name or `anonymous`, with its token's claims if it sent one."""

    name: str
    claims: Claims | None = None
    grants: Grants | None = None
    open_registry: bool = False

    @property
    def anonymous(self) -> bool:
        return self.name == ANONYMOUS


@dataclass
class Authenticator:
    accounts: Accounts
    authority: TokenAuthority
    trust_proxy: bool = False
    _open_until: float = 0.0
    # (name, password hash, sha256 of hash and password) of a recent successful login -> when to check it again
    _passwords: OrderedDict[tuple[str, str, str], float] = field(default_factory=OrderedDict)
    _lock: Lock = field(default_factory=Lock)

    # -- the registry is open while it has no accounts (re-checked every few seconds)

    def known_open(self) -> bool:
        """Open, as checked within the last few seconds (no database access)."""
        return self._open_until > time.monotonic()

    def is_open(self) -> bool:
        if self.known_open():
            return True
        if self.accounts.any_account():
            return False
        self._open_until = time.monotonic() + OPEN_CHECK_SECONDS
        return True

    # -- credentials

    def check_password(self, name: str, password: str, address: str) -> bool:
        """Verify a login, throttled per account and source address.

        The account is always read, so a removed account or a changed password takes
        effect at once; only the slow bcrypt check is remembered for a minute.
        """
        failures = self.accounts.failures(name, address, FAILURE_WINDOW)
        if failures >= MAX_FAILURES:
            raise TooManyRequests("too many failed logins; try again in a minute")
        account = self.accounts.get(name)
        hashed = account.password_hash if account else None
        # A digest, not the password: nothing that could log in is kept in memory.
        key = (name, hashed or "", hashlib.sha256(f"{hashed}\0{password}".encode()).hexdigest())
        expires = self._passwords.get(key)
        ok = (expires is not None and expires > time.monotonic()) or verify_password(password, hashed)
        if ok and account and account.expires_at and account.expires_at < datetime.now(UTC):
            ok = False
        if not ok:
            self.accounts.record_failure(name, address, FAILURE_WINDOW)
            return False
        if failures:
            self.accounts.clear_failures(name, address)
        with self._lock:
            self._passwords[key] = time.monotonic() + PASSWORD_CACHE_SECONDS
            while len(self._passwords) > 1024:
                self._passwords.popitem(last=False)
        return True

    def grants(self, principal: str) -> Grants:
        return Grants((g.pattern, g.actions) for g in self.accounts.grants(principal))

    def identify(self, request: Request) -> Principal:
        """Who sent this request (raises Unauthorized for bad credentials)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            try:
                claims = self.authority.verify(value.strip())
            except InvalidToken as exc:
                raise Unauthorized(f"invalid token: {exc}", headers=self.challenge(request, None)) from None
            return Principal(claims.subject or ANONYMOUS, claims=claims)
        if scheme == "basic":
            name, password = decode_basic(value)
            if not self.check_password(name, password, client_address(request)):
                raise Unauthorized("invalid username or password", headers=self.challenge(request, None))
            return Principal(name)
        return Principal(ANONYMOUS)

    # -- the challenge docker and friends follow

    def realm(self, request: Request) -> str:
        scheme, host = request.url.scheme, request.headers.get("host", request.url.netloc)
        if self.trust_proxy:
            scheme = request.headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
            host = request.headers.get("x-forwarded-host", host).split(",")[0].strip()
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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _wanted(repository: str, action: str) -> Access:
    """The scope a client should ask for; a push also needs pull (docker asks for both)."""
    actions = {"pull", "push"} if action == "push" else {action}
    return Access("repository", repository, frozenset(actions))


def _authorize(auth: Authenticator, request: Request, repository: str | None, action: str) -> Principal:
    if auth.is_open():
        return Principal(ANONYMOUS, open_registry=True)
    principal = auth.identify(request)
    if repository is None:
        if principal.anonymous and principal.claims is None and action != "catalog":
            raise Unauthorized(headers=auth.challenge(request, None))
        return principal
    if principal.claims is not None and principal.claims.allows(repository, action):
        return principal
    principal.grants = auth.grants(principal.name)
    if principal.grants.allows(repository, action):
        if principal.claims is None:
            return principal
        # The account may do it, but this token was issued for less: ask for a better one.
        raise Unauthorized(
            "token does not cover this request",
            headers=auth.challenge(request, _wanted(repository, action), "insufficient_scope"),
        )
    if principal.anonymous:
        raise Unauthorized(headers=auth.challenge(request, _wanted(repository, action)))
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
    return await call(request, _authorize, auth, request, repository, action)


def can_pull(request: Request, principal: Principal) -> Callable[[str], bool]:
    """A predicate for mounts, links of a manifest's blobs, and the catalog (runs in a thread)."""
    auth: Authenticator = request.app.state.auth

    def check(repository: str) -> bool:
        if principal.open_registry:
            return True
        if principal.claims is not None and principal.claims.allows(repository, "pull"):
            return True
        if principal.grants is None:
            principal.grants = auth.grants(principal.name)
        return principal.grants.allows(repository, "pull")

    return check
