"""The image reference grammar, as docker writes and parses it.

`[host[:port]/]path[:tag][@digest]`: the first component is a host when it contains
a `.` or a `:`, or is `localhost`; otherwise the reference is on Docker Hub
(`docker.io`), where single-component names live under `library/`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from registry.oci.digest import InvalidDigest, parse_digest

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
)
NAME_MAX = 255

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"


class InvalidReference(ValueError):
    """A reference, repository name or tag that breaks the grammar."""


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and bool(NAME_RE.fullmatch(name))


def valid_tag(tag: str) -> bool:
    return bool(TAG_RE.fullmatch(tag))


class Reference(NamedTuple):
    """A fully qualified reference: registry host, repository path, tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host to speak the API to (Docker Hub's API lives on another name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form docker prints (`busybox:latest` for Docker Hub's library)."""
        name = str(self)
        for prefix in (f"{DOCKER_HUB}/library/", f"{DOCKER_HUB}/"):
            if name.startswith(prefix):
                return name[len(prefix) :]
        return name


def _is_host(component: str) -> bool:
    return ("." in component or ":" in component or component == "localhost") and bool(_HOST_RE.fullmatch(component))


def parse_reference(text: str, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse a reference as docker does, filling in docker.io, library/ and the tag.

    `default_tag` is used only when neither a tag nor a digest is given.
    """
    if not text or text != text.strip():
        raise InvalidReference(f"invalid reference format: {text!r}")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.rsplit("@", 1)
        try:
            parse_digest(digest)
        except InvalidDigest as exc:
            raise InvalidReference(f"invalid reference format: {exc}") from None
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not valid_tag(tag):
            raise InvalidReference(f"invalid tag {tag!r} in {text!r}")
    first, _, rest = remainder.partition("/")
    if rest and _is_host(first):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, remainder
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not valid_name(path):
        if path.lower() != path and valid_name(path.lower()):
            raise InvalidReference(f"invalid reference format: repository name must be lowercase: {text!r}")
        raise InvalidReference(f"invalid reference format: {text!r}")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, path, tag, digest)
