"""Parsing and validating manifests and indexes, byte for byte as pushed."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from registry.oci import mediatypes as mt
from registry.oci.digest import InvalidDigest, parse_digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class InvalidManifest(ValueError):
    """The manifest is malformed or inconsistent with its declared media type."""


class UnsupportedManifest(ValueError):
    """A manifest kind Berth refuses on purpose (Docker schema 1)."""


class Descriptor(NamedTuple):
    """An OCI content descriptor: what a manifest or index says of a blob or of another manifest."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        if self.urls:
            out["urls"] = list(self.urls)
        return out


class Manifest(NamedTuple):
    """What the registry needs to know about a manifest to index and serve it.

    `annotations` and `raw` come before the defaults: a NamedTuple has no default factory, and
    parse_manifest, the only maker, always has both.
    """

    media_type: str
    annotations: dict[str, str]
    raw: dict[str, Any]
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Blobs the registry must hold: config and layers, but not foreign layers."""
        found = ((self.config,) if self.config else ()) + self.layers
        return tuple(d for d in found if not d.urls)

    @property
    def effective_artifact_type(self) -> str | None:
        """The artifactType a referrers listing shows (falls back to the config's media type)."""
        if self.artifact_type:
            return self.artifact_type
        if self.config and not self.is_index:
            return self.config.media_type
        return None


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise InvalidManifest(f"{where}: descriptor must be an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{where}: mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise InvalidManifest(f"{where}: digest must be a string")
    try:
        parse_digest(digest)
    except InvalidDigest as exc:
        raise InvalidManifest(f"{where}: {exc}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{where}: size must be a non-negative integer")
    urls = value.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise InvalidManifest(f"{where}: urls must be a list of strings")
    annotations = value.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise InvalidManifest(f"{where}: annotations must be an object")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise InvalidManifest(f"{where}: platform must be an object")
    artifact_type = value.get("artifactType")
    return Descriptor(media_type, digest, size, artifact_type, annotations, platform, tuple(urls))


def _infer_media_type(doc: dict[str, Any]) -> str:
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc or "layers" in doc:
        return mt.OCI_MANIFEST
    raise InvalidManifest("cannot tell the manifest kind: no mediaType, config or manifests")


def parse_manifest(data: bytes, content_type: str | None = None) -> Manifest:
    """Validate `data` as a manifest of `content_type` (the request's Content-Type).

    The body's own `mediaType`, when present, must agree with `content_type`.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    content_type = (content_type or "").split(";")[0].strip() or None
    if content_type in mt.SCHEMA1:
        raise UnsupportedManifest("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidManifest("manifest is nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidManifest("manifest must be a JSON object")
    if doc.get("schemaVersion") == 1:
        raise UnsupportedManifest("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if doc.get("schemaVersion") != 2:
        raise InvalidManifest("schemaVersion must be 2")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest("mediaType must be a string")
    if declared and content_type and declared != content_type:
        raise InvalidManifest(f"Content-Type {content_type} does not match the manifest's mediaType {declared}")
    media_type = declared or content_type or _infer_media_type(doc)
    if media_type in mt.SCHEMA1:
        raise UnsupportedManifest("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if media_type not in mt.MANIFESTS:
        # Any other media type is accepted as an artifact if its shape is a manifest's.
        media_type_shape = _infer_media_type(doc)
    else:
        media_type_shape = mt.OCI_INDEX if media_type in mt.INDEXES else mt.OCI_MANIFEST
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise InvalidManifest("artifactType must be a string")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidManifest("annotations must be an object")
    if media_type_shape == mt.OCI_INDEX:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise InvalidManifest("an index needs a manifests list")
        if "config" in doc or "layers" in doc:
            raise InvalidManifest(f"{media_type} must not have config or layers")
        return Manifest(
            media_type,
            annotations,
            doc,
            manifests=tuple(_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children)),
            subject=subject,
            artifact_type=artifact_type,
        )
    if "manifests" in doc:
        raise InvalidManifest(f"{media_type} must not have a manifests list")
    if "config" not in doc:
        raise InvalidManifest("an image manifest needs a config descriptor")
    layers = doc.get("layers", [])
    if not isinstance(layers, list):
        raise InvalidManifest("layers must be a list")
    return Manifest(
        media_type,
        annotations,
        doc,
        config=_descriptor(doc["config"], "config"),
        layers=tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers)),
        subject=subject,
        artifact_type=artifact_type,
    )
