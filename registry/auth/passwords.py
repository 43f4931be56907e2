"""Slow, salted password hashes (bcrypt, so htpasswd files import as they are)."""

from __future__ import annotations

import secrets

import bcrypt

ROUNDS = 11
MAX_BYTES = 72
# Checked when an account does not exist, so the answer takes as long as a real check.
_DUMMY = bcrypt.hashpw(b"berth-no-such-account", bcrypt.gensalt(ROUNDS))


class PasswordTooLong(ValueError):
    """bcrypt reads only 72 bytes; longer passwords are refused rather than truncated."""


def hash_password(password: str) -> str:
    data = password.encode()
    if len(data) > MAX_BYTES:
        raise PasswordTooLong(f"passwords are limited to {MAX_BYTES} bytes")
    if not data:
        raise ValueError("the password is empty")
    return bcrypt.hashpw(data, bcrypt.gensalt(ROUNDS)).decode()


def verify_password(password: str, hashed: str | None) -> bool:
    """`hashed=None` (no such account) still costs one bcrypt check, so timing tells nothing."""
    data = password.encode()
    if hashed is None or not data or len(data) > MAX_BYTES:
        bcrypt.checkpw(b"berth", _DUMMY)
        return False
    try:
        return bcrypt.checkpw(data, hashed.encode())
    except ValueError:
        return False


def is_bcrypt(hashed: str) -> bool:
    return hashed.startswith(("$2a$", "$2b$", "$2y$"))


def new_secret() -> str:
    """A robot token's secret: 32 random bytes, URL-safe."""
    return "berth_" + secrets.token_urlsafe(32)


def read_htpasswd(text: str) -> list[tuple[str, str]]:
    """`user:hash` lines with bcrypt hashes; other schemes are refused (they are not slow hashes)."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, hashed = line.partition(":")
        if not is_bcrypt(hashed):
            raise ValueError(f"line {number}: only bcrypt htpasswd entries can be imported (htpasswd -B)")
        entries.append((name, hashed))
    return entries
