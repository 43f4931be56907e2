"""Short-lived JWTs as in Distribution's token spec, signed with an ES256 key the server keeps."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.auth.access import Access

ALGORITHM = "ES256"
ACCESS_SECONDS = 300
REFRESH_SECONDS = 30 * 24 * 3600
LEEWAY = 30


class InvalidToken(ValueError):
    """A token that is forged, expired, for another service, or otherwise unusable."""


def generate_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    access: tuple[Access, ...]
    expires: float
    refresh: bool
    # A refresh token's digest of the account's password hash when it was issued: a changed
    # password (or an account removed and made again) no longer matches.
    fingerprint: str = ""

    def allows(self, repository: str, action: str) -> bool:
        return any(a.type == "repository" and a.name == repository and action in a.actions for a in self.access)


class TokenAuthority:
    """Issues and verifies tokens; verified access tokens are remembered until they expire."""

    def __init__(self, private_pem: str, service: str, issuer: str):
        private_key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ALGORITHM} needs an EC private key, not a {type(private_key).__name__}")
        self.private_key = private_key
        self.public_key = self.private_key.public_key()
        der = self.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(der).hexdigest()[:32]
        self.service = service
        self.issuer = issuer
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        self._lock = Lock()

    def issue(
        self, subject: str, access: list[Access], refresh: bool = False, fingerprint: str = ""
    ) -> tuple[str, int]:
        now = int(time.time())
        lifetime = REFRESH_SECONDS if refresh else ACCESS_SECONDS
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "access": [] if refresh else [a.to_claim() for a in access],
        }
        if refresh:
            claims["typ"] = "refresh"
            claims["pwd"] = fingerprint
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid}), lifetime

    def cached(self, token: str) -> Claims | None:
        """Claims of an access token verified before and not yet expired (no crypto, no lock)."""
        claims = self._verified.get(token)
        return claims if claims is not None and claims.expires > time.time() else None

    def verify(self, token: str, refresh: bool = False) -> Claims:
        cached = None if refresh else self.cached(token)
        if cached is not None:
            return cached
        try:
            payload = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        if (payload.get("typ") == "refresh") != refresh:
            raise InvalidToken("wrong kind of token")
        access = tuple(
            Access(str(item.get("type")), str(item.get("name")), frozenset(item.get("actions") or ()))
            for item in payload.get("access") or ()
            if isinstance(item, dict)
        )
        claims = Claims(str(payload["sub"]), access, float(payload["exp"]), refresh, str(payload.get("pwd") or ""))
        if not refresh:
            with self._lock:
                self._verified[token] = claims
                while len(self._verified) > 4096:
                    self._verified.popitem(last=False)
        return claims
