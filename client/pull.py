"""A registry repository as a copy source: manifests by tag or digest, blobs as resumable streams."""

from __future__ import annotations

from client.api import RegistryAPI
from client.errors import VerificationError
from client.image import CHUNK, BlobOrigins, BlobStream, RegistryRepo, verify_bytes
from registry.oci import mediatypes as mt
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor
from registry.oci.reference import Reference


class RegistrySource:
    def __init__(self, api: RegistryAPI, reference: Reference) -> None:
        self.api = api
        self.reference = reference
        self.name = str(reference)
        self.registry: RegistryRepo | None = RegistryRepo(api.host, reference.repository)
        self.origins: BlobOrigins | None = None

    def root(self) -> tuple[bytes, str]:
        data, media_type = self.api.get_manifest(self.reference.repository, self.reference.reference)
        if self.reference.digest:
            algorithm = self.reference.digest.split(":", 1)[0]
            if digest_bytes(data, algorithm) != self.reference.digest:
                raise VerificationError(f"{self.name}: the registry sent a manifest with another digest")
        return data, media_type

    def manifest(self, descriptor: Descriptor) -> bytes:
        accept = mt.ACCEPT_ALL if descriptor.media_type in mt.MANIFESTS else f"{descriptor.media_type}, {mt.ACCEPT_ALL}"
        data, _ = self.api.get_manifest(self.reference.repository, descriptor.digest, accept=accept)
        return verify_bytes(data, descriptor)

    def open_blob(self, descriptor: Descriptor, offset: int = 0) -> BlobStream:
        response = self.api.get_blob(self.reference.repository, descriptor.digest, offset)
        start = offset if response.status_code == 206 else 0
        return BlobStream(response.iter_content(CHUNK), start, response.close)

    def close(self) -> None:
        self.api.close()
