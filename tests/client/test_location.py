"""Transport names, platforms and auth scopes: the small grammars the commands rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.auth import parse_challenge, scopes_for
from client.errors import UsageError
from client.location import parse_location
from client.platform import Platform, parse_platform


def test_transport_syntax() -> None:
    docker = parse_location("docker://localhost:5000/app:v1")
    assert (docker.kind, docker.reference.registry, docker.reference.tag) == ("docker", "localhost:5000", "v1")
    bare = parse_location("busybox")
    assert str(bare.reference) == "docker.io/library/busybox:latest"
    assert parse_location("busybox", "local").kind == "local"
    oci = parse_location("oci:/tmp/layout:v2")
    assert (oci.kind, oci.path, oci.name) == ("oci", Path("/tmp/layout"), "v2")
    archive = parse_location("docker-archive:/tmp/a.tar:registry.example:5000/app:v1")
    assert (archive.path, archive.name) == (Path("/tmp/a.tar"), "registry.example:5000/app:v1")
    assert parse_location("oci:dir").name is None


@pytest.mark.parametrize("bad", ["Upper/Case", "app:bad:tag:", "docker://", "oci:", "a//b", "app@sha256:short"])
def test_invalid_locations_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_location(bad)


def test_platforms() -> None:
    assert parse_platform("linux/arm64") == Platform("linux", "arm64")
    assert parse_platform("linux/x86_64") == Platform("linux", "amd64")
    assert Platform("linux", "arm64").matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert not Platform("linux", "arm", "v6").matches({"os": "linux", "architecture": "arm", "variant": "v7"})
    assert Platform("linux", "arm").matches({"os": "linux", "architecture": "arm", "variant": "v7"})
    assert not Platform("linux", "amd64").matches({"os": "unknown", "architecture": "unknown"})
    with pytest.raises(UsageError):
        parse_platform("linux")


def test_scopes_and_challenges() -> None:
    base = "http://r.example/v2"
    assert scopes_for("GET", f"{base}/a/b/manifests/v1") == ("repository:a/b:pull",)
    assert scopes_for("PUT", f"{base}/a/blobs/uploads/x") == ("repository:a:pull,push",)
    assert scopes_for("DELETE", f"{base}/a/manifests/sha256:x") == ("repository:a:delete",)
    assert scopes_for("POST", f"{base}/a/blobs/uploads/?mount=sha256:x&from=b/c") == (
        "repository:a:pull,push",
        "repository:b/c:pull",
    )
    assert scopes_for("GET", f"{base}/_catalog") == ("registry:catalog:*",)
    assert scopes_for("GET", f"{base}/") == ()
    challenge = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"')
    assert challenge and challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a:pull"}
    assert parse_challenge('Basic realm="x"').scheme == "basic"  # type: ignore[union-attr]
