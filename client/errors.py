"""Client failures, each carrying the exit code the CLI ends with.

| code | meaning |
|---|---|
| 0 | success |
| 1 | any other failure (an unexpected registry error, a local I/O error) |
| 2 | usage: bad arguments, an invalid reference or transport name |
| 3 | authentication or authorization refused (401/403, bad credentials) |
| 4 | not found: manifest, blob, repository, local image or platform |
| 5 | network: connection refused, timeout, TLS failure, retries exhausted |
| 6 | verification: content does not match its digest or size |
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    exit_code = 1


class UsageError(ClientError):
    exit_code = 2


class AuthError(ClientError):
    exit_code = 3


class NotFound(ClientError):
    exit_code = 4


class NetworkError(ClientError):
    exit_code = 5


class VerificationError(ClientError):
    exit_code = 6


class RegistryError(ClientError):
    """The registry answered with an error body (`{"errors": [...]}`) or an unexpected status."""

    def __init__(self, status: int, errors: list[dict[str, Any]], url: str) -> None:
        self.status = status
        self.errors = errors
        self.url = url
        text = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".rstrip(": ") for e in errors)
        super().__init__(f"{status} from {url}" + (f": {text}" if text else ""))


class RegistryNotFound(RegistryError, NotFound):
    exit_code = 4


class RegistryDenied(RegistryError, AuthError):
    exit_code = 3
