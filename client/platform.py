"""Platforms (`os/arch[/variant]`) and picking one image from a multi-platform index."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from client.errors import NotFound, UsageError
from registry.oci.manifest import Descriptor, Manifest

_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i386": "386", "i686": "386"}
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


class Platform(NamedTuple):
    """An image platform, `os/architecture[/variant]`, with docker's architecture names."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, spec: dict[str, Any] | None) -> bool:
        """Whether an index entry's `platform` is this one; a missing default variant matches."""
        if not spec:
            return False
        arch = _ARCH_ALIASES.get(spec.get("architecture", ""), spec.get("architecture"))
        if spec.get("os") != self.os or arch != self.architecture:
            return False
        default = _DEFAULT_VARIANTS.get(arch or "")
        theirs = spec.get("variant") or default
        mine = self.variant or default
        return theirs == mine


def parse_platform(text: str) -> Platform:
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else None)


def host_platform() -> Platform:
    machine = os.uname().machine.lower()  # platform.machine(), without importing platform (1-2 ms)
    arch = _ARCH_ALIASES.get(machine, machine)
    return Platform("linux", arch, None)


def select(index: Manifest, wanted: Platform) -> Descriptor:
    """The index entry for `wanted`, skipping attestation manifests (platform unknown/unknown)."""
    for child in index.manifests:
        if wanted.matches(child.platform):
            return child
    available = ", ".join(
        str(Platform(c.platform.get("os", "?"), c.platform.get("architecture", "?"), c.platform.get("variant")))
        for c in index.manifests
        if c.platform and c.platform.get("os") != "unknown"
    )
    raise NotFound(f"no image for platform {wanted} in the index (it has: {available or 'none'})")
