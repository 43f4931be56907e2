"""File steps of a build (COPY, ADD, WORKDIR): done in the step's own overlay, in a child process.

The child unshares a mount namespace, mounts the overlay the runtime mounts for `berth run`
(the build's layers as lowers, a fresh upper), does the copy and exits; the mounts die with
its namespace and the upper directory is the step's change, diffed like a RUN's. Every path
inside the image goes through `secure_join`, so a symlink in the image (`/app -> /etc`) is
followed as the container would see it and never onto the host. Sources from another stage or
image are mounted read-only beside it the same way.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from engine.runtime.securejoin import secure_join

STEP_FAILED = 1


class StepError(RuntimeError):
    """A COPY/ADD/WORKDIR step failed inside its namespace (the message says why)."""


class CopySpec:
    """One COPY or ADD: sources already resolved to (root, path) pairs, a destination inside the image.

    A plain class, filled in as copy_instruction resolves the sources (nothing compares two).
    """

    def __init__(
        self, sources: list[tuple[str, str]], dest: str, dest_is_dir: bool, chown: str | None, chmod: int | None
    ) -> None:
        self.sources = sources
        """(root the path is confined to, path under that root); root "" means the stage named in `source_layers`."""
        self.dest = dest
        self.dest_is_dir = dest_is_dir
        self.chown = chown
        self.chmod = chmod
        self.extract = False
        """ADD: unpack local tar archives instead of copying them."""
        self.source_layers: list[str] = []
        """Unpacked layer directories of the --from stage or image, bottom first."""
        self.keep: list[str] | None = None
        """For the context: the relative paths .dockerignore keeps (None: everything)."""


def in_namespace(layers: list[Path], directory: Path, action: Callable[[str], None]) -> None:
    """Mount the overlay at directory/rootfs in a child's own mount namespace and run `action` there."""
    # Imported here, not above: ctypes and the mount code are for steps that run, not cached ones.
    from engine.runtime import syscalls as sc
    from engine.runtime.rootfs import mount_rootfs

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            action(mount_rootfs(layers, directory))
        except BaseException as exc:
            if isinstance(exc, (OSError, StepError, ValueError)):
                message = str(exc)
            else:
                import traceback

                message = traceback.format_exc()
            os.write(write_end, message.encode()[-8000:])
            code = STEP_FAILED
        os._exit(code)
    os.close(write_end)
    with open(read_end, "rb") as f:
        failure = f.read()
    _, status = os.waitpid(pid, 0)
    if failure or os.waitstatus_to_exitcode(status) != 0:
        raise StepError(failure.decode(errors="replace") or f"the file step exited with status {status}")


def _lookup(rootfs: str, db: str, key: str) -> list[str] | None:
    try:
        with open(secure_join(rootfs, f"/etc/{db}")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 3 and fields[0] == key:
                    return fields
    except OSError:
        return None
    return None


def resolve_chown(rootfs: str, spec: str) -> tuple[int, int]:
    """Docker's --chown: names from the image's passwd and group; a user alone means gid = uid."""
    user, _, group = spec.partition(":")

    def number(value: str, db: str) -> int:
        if value.isdigit():
            return int(value)
        entry = _lookup(rootfs, db, value)
        if entry is None or not entry[2].isdigit():
            raise StepError(f"unable to find {'user' if db == 'passwd' else 'group'} {value}: not in /etc/{db}")
        return int(entry[2])

    uid = number(user, "passwd")
    return uid, number(group, "group") if group else uid


def make_dirs(rootfs: str, path: str, owner: tuple[int, int] = (0, 0)) -> str:
    """mkdir -p inside the image (symlinks followed as the container would), new directories 0755."""
    target = secure_join(rootfs, path)
    missing = []
    probe = target
    while not os.path.lexists(probe) and probe != rootfs:
        missing.append(probe)
        probe = os.path.dirname(probe)
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chown(directory, *owner)
    if not os.path.isdir(target):
        raise StepError(f"{path} exists in the image and is not a directory")
    return target


def _place(source: str, st: os.stat_result, target: str, spec: CopySpec, owner: tuple[int, int], links: dict) -> None:
    import shutil  # a copy that runs; a cached COPY imports this module for CopySpec only

    if os.path.lexists(target) and not (stat.S_ISDIR(st.st_mode) and os.path.isdir(target)):
        shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.unlink(target)
    mode = spec.chmod if spec.chmod is not None else stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        if not os.path.isdir(target):
            os.mkdir(target, 0o700)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            os.link(links[key], target)
            return
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if st.st_nlink > 1:
            links[key] = target
    elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(target, 0o600)
    else:
        return
    os.chown(target, *owner, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, mode)
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns))
    else:
        os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_tree(root: str, top: str, target: str, spec: CopySpec, owner: tuple[int, int], links: dict) -> None:
    """Copy the directory `top` (under `root`) into `target`, keeping what .dockerignore keeps."""
    keep = set(spec.keep) if spec.keep is not None else None
    rel_top = os.path.relpath(top, root)
    times = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, top)
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if keep is not None and os.path.normpath(os.path.join(rel_top, rel)).removeprefix("./") not in keep:
                if name in dirnames:
                    dirnames.remove(name)
                continue
            st = os.lstat(path)
            _place(path, st, os.path.join(target, rel), spec, owner, links)
            if stat.S_ISDIR(st.st_mode):
                times.append((os.path.join(target, rel), st.st_mtime_ns))
    for path, mtime in reversed(times):
        os.utime(path, ns=(mtime, mtime))


