"""`docker cp`: a path of a container's filesystem as docker's stat and tar, and a tar extracted into it.

The work happens in a fresh process (`python -m engine.service.archives DIRECTORY OP PATH OPTIONS`)
whose root is the container's filesystem (`rootfs.enter_root`): a running container's own root,
or a stopped one's overlay mounted in a private mount namespace, its volumes included. Inside
that chroot no symlink and no `..` reaches the host, whatever the container's files say or are
swapped to meanwhile (docker's CVE-2018-15664 was a symlink swapped during a copy). Tar entries
are still held to the destination directory as docker's untar holds them: no name that climbs
out of it, hard links only to entries inside it, no device nodes.

The process answers with one JSON line on stdout (`{"stat": ...}` or `{"error", "status"}`),
followed for `get` by the tar stream; `put` reads the tar on stdin.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import tarfile
import time
from pathlib import Path
from typing import IO, Any

from engine.runtime.init import resolve_user

GO_MODE_BITS = (
    (stat.S_ISDIR, 1 << 31),
    (stat.S_ISLNK, 1 << 27),
    (stat.S_ISBLK, 1 << 26),
    (stat.S_ISFIFO, 1 << 25),
    (stat.S_ISSOCK, 1 << 24),
    (stat.S_ISCHR, (1 << 26) | (1 << 21)),
)
MAX_UPLOAD = 64 << 30


class ArchiveError(Exception):
    """A cp that cannot be done: dockerd's status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def go_mode(mode: int) -> int:
    """A stat mode as Go's os.FileMode, which docker's path stat carries (type bits high, not S_IFMT)."""
    out = mode & 0o777
    for test, bit in GO_MODE_BITS:
        if test(mode):
            out |= bit
    for flag, bit in ((stat.S_ISUID, 1 << 23), (stat.S_ISGID, 1 << 22), (stat.S_ISVTX, 1 << 20)):
        if mode & flag:
            out |= bit
    return out


def go_time(seconds: float) -> str:
    """RFC 3339 with nanoseconds, as Go marshals a time.Time in UTC."""
    whole = int(seconds)
    nanos = f"{round((seconds - whole) * 1e9):09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + (f".{nanos}" if nanos else "") + "Z"


def absolute(path: str) -> str:
    """The path as an absolute one in the container, keeping a trailing `/` or `/.` (they mean "the contents")."""
    joined = os.path.normpath("/" + path)
    joined = "/" + joined.lstrip("/")
    if path.endswith("/.") or path == ".":
        return joined.rstrip("/") + "/."
    if path.endswith("/") and joined != "/":
        return joined + "/"
    return joined


def _base(path: str) -> str:
    """Go's filepath.Base: trailing slashes dropped, "/" for the root."""
    stripped = path.rstrip("/")
    return os.path.basename(stripped) if stripped else "/"


def resolve(path: str) -> tuple[str, str]:
    """(resolved, absolute): the directory part resolved (symlinks followed, inside this root), the last
    element kept as named, as docker's ResolvePath does."""
    absolute_path = absolute(path)
    directory, base = os.path.split(absolute_path)
    resolved_directory = os.path.realpath(directory or "/")
    return os.path.join(resolved_directory, base), absolute_path


def path_stat(path: str, name: str) -> dict[str, Any]:
    resolved, absolute_path = resolve(path)
    try:
        st = os.lstat(resolved)
    except (FileNotFoundError, NotADirectoryError):
        raise ArchiveError(404, f"Could not find the file {path} in container {name}") from None
    link = os.path.realpath(absolute_path.rstrip("/") or "/") if stat.S_ISLNK(st.st_mode) else ""
    return {
        "name": _base(absolute_path),
        "size": st.st_size,
        "mode": go_mode(st.st_mode),
        "mtime": go_time(st.st_mtime),
        "linkTarget": link,
    }


def stat_header(doc: dict[str, Any]) -> str:
    """The X-Docker-Container-Path-Stat header: the stat as base64 of its JSON."""
    return base64.b64encode(json.dumps(doc).encode()).decode()


def write_tar(path: str, out: IO[bytes]) -> None:
    """The path (a directory with everything below it) as a tar whose names start with the name asked for."""
    resolved, absolute_path = resolve(path)
    resolved = os.path.normpath(resolved)
    rebase = "." if absolute_path.endswith("/.") or absolute_path == "/" else _base(absolute_path)
    # a stream (the output is a pipe); typeshed lists neither "w|" nor copybufsize, both in tarfile since 3.8
    stream = tarfile.open(  # type: ignore[call-overload]
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20, copybufsize=1 << 20
    )
    with stream as tar:
        tar.add(resolved, arcname=rebase, recursive=True)


