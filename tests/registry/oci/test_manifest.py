from __future__ import annotations

import json

import pytest

from registry.oci import mediatypes as mt
from registry.oci.digest import InvalidDigest, parse_digest
from registry.oci.manifest import InvalidManifest, UnsupportedManifest, parse_manifest

D = "sha256:" + "0" * 64


def descriptor(media_type: str = mt.OCI_LAYER, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": D, "size": 1, **extra}


def test_image_manifest_blobs_skip_foreign_layers() -> None:
    body = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(mt.DOCKER_CONFIG),
        "layers": [descriptor(), descriptor(urls=["https://example.invalid/l"])],
    }
    manifest = parse_manifest(json.dumps(body).encode(), mt.DOCKER_MANIFEST)
    assert len(manifest.layers) == 2 and len(manifest.blobs) == 2
    assert manifest.effective_artifact_type == mt.DOCKER_CONFIG


def test_media_type_inferred_and_checked() -> None:
    body = json.dumps({"schemaVersion": 2, "config": descriptor(mt.OCI_CONFIG), "layers": []}).encode()
    assert parse_manifest(body, None).media_type == mt.OCI_MANIFEST
    with pytest.raises(InvalidManifest, match="does not match"):
        parse_manifest(
            json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode(), mt.OCI_MANIFEST
        )


@pytest.mark.parametrize(
    "body",
    [
        {"schemaVersion": 3, "config": descriptor(), "layers": []},
        {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "layers": []},
        {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {"digest": D}, "layers": []},
        {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": descriptor(size=-1), "layers": []},
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [descriptor(digest="sha256:zz")]},
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": {}},
        [1, 2],
    ],
)
def test_invalid(body: object) -> None:
    with pytest.raises(InvalidManifest):
        parse_manifest(json.dumps(body).encode(), None)


def test_schema1_refused() -> None:
    with pytest.raises(UnsupportedManifest):
        parse_manifest(b'{"schemaVersion": 1}', None)
    with pytest.raises(UnsupportedManifest):
        parse_manifest(b"{}", mt.DOCKER_SCHEMA1_SIGNED)


def test_digests() -> None:
    assert str(parse_digest("sha512:" + "a" * 128)).startswith("sha512:")
    for bad in ("sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "nocolon"):
        with pytest.raises(InvalidDigest):
            parse_digest(bad)
