"""Who may log in: passwords checked with bounded work, throttling kept in the database, and
refresh tokens that stand for a login only while the account does.

What an unauthenticated client can make the server do is bounded:
- every password check first reserves an attempt in the database, atomically (one
  transaction counts against the account and address and against the address alone, and
  refuses past the limit), so parallel guesses get exactly the allowed number of checks,
  on any replica;
- a name no account has costs no bcrypt: the answer waits about as long as a check takes,
  on the event loop, holding no thread;
- at most a few bcrypt checks run at once per process, the rest wait their turn;
- an address is an IPv6 /64 or an IPv4 address, and its rows expire with their window and are
  pruned as new ones arrive.
A verified password is remembered (as a digest) for a minute, so Basic credentials on every
request cost one account read, not a bcrypt.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from functools import partial
from threading import Lock
from typing import ParamSpec, TypeVar

from registry.auth.access import valid_account_name
from registry.auth.passwords import fingerprint, plausible, time_one_check, verify_password
from registry.auth.tokens import Claims, TokenAuthority
from registry.errors import TooManyRequests, Unauthorized
from registry.metadata.accounts import AccountRow, Accounts

MAX_FAILURES = 5  # per account name and address, per window
MAX_ADDRESS_FAILURES = 30  # per address, over all names
WINDOW = timedelta(minutes=1)
REMEMBER_SECONDS = 60.0
ADDRESS_KEY = "*"  # never an account name
P = ParamSpec("P")
T = TypeVar("T")


def throttle_address(address: str) -> str:
    """The unit throttling counts: an IPv4 address, or the /64 an IPv6 host can pick from freely."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def expired(account: AccountRow) -> bool:
    return account.expires_at is not None and account.expires_at < datetime.now(UTC)


class Logins:
    def __init__(self, accounts: Accounts, authority: TokenAuthority, executor: Executor, checks: int = 0):
        self.accounts = accounts
        self.authority = authority
        self.executor = executor
        self.checks_at_once = checks or max(2, os.cpu_count() or 1)
        self._checks: asyncio.Semaphore | None = None
        self._check_seconds: float | None = None
        # (name, password hash, sha256 of hash and password) of a recent login -> until when
        self._remembered: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._lock = Lock()

    async def _run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(function, *args, **kwargs))

    # -- logins

    async def check(self, name: str, password: str, address: str) -> bool:
        """Whether `name` may log in with `password` now; TooManyRequests while throttled.

        The account is read every time, so removing it or changing its password takes effect at once.
        """
        where = throttle_address(address)
        account_key = (name, where) if valid_account_name(name) else None
        limits = [(ADDRESS_KEY, where, MAX_ADDRESS_FAILURES)]
        if account_key is not None:
            limits.insert(0, (name, where, MAX_FAILURES))
        account, counts = await self._run(self._state, name if account_key else None, limits)
        if any(counts.get((principal, key), 0) >= limit for principal, key, limit in limits):
            raise TooManyRequests("too many failed logins; try again in a minute")
        memo = None if account is None else _memo(name, account.password_hash, password)
        if account is not None and memo is not None and self._recent(memo):
            return not expired(account)
        now = datetime.now(UTC)
        if not await self._run(self.accounts.reserve_attempt, limits, now, now - WINDOW):
            raise TooManyRequests("too many failed logins; try again in a minute")
        if account is None or not plausible(password):
            await asyncio.sleep(await self._typical_check())
            return False
        if not await self._verify(password, account.password_hash) or expired(account):
            return False
        await self._run(self.accounts.refund_attempt, (name, where), (ADDRESS_KEY, where))
        assert memo is not None
        self._remember(memo)
        return True

    def _state(self, name: str | None, limits: list[tuple[str, str, int]]) -> tuple[AccountRow | None, dict]:
        account = self.accounts.get(name) if name is not None else None
        counts = self.accounts.failures([(principal, key) for principal, key, _ in limits], datetime.now(UTC) - WINDOW)
        return account, counts

    async def _verify(self, password: str, hashed: str) -> bool:
        if self._checks is None:
            self._checks = asyncio.Semaphore(self.checks_at_once)
        async with self._checks:
            started = time.perf_counter()
            ok = await self._run(verify_password, password, hashed)
        self._observe(time.perf_counter() - started)
        return ok

    async def _typical_check(self) -> float:
        """About as long as a real check takes here (measured once, then following real checks)."""
        if self._check_seconds is None:
            if self._checks is None:
                self._checks = asyncio.Semaphore(self.checks_at_once)
            async with self._checks:
                self._observe(await self._run(time_one_check))
        assert self._check_seconds is not None
        return self._check_seconds

    def _observe(self, seconds: float) -> None:
        previous = self._check_seconds
        self._check_seconds = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def _recent(self, memo: tuple[str, str, str]) -> bool:
        until = self._remembered.get(memo)
        return until is not None and until > time.monotonic()

    def _remember(self, memo: tuple[str, str, str]) -> None:
        with self._lock:
            self._remembered[memo] = time.monotonic() + REMEMBER_SECONDS
            while len(self._remembered) > 1024:
                self._remembered.popitem(last=False)

    # -- refresh tokens

    def refresh_token(self, name: str) -> str:
        """A refresh token for an account that just logged in, bound to its current password."""
        account = self.accounts.get(name)
        if account is None:
            raise Unauthorized("no such account")
        return self.authority.issue(name, [], refresh=True, fingerprint=fingerprint(account.password_hash))[0]

    def refreshed(self, claims: Claims) -> str:
        """The account a verified refresh token stands for, checked as a login is: it exists, has
        not expired, and its password is the one it had when the token was issued."""
        account = self.accounts.get(claims.subject)
        if account is None:
            raise Unauthorized("the account of this refresh token no longer exists")
        if expired(account):
            raise Unauthorized("the account of this refresh token has expired")
        if claims.fingerprint != fingerprint(account.password_hash):
            raise Unauthorized("the password changed since this refresh token was issued; log in again")
        return account.name


def _memo(name: str, hashed: str, password: str) -> tuple[str, str, str]:
    """A digest, not the password: nothing that could log in is kept in memory."""
    return name, hashed, hashlib.sha256(f"{hashed}\0{password}".encode()).hexdigest()
