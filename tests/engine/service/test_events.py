"""The event journal: concurrent appends never tear, rotation keeps it bounded and loses nothing a
reader follows, hostile lines are skipped, and docker's filter rules."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from engine.service import events
from engine.service.events import Event, Journal, wanted


def _append(directory: str, writer: int, count: int) -> None:
    journal = Journal(Path(directory))
    for n in range(count):
        journal.record("container", "create", f"{writer}-{n}", {"name": "x" * (n % 300)})


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append, args=(str(tmp_path), w, 500)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    lines = (tmp_path / "journal").read_bytes().splitlines()
    assert len(lines) == 2000
    parsed = [Event.from_line(line) for line in lines]
    assert all(e is not None for e in parsed)
    for w in range(4):  # each writer's events in its own order
        assert [e.id for e in parsed if e is not None and e.id.startswith(f"{w}-")] == [f"{w}-{n}" for n in range(500)]


def test_rotation_bounds_the_journal_and_a_follower_sees_every_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "LIMIT", 4096)
    journal = Journal(tmp_path)
    journal.record("volume", "create", "before")
    cursor = journal.cursor()
    seen = [e.id for e in cursor.read()]
    for n in range(300):
        journal.record("volume", "create", str(n))
        if n % 7 == 0:
            seen += [e.id for e in cursor.read()]
    seen += [e.id for e in cursor.read()]
    cursor.close()
    assert seen == ["before", *map(str, range(300))]
    assert sorted(os.listdir(tmp_path)) == [".rotate.lock", "journal", "journal.1"]
    assert all(os.path.getsize(tmp_path / name) <= 4096 + 200 for name in ("journal", "journal.1"))
    history = journal.cursor()
    kept = [e.id for e in history.read()]
    history.close()
    assert kept == list(map(str, range(300)))[-len(kept) :] and len(kept) > 20


def test_torn_and_hostile_lines_are_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.record("image", "pull", "a:1")
    with open(tmp_path / "journal", "ab") as f:
        f.write(b'{"type": 1}\n\xff\xfe\nnot json\n[1,2]\n{"type":"x","action":"y","id":"z","attributes":3,"time":1}\n')
    journal.record("image", "pull", "b:1")
    with open(tmp_path / "journal", "ab") as f:
        f.write(b'{"type":"image","act')  # a writer's half line: not an event until its end arrives
    cursor = journal.cursor()
    assert [e.id for e in cursor.read()] == ["a:1", "b:1"]
    with open(tmp_path / "journal", "ab") as f:
        f.write(b'ion":"pull","id":"c:1","attributes":{},"time":5}\n')
    assert [e.id for e in cursor.read()] == ["c:1"]
    cursor.close()


def test_a_missing_journal_reads_empty_and_is_created_on_first_event(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "events")
    cursor = journal.cursor()
    assert cursor.read() == []
    journal.record("network", "create", "n1", {"name": "front", "type": "bridge"})
    assert [e.action for e in cursor.read()] == ["create"]
    cursor.close()


def test_filters_follow_dockers_rules() -> None:
    started = Event("container", "start", "abc123", {"name": "web", "image": "nginx:1", "tier": "front"})
    pulled = Event("image", "pull", "nginx:1", {"name": "nginx"})
    execed = Event("container", "exec_start: sh -c true", "abc123", {"name": "web", "image": "nginx:1"})
    assert wanted(started, {"container": ["web"]}) and wanted(started, {"container": ["abc"]})
    assert not wanted(pulled, {"container": ["web"]})
    assert wanted(started, {"image": ["nginx"]}) and wanted(pulled, {"image": ["nginx"]})
    assert wanted(started, {"type": ["image", "container"], "event": ["start"]})
    assert not wanted(started, {"event": ["die"]})
    assert wanted(execed, {"event": ["exec_start"]})
    assert wanted(started, {"label": ["tier=front", "tier"]}) and not wanted(started, {"label": ["tier=front", "x"]})
    assert wanted(started, {"bogus": ["x"]})  # dockerd ignores names it does not know
    assert not wanted(started, {"daemon": ["x"]})
