"""Who may do what: the rules behind every request's authorization, with no HTTP in them.

The HTTP layer (registry/api/auth.py) reads credentials from headers, asks `Gate.decide`,
and turns a verdict into a response: a challenge for a client that should log in or ask
for a wider token, 403 for an account without the grant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from registry.auth.access import ANONYMOUS, Grants
from registry.auth.tokens import Claims
from registry.metadata.accounts import Accounts

OPEN_CHECK_SECONDS = 2.0


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


class Verdict(Enum):
    ALLOW = "allow"
    LOG_IN = "log in"
    """Anonymous and not granted: the client should come back with credentials."""
    WIDER_TOKEN = "wider token"
    """The account may, but its token was issued for less: the client should ask for more."""
    DENY = "deny"


class Gate:
    def __init__(self, accounts: Accounts):
        self.accounts = accounts
        self._open_until = 0.0

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

    def grants(self, principal: str) -> Grants:
        return Grants((g.pattern, g.actions) for g in self.accounts.grants(principal))

    def decide(self, principal: Principal, repository: str | None, action: str) -> Verdict:
        """May `principal` do `action` on `repository` (None: the registry itself, as for the
        catalog)? Reads the principal's grants when its token does not settle it."""
        if repository is None:
            anonymous_only = principal.anonymous and principal.claims is None and action != "catalog"
            return Verdict.LOG_IN if anonymous_only else Verdict.ALLOW
        if principal.claims is not None and principal.claims.allows(repository, action):
            return Verdict.ALLOW
        principal.grants = self.grants(principal.name)
        if principal.grants.allows(repository, action):
            return Verdict.ALLOW if principal.claims is None else Verdict.WIDER_TOKEN
        return Verdict.LOG_IN if principal.anonymous else Verdict.DENY

    def can_pull(self, principal: Principal, repository: str) -> bool:
        """For mounts, links of a manifest's blobs and the catalog."""
        if principal.open_registry:
            return True
        if principal.claims is not None and principal.claims.allows(repository, "pull"):
            return True
        if principal.grants is None:
            principal.grants = self.grants(principal.name)
        return principal.grants.allows(repository, "pull")
