"""The OCI Distribution error codes as exceptions: one class per code.

Services and handlers raise these; one exception handler renders them as
`{"errors": [{"code", "message", "detail"}]}` with the class's HTTP status.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class BlobUnknown(RegistryError):
    code, status, default_message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class RangeInvalid(BlobUploadInvalid):
    """A chunk that does not start where the upload ends (the spec's 416). `offset`, when
    known, is where the upload ends: the HTTP layer tells the client as a `Range` header."""

    status = 416
    default_message = "requested range not satisfiable"

    def __init__(self, message: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


class BlobUploadUnknown(RegistryError):
    code, status, default_message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, default_message = "DIGEST_INVALID", 400, "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    """400, as Docker's registry API documents and CNCF Distribution answers."""

    code, status, default_message = (
        "MANIFEST_BLOB_UNKNOWN",
        400,
        "manifest references a manifest or blob unknown to registry",
    )


class ManifestInvalid(RegistryError):
    code, status, default_message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, default_message = "SIZE_INVALID", 400, "provided length did not match content length"


class TagInvalid(RegistryError):
    code, status, default_message = "TAG_INVALID", 400, "manifest tag did not match URI"


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 415, "the operation is unsupported"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class RangeNotSatisfiable(RegistryError):
    """A blob GET whose Range lies outside the blob."""

    code, status, default_message = "BLOB_UNKNOWN", 416, "requested range not satisfiable"


class StillReferenced(RegistryError):
    """Deleting this would leave a manifest pointing at nothing."""

    code, status, default_message = "DENIED", 409, "still referenced"


class PaginationInvalid(RegistryError):
    code, status, default_message = "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"


class QuotaExceeded(RegistryError):
    """A push that would take a namespace over its storage quota."""

    code, status, default_message = "DENIED", 403, "storage quota exceeded"


class TagImmutable(RegistryError):
    """Moving or deleting a tag that a policy declares immutable."""

    code, status, default_message = "DENIED", 409, "the tag is immutable"
