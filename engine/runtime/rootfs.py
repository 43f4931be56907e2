"""The container's root filesystem, assembled inside its new mount namespace.

Called by the container's first process after unshare(CLONE_NEWNS): every mount made
here dies with the namespace, so nothing needs unmounting on the host afterwards.
The order follows runc's rootfs_linux.go: overlay (or a copy, where overlayfs is not
available), then /proc, /dev, /sys, volumes and the /etc files, then runc's masked and
read-only paths, then pivot_root and, for --read-only, a read-only remount of `/`.
Every mount target inside the image is resolved with `secure_join`, so a symlink in the
image cannot redirect a mount onto the host.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from engine.runtime import syscalls as sc
from engine.runtime.securejoin import secure_join

# overlayfs marks a directory that hides the layers below it with this xattr (value "y").
OPAQUE_XATTR = "trusted.overlay.opaque"

MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)
_NOEXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


@dataclass(frozen=True)
class Mount:
    """A bind of host path `source` at `target` inside the container; with `seed`, an empty `source`
    first gets the image's files at `target` (docker's copy into a new named volume)."""

    source: str
    target: str
    readonly: bool = False
    seed: bool = False


def _mountpoint(root: str, path: str, directory: bool = True) -> str:
    """The resolved path for a mount target, created (as a directory or empty file) if missing."""
    target = secure_join(root, path)
    if not os.path.lexists(target):
        if directory:
            os.makedirs(target, 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
            with open(target, "a"):
                pass
    return target


def overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def mount_rootfs(layers: list[Path], directory: Path) -> str:
    """Mount the image's layers at `directory/rootfs`: overlay if possible, else a merged copy."""
    rootfs = directory / "rootfs"
    upper, work = directory / "upper", directory / "work"
    for path in (rootfs, upper, work):
        path.mkdir(exist_ok=True)
    if layers and overlay_supported():
        # Relative lowerdirs keep the option string short: the kernel caps it at one page.
        base = layers[0].parent
        if all(layer.parent == base for layer in layers):
            os.chdir(base)
            lower = ":".join(layer.name for layer in reversed(layers))
        else:
            lower = ":".join(str(layer) for layer in reversed(layers))
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        try:
            sc.mount("overlay", str(rootfs), "overlay", 0, options)
            return str(rootfs)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENODEV, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
    if not any(rootfs.iterdir()):
        for layer in layers:
            merge_layer(layer, rootfs)
    sc.mount(str(rootfs), str(rootfs), None, sc.MS_BIND | sc.MS_REC)
    return str(rootfs)


def merge_layer(layer: Path, target: Path) -> None:
    """Copy one unpacked layer over `target`, honouring its overlay whiteouts (the fallback path).

    Hardlinks within the layer stay hardlinks (busybox's applets would otherwise become
    hundreds of copies of one binary).
    """
    import shutil

    copied: dict[tuple[int, int], Path] = {}
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = os.path.relpath(dirpath, layer)
        dest_dir = target / rel
        try:
            opaque = os.getxattr(dirpath, OPAQUE_XATTR, follow_symlinks=False) == b"y"
        except OSError:
            opaque = False
        if opaque and dest_dir.is_dir() and not dest_dir.is_symlink():
            shutil.rmtree(dest_dir)
        if not dest_dir.is_dir() or dest_dir.is_symlink():
            if os.path.lexists(dest_dir):
                os.unlink(dest_dir)
            dest_dir.mkdir()
        shutil.copystat(dirpath, dest_dir, follow_symlinks=False)
        st = os.lstat(dirpath)
        os.chown(dest_dir, st.st_uid, st.st_gid)
        for name in list(dirnames) + filenames:
            source, dest = os.path.join(dirpath, name), dest_dir / name
            st = os.lstat(source)
            if stat.S_ISDIR(st.st_mode):
                continue
            if os.path.lexists(dest):
                shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else os.unlink(dest)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                continue
            if (st.st_dev, st.st_ino) in copied:
                os.link(copied[(st.st_dev, st.st_ino)], dest)
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(source), dest)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(source, dest, follow_symlinks=False)
                if st.st_nlink > 1:
                    copied[(st.st_dev, st.st_ino)] = dest
            else:
                os.mknod(dest, st.st_mode, st.st_rdev)
            os.chown(dest, st.st_uid, st.st_gid, follow_symlinks=False)