def _member_filter(destination: str, overwrite_dir_non_dir: bool, owner: tuple[int, int] | None):  # type: ignore[no-untyped-def]
    """tarfile's extraction filter for a copy into `destination`: docker's untar rules."""

    def check(member: tarfile.TarInfo, _path: str) -> tarfile.TarInfo:
        name = os.path.normpath(member.name.lstrip("/")) if member.name.strip("/") else "."
        if name == ".." or name.startswith("../"):
            raise ArchiveError(400, f"{member.name!r} is outside of {destination!r}")
        if member.islnk():
            target = os.path.normpath(member.linkname.lstrip("/"))
            if target == ".." or target.startswith("../"):
                raise ArchiveError(400, f"invalid hardlink {member.linkname!r} -> {member.name!r}")
        if member.isdev():
            raise ArchiveError(400, f"{member.name!r}: device files are not copied into containers")
        if not overwrite_dir_non_dir:
            existing = os.path.join(destination, name)
            if os.path.lexists(existing):
                is_dir = os.path.isdir(existing) and not os.path.islink(existing)
                if is_dir != member.isdir():
                    was, now = ("directory", "non-directory") if is_dir else ("non-directory", "directory")
                    quoted = f"{json.dumps(os.path.normpath(existing))} with {now} {json.dumps(destination)}"
                    raise ArchiveError(
                        400, f"Error processing tar file(exit status 1): cannot overwrite {was} {quoted}"
                    )
        changes: dict[str, Any] = {"name": name}
        if owner is not None:
            changes.update(uid=owner[0], gid=owner[1])
        return member.replace(**changes, deep=False)

    return check


def extract(source: IO[bytes], path: str, name: str, *, overwrite: bool, owner_spec: str | None) -> None:
    """A tar stream extracted into the directory `path` (the last element followed if a symlink)."""
    absolute_path = absolute(path)
    destination = os.path.realpath(absolute_path)
    try:
        st = os.stat(destination)
    except (FileNotFoundError, NotADirectoryError):
        raise ArchiveError(404, f"Could not find the file {path} in container {name}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ArchiveError(400, "extraction point is not a directory")
    owner = None
    if owner_spec is not None:
        user = resolve_user(owner_spec)
        owner = (user.uid, user.gid)
    # big reads and copies: tarfile's defaults (10 KiB records, 16 KiB copies) made copying in 3x slower
    stream = tarfile.open(  # type: ignore[call-overload]
        fileobj=source, mode="r|*", bufsize=1 << 20, copybufsize=1 << 20
    )
    with stream as tar:
        tar.extractall(destination, numeric_owner=True, filter=_member_filter(destination, overwrite, owner))


def main(directory: str, op: str, path: str, options_text: str) -> int:
    """Run `op` (stat, get, put) on `path` inside the container at `directory`; see the module's docstring."""
    import bz2  # noqa: F401 - tarfile imports a decompressor when it meets one: not possible inside the chroot
    import lzma  # noqa: F401
    import zlib  # noqa: F401

    from engine.runtime import process
    from engine.runtime.rootfs import enter_root
    from engine.service.containers import Container
    from engine.service.paths import Paths

    options = json.loads(options_text)
    name = str(options.get("name", ""))  # as the client named the container: dockerd's messages say that
    out = sys.stdout.buffer
    try:
        container = Container.load(Path(directory))
        spec = container.spec
        pid_root = -1
        if container.is_running() and container.pid is not None:
            pid_root = os.open(f"/proc/{container.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if not process.alive(container.pid, container.pid_start):
                raise ArchiveError(409, f"container {container.id} stopped during the copy; try again")
        layers = [Paths.default().layer(digest) for digest in spec.layers]
        enter_root(pid_root, layers, container.directory, spec.mounts)
        if op == "put":
            if spec.read_only and not _in_volume(spec.mounts, os.path.realpath(absolute(path))):
                raise ArchiveError(500, "container rootfs is marked read-only")
            user = (spec.user or "0") if options.get("copy_uid_gid") else None
            extract(sys.stdin.buffer, path, name, overwrite=options.get("overwrite", False), owner_spec=user)
            out.write(b'{"done": true}\n')
            return 0
        doc = path_stat(path, name)
        out.write(json.dumps({"stat": doc}).encode() + b"\n")
        out.flush()
        if op == "get":
            write_tar(path, out)
        return 0
    except ArchiveError as exc:
        out.write(json.dumps({"error": exc.message, "status": exc.status}).encode() + b"\n")
    except (OSError, tarfile.TarError, ValueError) as exc:
        out.write(json.dumps({"error": str(exc), "status": 500}).encode() + b"\n")
    return 1


def _in_volume(mounts: list[Any], resolved: str) -> bool:
    """Whether `resolved` (a path resolved inside the container) is on a writable volume or bind."""
    return any(not m.readonly and (resolved.rstrip("/") + "/").startswith(m.target.rstrip("/") + "/") for m in mounts)


def argv(directory: Path, op: str, path: str, **options: Any) -> list[str]:
    """The command line that does `op` on `path` in the container at `directory`."""
    return [sys.executable, "-m", "engine.service.archives", str(directory), op, path, json.dumps(options)]


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
