"""`secure_join`: a path inside a root directory, with symlinks resolved as if the root were `/`.

Not in `rootfs`, which loads ctypes for its mounts: the build context and COPY resolve paths
with it too, and a cached build mounts nothing.
"""

from __future__ import annotations

import errno
import os
import stat

_MAX_LINKS = 40


def secure_join(root: str, path: str) -> str:
    """`root/path` with every symlink resolved as if `root` were `/`: never outside `root`."""
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, name)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(name)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, f"too many symlinks resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(name)
    return os.path.join(root, *resolved)
