"""Slow, salted password hashes (bcrypt, so htpasswd files import as they are)."""

from __future__ import annotations

import hashlib
import secrets
import time
from functools import cache

import bcrypt

ROUNDS = 11
MAX_BYTES = 72


class PasswordTooLong(ValueError):
    """bcrypt reads only 72 bytes; longer passwords are refused rather than truncated."""


def hash_password(password: str) -> str:
    data = password.encode()
    if len(data) > MAX_BYTES:
        raise PasswordTooLong(f"passwords are limited to {MAX_BYTES} bytes")
    if not data:
        raise ValueError("the password is empty")
    return bcrypt.hashpw(data, bcrypt.gensalt(ROUNDS)).decode()


def plausible(password: str) -> bool:
    """Whether `password` could be any account's (bcrypt reads at most 72 bytes; none is empty)."""
    return 0 < len(password.encode()) <= MAX_BYTES


def verify_password(password: str, hashed: str) -> bool:
    if not plausible(password):
        return False
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


@cache
def _sample_hash() -> bytes:
    return bcrypt.hashpw(b"berth-sample", bcrypt.gensalt(ROUNDS))


def time_one_check() -> float:
    """Seconds one password check takes here, measured on a throwaway hash."""
    sample = _sample_hash()
    started = time.perf_counter()
    bcrypt.checkpw(b"berth-sample-wrong", sample)
    return time.perf_counter() - started


def fingerprint(password_hash: str) -> str:
    """A digest of a stored hash that tells whether it changed and nothing about the password
    (the bcrypt salt stays secret)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


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
