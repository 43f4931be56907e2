"""Where an image is, in skopeo's transport syntax, and opening it as a copy source or target.

| text | meaning |
|---|---|
| `docker://REF` | a registry (REF as docker writes it) |
| `oci:DIR[:TAG]` | an OCI image layout directory; TAG is its `ref.name` annotation |
| `docker-archive:FILE[:REF]` | a `docker save` tarball |
| `local:REF` | the local store the engine runs from |

A bare REF means the registry, except where a command says it means the local store.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from client.api import RegistryAPI
from client.credentials import Credentials
from client.errors import UsageError
from client.image import ImageSource, ImageTarget
from client.layout import Layout, open_store
from client.layout_image import LayoutSource, LayoutTarget
from client.pull import RegistrySource
from client.push import CHUNK_SIZE, RegistryTarget
from registry.oci.reference import InvalidReference, Reference, parse_reference

KINDS = ("docker", "oci", "docker-archive", "local")


class Location(NamedTuple):
    """Where an image is: a registry reference, the local store, an OCI layout or a docker archive."""

    kind: str
    reference: Reference | None = None
    path: Path | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.kind in ("docker", "local"):
            return f"{self.kind}://{self.reference}" if self.kind == "docker" else f"local:{self.reference}"
        return f"{self.kind}:{self.path}" + (f":{self.name}" if self.name else "")


class Options(NamedTuple):
    """How to reach registries and how much to do at once."""

    insecure: bool = False
    ca_cert: str | None = None
    jobs: int = 4
    chunk_size: int = CHUNK_SIZE
    credentials: Credentials | None = None
    """Used instead of the docker config's (the engine API passes a client's X-Registry-Auth)."""


def reference(text: str) -> Reference:
    try:
        return parse_reference(text)
    except InvalidReference as exc:
        raise UsageError(str(exc)) from None


def parse_location(text: str, default: str = "docker") -> Location:
    if text.startswith("docker://"):
        return Location("docker", reference(text[len("docker://") :]))
    if text.startswith("local:"):
        return Location("local", reference(text[len("local:") :]))
    for kind in ("oci", "docker-archive"):
        if text.startswith(kind + ":"):
            path, _, name = text[len(kind) + 1 :].partition(":")
            if not path:
                raise UsageError(f"{text!r}: {kind}: needs a path")
            return Location(kind, path=Path(path), name=name or None)
    if default not in ("docker", "local"):
        raise UsageError(f"{text!r}: unknown transport (use one of {', '.join(KINDS)})")
    return Location(default, reference(text))


def connect(ref: Reference, options: Options) -> RegistryAPI:
    return RegistryAPI.connect(
        ref.api_host,
        insecure=options.insecure,
        ca_cert=options.ca_cert,
        pool_size=options.jobs + 4,
        credentials=options.credentials,
    )


def open_source(location: Location, options: Options) -> ImageSource:
    if location.kind == "docker":
        assert location.reference is not None
        return RegistrySource(connect(location.reference, options), location.reference)
    if location.kind == "local":
        return LayoutSource(open_store(create=False), str(location.reference), str(location))
    assert location.path is not None
    if location.kind == "oci":
        layout = Layout.open(location.path)
        name = location.name
        if name is None:
            entries = layout.entries()
            if len(entries) != 1:
                raise UsageError(f"{location.path} holds {len(entries)} images: name one as oci:DIR:TAG")
            name = entries[0].name or entries[0].descriptor.digest
        return LayoutSource(layout, name, str(location))
    from client.archive import DockerArchiveSource

    return DockerArchiveSource(location.path, location.name)


def open_target(location: Location, options: Options) -> ImageTarget:
    if location.kind == "docker":
        assert location.reference is not None
        return RegistryTarget(connect(location.reference, options), location.reference, options.chunk_size)
    if location.kind == "local":
        return LayoutTarget(open_store(create=True), str(location.reference), str(location))
    assert location.path is not None
    if location.kind == "oci":
        return LayoutTarget(Layout.open(location.path, create=True), location.name, str(location))
    from client.archive import DockerArchiveTarget

    return DockerArchiveTarget(location.path, location.name)
