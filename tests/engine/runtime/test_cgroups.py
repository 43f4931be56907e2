"""cgroup v1 and v2 behind one interface: which files get which values, OOM detection, discovery."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.runtime import cgroups
from engine.runtime.cgroups import CgroupV1, CgroupV2, Limits


def test_v2_writes_limits_and_enables_controllers(tmp_path: Path) -> None:
    group = CgroupV2(str(tmp_path / "berth" / "abc"))
    (tmp_path / "berth").mkdir()
    group.create(Limits(memory=64 << 20, pids=50, cpus=1.5))
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (tmp_path / "berth" / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (tmp_path / "berth/abc/memory.max").read_text() == str(64 << 20)
    assert (tmp_path / "berth/abc/pids.max").read_text() == "50"
    assert (tmp_path / "berth/abc/cpu.max").read_text() == "150000 100000"
    (tmp_path / "berth/abc/memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n")
    assert not group.oom_killed()
    (tmp_path / "berth/abc/memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert group.oom_killed()
    assert cgroups.from_json(group.to_json()).to_json() == group.to_json()
    assert group.restricts_devices is False  # a plain directory takes no BPF program


def test_v1_writes_limits_per_hierarchy(tmp_path: Path) -> None:
    paths = {c: str(tmp_path / c / "berth" / "abc") for c in ("memory", "pids", "cpu", "devices")}
    group = CgroupV1(paths)
    group.create(Limits(memory=32 << 20, pids=7, cpus=0.25))
    assert (tmp_path / "memory/berth/abc/memory.limit_in_bytes").read_text() == str(32 << 20)
    assert (tmp_path / "pids/berth/abc/pids.max").read_text() == "7"
    assert (tmp_path / "cpu/berth/abc/cpu.cfs_quota_us").read_text() == "25000"
    assert (tmp_path / "devices/berth/abc/devices.allow").read_text() == "c 10:200 rwm"  # the last rule
    (tmp_path / "memory/berth/abc/memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_killed()
    assert cgroups.from_json(group.to_json()).to_json() == group.to_json()


@pytest.mark.skipif(os.geteuid() != 0, reason="creates real cgroups")
def test_real_cgroup_round_trip() -> None:
    group = cgroups.for_container("berth-test-" + os.urandom(4).hex())
    group.create(Limits(memory=16 << 20, pids=5))
    try:
        doc = group.to_json()
        where = Path(doc["paths"]["memory"]) if doc["version"] == 1 else Path(doc["path"])
        assert where.is_dir()
        assert not group.oom_killed()
    finally:
        group.destroy()
    assert not where.exists()


def _unified_mount() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return Path(fields[4])
    return None


@pytest.mark.skipif(os.geteuid() != 0 or _unified_mount() is None, reason="needs root and a cgroup2 mount")
def test_v2_device_filter_allows_null_and_denies_block_devices(tmp_path: Path) -> None:
    """The BPF program on a real cgroup2 directory (hybrid hosts have one beside v1)."""
    unified = _unified_mount()
    assert unified is not None
    group = CgroupV2(str(unified / "berth-test" / os.urandom(4).hex()))
    group.create(Limits())
    assert group.restricts_devices, "the BPF device filter could not be attached"
    loop = tmp_path / "loop0"  # a block device this host itself may open: the control
    os.mknod(loop, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    try:
        open(loop, "rb").close()
    except OSError:
        group.destroy()
        group.path.parent.rmdir()
        pytest.skip("this host cannot open loop0 itself, so a refusal would prove nothing")
    pid = os.fork()
    if pid == 0:
        try:
            group.add()
            with open("/dev/null", "wb") as f:
                f.write(b"x")
            try:
                open(loop, "rb").close()
                os._exit(1)
            except PermissionError:
                pass
            os.mknod(tmp_path / "made", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # mknod stays allowed
            os._exit(0)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    group.destroy()
    group.path.parent.rmdir()
    assert os.waitstatus_to_exitcode(status) == 0