def _seed(rootfs: str, mount: Mount) -> None:
    """An empty volume gets what the image has at its mount point, with that directory's owner and
    mode, as docker does at every start (a volume with anything in it is left alone). The image's
    side is resolved inside the root and copied without following its symlinks."""
    image_side = secure_join(rootfs, mount.target)
    if os.listdir(mount.source) or not os.path.isdir(image_side):
        return
    merge_layer(Path(image_side), Path(mount.source))


def _mount_dev(rootfs: str) -> None:
    dev = _mountpoint(rootfs, "/dev")
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = os.path.join(dev, name)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    sc.mount(
        "devpts",
        os.path.join(dev, "pts"),
        "devpts",
        sc.MS_NOSUID | sc.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    sc.mount("shm", os.path.join(dev, "shm"), "tmpfs", _NOEXEC, "mode=1777,size=65536k")
    os.mkdir(os.path.join(dev, "mqueue"), 0o755)
    sc.mount("mqueue", os.path.join(dev, "mqueue"), "mqueue", _NOEXEC)


def _bind(source: str, target: str, readonly: bool, flags: int = 0) -> None:
    """A recursive bind mount; `flags` (and read-only) need a second, remounting call."""
    sc.mount(source, target, None, sc.MS_BIND | sc.MS_REC)
    if readonly or flags:
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | (sc.MS_RDONLY if readonly else 0) | flags)


def _mask_and_protect(rootfs: str) -> None:
    # The image's own `dev` may be a symlink: joined naively, this would be a host file.
    devnull = secure_join(rootfs, "/dev/null")
    for path in MASKED_PATHS:
        target = secure_join(rootfs, path)
        if os.path.isdir(target):
            sc.mount("tmpfs", target, "tmpfs", sc.MS_RDONLY)
        elif os.path.exists(target):
            sc.mount(devnull, target, None, sc.MS_BIND)
    for path in READONLY_PATHS:
        target = secure_join(rootfs, path)
        if os.path.exists(target):
            _bind(target, target, readonly=True, flags=_NOEXEC)


def prepare(
    rootfs: str,
    mounts: list[Mount],
    etc_files: dict[str, str],
    *,
    cwd: str,
    nodev_volumes: bool = False,
) -> None:
    """Mount the kernel filesystems, volumes and /etc files under `rootfs` (before pivot_root).

    `nodev_volumes` is for hosts whose cgroup cannot restrict devices (v2 without an eBPF
    filter): device nodes inside bind-mounted host directories then cannot be opened.
    """
    sc.mount("proc", _mountpoint(rootfs, "/proc"), "proc", _NOEXEC)
    _mount_dev(rootfs)
    sc.mount("sysfs", _mountpoint(rootfs, "/sys"), "sysfs", _NOEXEC | sc.MS_RDONLY)
    for mount in mounts:
        if mount.seed:
            _seed(rootfs, mount)
        is_dir = os.path.isdir(mount.source)
        target = _mountpoint(rootfs, mount.target, directory=is_dir)
        _bind(mount.source, target, mount.readonly, sc.MS_NODEV if nodev_volumes else 0)
    if os.path.isdir(secure_join(rootfs, "/etc")):
        for name, source in etc_files.items():
            _bind(source, _mountpoint(rootfs, f"/etc/{name}", directory=False), readonly=False)
    _mountpoint(rootfs, cwd)
    _mask_and_protect(rootfs)


def pivot(rootfs: str, read_only: bool) -> None:
    """Make `rootfs` the root, detaching the old one (runc's pivot_root(".", ".") trick)."""
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    if read_only:
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def enter_root(pid_root: int, layers: list[Path], directory: Path, mounts: list[Mount]) -> None:
    """Make the container's filesystem this single-threaded process's root, for work on its files (`docker cp`).

    `pid_root`, when not -1, is an open /proc/PID/root of a running container: its own overlay,
    volumes and binds. Otherwise the overlay of a stopped one is mounted in a private mount namespace
    with its volumes and binds, as at start. Then chroot: every path, `..` and symlink (even one the
    container swaps meanwhile) resolves inside the container's root, never on the host.
    """
    if pid_root < 0:
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        root = mount_rootfs(layers, directory)
        for mount in mounts:
            is_dir = os.path.isdir(mount.source)
            _bind(mount.source, _mountpoint(root, mount.target, directory=is_dir), mount.readonly)
        pid_root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    os.fchdir(pid_root)
    os.chroot(".")
    os.chdir("/")
    os.close(pid_root)
