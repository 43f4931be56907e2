"""Container state: the transition table, atomic saves, and reconciling state with live processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runtime.process import start_time as process_start_time
from engine.service.containers import (
    LOST_EXIT_CODE,
    Container,
    ContainerNotFound,
    ContainerStore,
    InvalidTransition,
    NameInUse,
    Spec,
    Status,
)
from engine.service.events import Journal


def spec() -> Spec:
    return Spec(image="example/image:1", image_id="sha256:" + "a" * 64, layers=[], args=["true"], env=[])


def test_transitions_follow_the_table(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    container = store.create(spec(), "one")
    assert container.status is Status.CREATED
    container.transition(Status.RUNNING, pid=os.getpid(), pid_start=process_start_time(os.getpid()))
    with pytest.raises(InvalidTransition):
        container.transition(Status.CREATED)
    container.transition(Status.STOPPED, exit_code=3)
    with pytest.raises(InvalidTransition):
        container.transition(Status.RUNNING)
    loaded = store.get("one")
    assert loaded.status is Status.STOPPED and loaded.exit_code == 3


def test_state_is_replaced_atomically_and_round_trips(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    container = store.create(spec(), None)
    container.update(error="x" * 10000)
    assert [p.name for p in container.directory.iterdir()] == ["state.json"]
    loaded = store.get(container.id[:8])
    assert loaded.spec == container.spec
    assert loaded.name == f"berth_{container.id[:8]}"


def test_names_are_unique_and_lookups_are_docker_like(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    first = store.create(spec(), "web")
    with pytest.raises(NameInUse):
        store.create(spec(), "web")
    assert store.get("web").id == first.id
    assert store.get(first.id).id == first.id
    with pytest.raises(ContainerNotFound):
        store.get("nothing")


def test_running_state_is_checked_against_the_live_process(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    container = store.create(spec(), "ghost")
    child = subprocess.Popen(["sleep", "30"])
    start = process_start_time(child.pid)
    container.transition(Status.RUNNING, pid=child.pid, pid_start=start)
    assert store.get("ghost").is_running()
    # Same pid, other start time: a reused pid is not our process.
    container.update(pid_start=(start or 0) + 1)
    lost = store.get("ghost")
    assert lost.status is Status.STOPPED and lost.exit_code == LOST_EXIT_CODE and "supervisor" in lost.error
    child.kill()
    child.wait()
    assert process_start_time(child.pid) is None


def test_a_live_supervisor_keeps_the_recorded_state(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    container = store.create(spec(), "starting")
    container.update(supervisor_pid=os.getpid(), supervisor_start=process_start_time(os.getpid()))
    assert store.get("starting").status is Status.CREATED


def test_a_container_never_started_stays_created(tmp_path: Path) -> None:
    store = ContainerStore(tmp_path)
    store.create(spec(), "made")
    assert store.get("made").status is Status.CREATED
    started = store.get("made")
    started.update(supervisor_pid=2**22 + 1, supervisor_start=1)  # a start whose supervisor died
    assert store.get("made").status is Status.STOPPED


def test_zombies_count_as_gone() -> None:
    child = subprocess.Popen(["true"])
    while True:
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    assert process_start_time(child.pid) is None
    child.wait()


def test_a_lost_run_records_its_die_once(tmp_path: Path) -> None:
    """A running container whose supervisor and PID 1 are gone is read as stopped by many readers at
    once (processes, not threads: each its own claim); the journal gets its `die` once. A later run of
    the same container that is lost again records its own."""
    store = ContainerStore(tmp_path / "containers")
    container = store.create(spec(), "orphan")

    def lose(supervisor_start: int) -> None:
        container.status = Status.CREATED
        container.transition(Status.RUNNING, pid=2**22 + 1, pid_start=1, supervisor_pid=2**22 + 2)
        container.update(supervisor_start=supervisor_start)

    def dies() -> list[str]:
        events = Journal.of_root(tmp_path).cursor().read()
        return [e.attributes["exitCode"] for e in events if e.action == "die"]

    lose(1)
    readers = [subprocess.Popen([sys.executable, "-c", READ, str(tmp_path / "containers"), "orphan"]) for _ in range(8)]
    assert [reader.wait(60) for reader in readers] == [0] * 8
    assert store.get("orphan").status is Status.STOPPED
    assert dies() == [str(LOST_EXIT_CODE)]
    lose(2)
    store.get("orphan")
    store.get("orphan")
    assert dies() == [str(LOST_EXIT_CODE)] * 2


READ = """
import sys
from pathlib import Path
from engine.service.containers import ContainerStore, Status
assert ContainerStore(Path(sys.argv[1])).get(sys.argv[2]).status is Status.STOPPED
"""


def test_an_exit_recorded_while_reading_is_no_loss(tmp_path: Path) -> None:
    """A reader that read "running" just before the supervisor recorded the exit and went sees the recorded
    exit, not a loss: no exit code 255, no second `die`."""
    store = ContainerStore(tmp_path / "containers")
    container = store.create(spec(), "racing")
    container.transition(Status.RUNNING, pid=2**22 + 1, pid_start=1, supervisor_pid=2**22 + 2, supervisor_start=1)
    with open(container.state_file) as f:
        stale = json.load(f)
    container.transition(Status.STOPPED, exit_code=3, finished_at=123.0)  # the supervisor's last word
    reader = Container(**{**stale, "status": Status.RUNNING, "spec": container.spec, "directory": container.directory})
    reader.refresh()
    assert (reader.status, reader.exit_code, reader.finished_at, reader.error) == (Status.STOPPED, 3, 123.0, "")
    assert not list(container.directory.glob(".lost.*"))
    assert [e.action for e in Journal.of_root(tmp_path).cursor().read()] == ["create"]