def _is_archive(path: str) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def copy(rootfs: str, spec: CopySpec, source_root: str | None) -> None:
    """Do one COPY/ADD inside the mounted rootfs (see `CopySpec`)."""
    owner = resolve_chown(rootfs, spec.chown) if spec.chown else (0, 0)
    links: dict = {}
    # Directories COPY creates belong to --chown's owner too, as in docker's builder.
    if spec.dest_is_dir:
        make_dirs(rootfs, spec.dest, owner)
    else:
        make_dirs(rootfs, os.path.dirname(spec.dest) or "/", owner)
    for root, path in spec.sources:
        base = source_root if root == "" else root
        assert base is not None
        source = secure_join(base, path)
        st = os.lstat(source)
        if spec.extract and stat.S_ISREG(st.st_mode) and _is_archive(source):
            import tarfile

            dest = make_dirs(rootfs, spec.dest)
            with tarfile.open(source) as archive:
                archive.extractall(dest, filter="tar")
            continue
        if stat.S_ISDIR(st.st_mode):
            dest = make_dirs(rootfs, spec.dest, owner)
            _copy_tree(base, source, dest, spec, owner, links)
            continue
        target = secure_join(rootfs, spec.dest)
        if spec.dest_is_dir or os.path.isdir(target):
            target = os.path.join(secure_join(rootfs, spec.dest), os.path.basename(source))
        _place(source, st, target, spec, owner, links)


def mount_source(layers: list[str], directory: Path) -> str:
    """Another stage's or image's filesystem, read-only, for COPY --from."""
    from engine.runtime import syscalls as sc  # a step that runs, as in_namespace
    from engine.runtime.rootfs import overlay_supported

    target = directory / "from"
    target.mkdir(exist_ok=True)
    if not layers:
        return str(target)
    if len(layers) == 1 or not overlay_supported():
        return layers[-1] if len(layers) == 1 else _merged_copy(layers, target)
    sc.mount("overlay", str(target), "overlay", sc.MS_RDONLY, "lowerdir=" + ":".join(reversed(layers)))
    return str(target)


def _merged_copy(layers: list[str], target: Path) -> str:
    from engine.runtime.rootfs import merge_layer

    for layer in layers:
        merge_layer(Path(layer), target)
    return str(target)


def copy_step(layers: list[Path], directory: Path, spec: CopySpec) -> None:
    def action(rootfs: str) -> None:
        source_root = (
            mount_source(spec.source_layers, directory)
            if spec.source_layers or any(root == "" for root, _ in spec.sources)
            else None
        )
        copy(rootfs, spec, source_root)

    in_namespace(layers, directory, action)


def mkdir_step(layers: list[Path], directory: Path, path: str) -> None:
    def make(rootfs: str) -> None:
        make_dirs(rootfs, path)

    in_namespace(layers, directory, make)


def describe(spec: CopySpec) -> str:
    return json.dumps([spec.sources, spec.dest, spec.chown, spec.chmod, spec.extract])
