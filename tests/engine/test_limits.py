"""cgroup limits: the memory limit OOM-kills a hog (137, OOMKilled), the pids limit stops a fork bomb, --cpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.conftest import Berth
from tests.engine.images import IMAGE

pytestmark = pytest.mark.root


def test_memory_limit_kills_a_hog_with_137(berth: Berth) -> None:
    # The shell holds the whole 200 MB command substitution in memory; the limit is 32 MB.
    result = berth(
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        IMAGE,
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}",
        timeout=120,
    )
    assert result.returncode == 137, result.stdout + result.stderr
    assert "survived" not in result.stdout
    assert "OOMKilled" in result.stderr
    info = json.loads(berth("container", "inspect", "hog").stdout)[0]
    assert info["State"]["OOMKilled"] is True
    assert info["State"]["ExitCode"] == 137
    assert info["HostConfig"]["Memory"] == 32 << 20
    assert berth("rm", "hog").returncode == 0


def test_memory_limit_allows_what_fits(berth: Berth) -> None:
    result = berth(
        "run", "--rm", "--memory", "64m", IMAGE, "sh", "-c", "x=$(head -c 4000000 /dev/zero | tr '\\0' a); echo ${#x}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4000000"


def test_pids_limit_stops_a_fork_bomb(berth: Berth) -> None:
    # A bounded bomb: 60 background sleepers, against a limit of 20 and then of 200 processes.
    script = "for i in $(seq 60); do sleep 3 & done; ls /proc | grep -c '^[0-9]'"
    limited = berth("run", "--rm", "--pids-limit", "20", IMAGE, "sh", "-c", script, timeout=60)
    assert limited.returncode != 0
    assert "can't fork" in limited.stderr
    roomy = berth("run", "--rm", "--pids-limit", "200", IMAGE, "sh", "-c", script, timeout=60)
    assert roomy.returncode == 0, roomy.stderr
    assert int(roomy.stdout.split()[-1]) >= 61


def test_cpus_sets_the_cfs_quota(berth: Berth, berth_root: Path) -> None:
    container_id = berth("run", "-d", "--cpus", "0.5", IMAGE, "sleep", "1000").stdout.strip()
    try:
        state = json.loads((berth_root / "containers" / container_id / "state.json").read_text())
        cgroup = state["cgroup"]
        if cgroup["version"] == 1:
            cpu = Path(cgroup["paths"]["cpu"])
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
            assert str(state["pid"]) in (cpu / "cgroup.procs").read_text().split()
        else:
            assert (Path(cgroup["path"]) / "cpu.max").read_text().split() == ["50000", "100000"]
    finally:
        assert berth("rm", "-f", container_id).returncode == 0
