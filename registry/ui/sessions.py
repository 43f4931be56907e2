"""Signed session cookies and CSRF tokens, verifiable by every replica.

A session is `name.expires.nonce.fingerprint.mac`: the HMAC-SHA256 key lives in the
database (the `signing_key` table, like the token-signing key), so any replica reads any
cookie and no replica keeps session state. The fingerprint is a digest of the account's
password hash: changing the password, or removing the account, ends its sessions. The
CSRF token of a form is an HMAC of the session's nonce (or, before sign-in, of the nonce
in a short-lived sign-in cookie), so a page on another site can neither read nor forge it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "berth_session"
SIGNIN_COOKIE = "berth_signin"
MAX_COOKIE = 1024


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    expires: int
    nonce: str
    fingerprint: str


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(b"berth-session\0" + password_hash.encode()).hexdigest()[:24]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


class SessionCodec:
    def __init__(self, key: bytes, lifetime_seconds: int):
        self.key = key
        self.lifetime = lifetime_seconds

    def _mac(self, purpose: str, payload: str) -> str:
        return hmac.new(self.key, f"{purpose}\0{payload}".encode(), hashlib.sha256).hexdigest()

    def issue(self, name: str, password_hash: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.lifetime)
        payload = f"{_b64(name)}.{expires}.{secrets.token_urlsafe(18)}.{fingerprint(password_hash)}"
        return f"{payload}.{self._mac('session', payload)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None when it is absent, forged, malformed or expired."""
        if not cookie or len(cookie) > MAX_COOKIE:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            encoded, expires, nonce, print_ = payload.split(".")
            session = Session(_unb64(encoded), int(expires), nonce, print_)
        except (ValueError, UnicodeDecodeError):
            return None
        if session.expires <= (now if now is not None else time.time()):
            return None
        return session

    def csrf(self, nonce: str) -> str:
        """The token forms carry for the session (or sign-in cookie) with this nonce."""
        return self._mac("csrf", nonce)

    def check_csrf(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token or len(token) > 128:
            return False
        return hmac.compare_digest(token, self.csrf(nonce))


def new_nonce() -> str:
    return secrets.token_urlsafe(18)
