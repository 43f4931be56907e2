"""Root filesystem helpers: symlink-safe joins, and the copy fallback where overlayfs is unavailable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.runtime import rootfs
from engine.runtime import syscalls as sc
from engine.runtime.rootfs import Mount
from engine.runtime.securejoin import secure_join
from engine.service.images import ImageStore, ensure_layers
from engine.service.paths import Paths
from tests.engine.images import BUSYBOX, IMAGE, standard_image


def test_secure_join_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "up").symlink_to("../../..")
    (root / "abs").symlink_to("/etc")
    (root / "loop").symlink_to("loop")
    assert secure_join(str(root), "/etc/up/passwd") == f"{root}/passwd"
    assert secure_join(str(root), "/abs/shadow") == f"{root}/etc/shadow"
    assert secure_join(str(root), "../../x") == f"{root}/x"
    assert secure_join(str(root), "/missing/dir") == f"{root}/missing/dir"
    with pytest.raises(OSError):
        secure_join(str(root), "/loop/x")


@pytest.mark.skipif(os.geteuid() != 0 or BUSYBOX is None, reason="needs root (mount namespace, whiteouts)")
def test_copy_fallback_applies_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    standard_image(tmp_path)
    store = ImageStore(Paths(tmp_path))
    layers = ensure_layers(store, store.resolve(IMAGE))
    directory = tmp_path / "container"
    directory.mkdir()
    pid = os.fork()
    if pid == 0:  # a private mount namespace, so the test leaves no mount behind
        try:
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            rootfs.overlay_supported = lambda: False  # type: ignore[assignment]
            root = Path(rootfs.mount_rootfs(layers, directory))
            ok = (
                not os.path.lexists(root / "etc/deleteme")
                and (root / "etc/added").read_text() == "added\n"
                and sorted(os.listdir(root / "opaque")) == ["new"]
                and (root / "data/hello").exists()
                and os.path.samefile(root / "bin/sh", root / "bin/ls")
                and f" {root} " in Path("/proc/self/mountinfo").read_text()
            )
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not os.path.ismount(directory / "rootfs")


@pytest.mark.skipif(os.geteuid() != 0 or BUSYBOX is None, reason="needs root (mount namespace)")
def test_volumes_are_nodev_where_devices_cannot_be_restricted(tmp_path: Path) -> None:
    standard_image(tmp_path)
    store = ImageStore(Paths(tmp_path))
    layers = ensure_layers(store, store.resolve(IMAGE))
    (tmp_path / "container").mkdir()
    (tmp_path / "volume").mkdir()
    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            root = rootfs.mount_rootfs(layers, tmp_path / "container")
            volume = Mount(str(tmp_path / "volume"), "/vol", readonly=True)
            rootfs.prepare(root, [volume], {}, cwd="/", nodev_volumes=True)
            options = next(line.split()[5] for line in open("/proc/self/mountinfo") if line.split()[4] == f"{root}/vol")
            os._exit(0 if {"ro", "nodev"} <= set(options.split(",")) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
