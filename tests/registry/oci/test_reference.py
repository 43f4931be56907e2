from __future__ import annotations

import pytest

from registry.oci.reference import InvalidReference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("user/app:1.0", "docker.io", "user/app", "1.0", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/user/app", "docker.io", "user/app", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", None),
        ("127.0.0.1:5000/team/app", "127.0.0.1:5000", "team/app", "latest", None),
        ("ghcr.io/org/app@" + DIGEST, "ghcr.io", "org/app", None, DIGEST),
        ("ghcr.io/org/app:v1@" + DIGEST, "ghcr.io", "org/app", "v1", DIGEST),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("my-registry.local/a__b/c-d.e:t_1", "my-registry.local", "a__b/c-d.e", "t_1", None),
    ],
)
def test_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize(
    "text",
    ["", "UPPER", "a//b", "app:", "app:-tag", "app@sha256:short", "app@md5:" + "a" * 32, " app", "a/b/", "-a/b"],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_familiar_and_str() -> None:
    assert parse_reference("busybox").familiar() == "busybox:latest"
    assert str(parse_reference("localhost:5000/a:1")) == "localhost:5000/a:1"
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
