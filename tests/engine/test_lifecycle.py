"""Detached containers: run -d, ps, logs, exec, stop, kill, rm, inspect, rmi, and the supervisor's bookkeeping."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.service.events import Journal
from tests.engine.conftest import Berth, private_berth
from tests.engine.images import IMAGE, TarBuilder, standard_image, write_image

pytestmark = pytest.mark.root


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def inspect(berth: Berth, name: str) -> dict:  # type: ignore[type-arg]
    result = berth("container", "inspect", name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def test_detached_logs_stop_rm(berth: Berth) -> None:
    result = berth(
        "run",
        "-d",
        "--name",
        "pinger",
        IMAGE,
        "sh",
        "-c",
        "echo started; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done",
    )
    assert result.returncode == 0, result.stderr
    container_id = result.stdout.strip()
    assert len(container_id) == 64
    wait_for(lambda: "tick 3" in berth("logs", "pinger").stdout)
    assert berth("logs", "pinger").stdout.startswith("started\ntick 1\n")
    ps = berth("ps").stdout
    assert container_id[:12] in ps and "pinger" in ps and "Up" in ps
    state = inspect(berth, "pinger")
    assert state["State"]["Running"] is True and state["State"]["Pid"] > 0
    pid = state["State"]["Pid"]

    duplicate = berth("run", "-d", "--name", "pinger", IMAGE, "true")
    assert duplicate.returncode == 125 and "already in use" in duplicate.stderr
    refused = berth("rm", "pinger")
    assert refused.returncode == 1 and "running" in refused.stderr

    follower = berth.popen("logs", "-f", container_id[:12])
    started = time.monotonic()
    assert berth("stop", "-t", "1", "pinger").returncode == 0
    assert time.monotonic() - started < 8
    out, _ = follower.communicate(timeout=10)
    assert follower.returncode == 0 and "tick" in out
    assert not os.path.exists(f"/proc/{pid}")

    state = inspect(berth, container_id)
    assert state["State"]["Status"] == "exited"
    assert state["State"]["ExitCode"] == 137  # sh as PID 1 ignores SIGTERM: stop had to SIGKILL
    assert "pinger" not in berth("ps").stdout
    assert "pinger" in berth("ps", "-a").stdout
    assert berth("rm", "pinger").returncode == 0
    assert "pinger" not in berth("ps", "-a").stdout
    assert berth("logs", "pinger").returncode == 1


def test_stop_with_a_handler_exits_cleanly(berth: Berth) -> None:
    container_id = berth(
        "run", "-d", IMAGE, "sh", "-c", "trap 'exit 0' TERM; echo up; while true; do sleep 0.05; done"
    ).stdout.strip()
    wait_for(lambda: "up" in berth("logs", container_id).stdout)
    assert berth("stop", container_id).returncode == 0
    assert inspect(berth, container_id)["State"]["ExitCode"] == 0
    assert berth("rm", container_id).returncode == 0


def test_exec_joins_the_namespaces(berth: Berth) -> None:
    container_id = berth(
        "run",
        "-d",
        "--hostname",
        "execbox",
        "-e",
        "FROM_RUN=1",
        IMAGE,
        "sh",
        "-c",
        "echo marker > /tmp/marker; sleep 1000",
    ).stdout.strip()
    wait_for(lambda: inspect(berth, container_id)["State"]["Running"])
    wait_for(lambda: berth("exec", container_id, "cat", "/tmp/marker").stdout == "marker\n")
    result = berth(
        "exec",
        "-e",
        "EXTRA=2",
        container_id,
        "sh",
        "-c",
        "hostname; echo $FROM_RUN$EXTRA; pwd; grep -c 1000 /proc/1/cmdline; ls /sys/class/net",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["execbox", "12", "/data", "1", "eth0", "lo"]  # the default bridge network
    assert berth("exec", "-u", "app", "-w", "/tmp", container_id, "sh", "-c", "id -u; pwd").stdout.split() == [
        "1000",
        "/tmp",
    ]
    assert berth("exec", container_id, "sh", "-c", "exit 7").returncode == 7
    assert berth("exec", container_id, "cat", input="typed\n").stdout == ""
    assert berth("exec", "-i", container_id, "cat", input="typed\n").stdout == "typed\n"
    missing = berth("exec", container_id, "nope")
    assert missing.returncode == 127 and "not found" in missing.stderr
    assert berth("kill", container_id).returncode == 0
    wait_for(lambda: not inspect(berth, container_id)["State"]["Running"])
    assert inspect(berth, container_id)["State"]["ExitCode"] == 137
    stopped = berth("exec", container_id, "true")
    assert stopped.returncode == 1 and "not running" in stopped.stderr
    assert berth("rm", container_id).returncode == 0


def test_rm_force_kills_and_cleans_up(berth: Berth, berth_root: Path) -> None:
    container_id = berth("run", "-d", "--memory", "64m", IMAGE, "sleep", "1000").stdout.strip()
    state = inspect(berth, container_id)
    pid = state["State"]["Pid"]
    cgroup = json.loads((berth_root / "containers" / container_id / "state.json").read_text())["cgroup"]
    memory_dir = Path(cgroup["paths"]["memory"]) if cgroup.get("version") == 1 else Path(cgroup["path"])
    assert memory_dir.is_dir()
    assert berth("rm", "-f", container_id).returncode == 0
    assert not os.path.exists(f"/proc/{pid}")
    assert not (berth_root / "containers" / container_id).exists()
    assert not memory_dir.exists()


def test_lost_supervisor_is_detected(berth: Berth) -> None:
    container_id = berth("run", "-d", IMAGE, "sleep", "1000").stdout.strip()
    state = json.loads((berth.root / "containers" / container_id / "state.json").read_text())
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{state['pid']}"))  # PDEATHSIG takes PID 1 down with it
    info = inspect(berth, container_id)
    assert info["State"]["Status"] == "exited" and "supervisor" in info["State"]["Error"]
    inspect(berth, container_id)
    events = Journal.of_root(berth.root).cursor().read()
    assert [e.attributes.get("exitCode") for e in events if e.id == container_id and e.action == "die"] == ["255"]
    assert berth("rm", container_id).returncode == 0


def test_auto_remove_leaves_nothing(berth: Berth, berth_root: Path) -> None:
    before = set(os.listdir(berth_root / "containers"))
    assert berth("run", "--rm", IMAGE, "true").returncode == 0
    assert set(os.listdir(berth_root / "containers")) == before
    result = berth("run", "-d", "--rm", IMAGE, "true")
    wait_for(lambda: not (berth_root / "containers" / result.stdout.strip()).exists())


@pytest.fixture
def lone_berth(tmp_path: Path) -> Iterator[Berth]:
    """A store of its own: rmi prunes every unpacked layer nothing references, other tests' leftovers
    (layers of images a rebuild untagged, say) included, and this test counts what goes."""
    with private_berth(tmp_path / "root") as berth:
        standard_image(berth.root)
        yield berth


def test_rmi_refuses_used_images_then_prunes(lone_berth: Berth) -> None:
    berth, berth_root = lone_berth, lone_berth.root
    name = "127.0.0.1:5000/test/rmi-me:1"
    write_image(
        berth_root, name, [(TarBuilder().dir("bin").file("bin/marker", b"rmi").bytes(), "gzip")], {"Cmd": ["true"]}
    )
    run = berth("run", "--name", "rmi-user", name)
    assert run.returncode == 127  # "true" is not in this image: a clear error, and a stopped container
    assert "executable file not found" in run.stderr
    layers_before = {p.name for p in (berth_root / "layers" / "sha256").iterdir()}
    refused = berth("rmi", name)
    assert refused.returncode == 1 and "rmi-user" in refused.stderr
    assert berth("rm", "rmi-user").returncode == 0
    assert berth("rmi", name).returncode == 0
    assert len({p.name for p in (berth_root / "layers" / "sha256").iterdir()}) == len(layers_before) - 1
    assert berth("run", "--rm", IMAGE, "true").returncode == 0


def test_detached_start_failures_reach_the_caller(berth: Berth) -> None:
    result = berth("run", "-d", "--name", "never-started", IMAGE, "no-such-command")
    assert result.returncode == 127
    assert "executable file not found" in result.stderr
    info = inspect(berth, "never-started")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 127
    assert "executable file not found" in info["State"]["Error"]
    assert berth("rm", "never-started").returncode == 0
