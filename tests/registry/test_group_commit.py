"""Group commit: many threads' writes share SQLite transactions, yet each keeps its own result,
its own error and its own all-or-nothing effect."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from registry.metadata.db import WRITE, GroupCommit, make_engine


class Refused(Exception):
    pass


@pytest.fixture
def group(tmp_path: Path) -> GroupCommit:
    engine = make_engine(f"sqlite:///{tmp_path}/group.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE item (n INTEGER PRIMARY KEY, thread INTEGER NOT NULL)"))
    return GroupCommit(engine)


def rows(group: GroupCommit) -> set[int]:
    with group.engine.connect() as conn:
        return {n for (n,) in conn.execute(text("SELECT n FROM item"))}


def test_concurrent_writers_get_their_own_results_and_errors(group: GroupCommit) -> None:
    results: dict[int, object] = {}
    ran_for_another = []
    start = threading.Barrier(24)

    def writer(thread: int) -> None:
        caller = threading.get_ident()

        def work(conn: Connection) -> int:
            if threading.get_ident() != caller:
                ran_for_another.append(thread)
            for n in range(thread * 10, thread * 10 + 3):
                conn.execute(text("INSERT INTO item VALUES (:n, :t)"), {"n": n, "t": thread})
            if thread % 3 == 0:
                raise Refused(thread)  # after writing: its rows must vanish, nobody else's
            return thread * 100

        start.wait()
        for _ in range(5):
            try:
                results[thread] = group.run(work)
            except Refused as exc:
                results[thread] = exc
            except Exception as exc:  # the second round of each writer hits its own rows
                results[thread] = type(exc).__name__
                return

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for thread in range(24):
        if thread % 3 == 0:
            assert isinstance(results[thread], Refused) and results[thread].args == (thread,)
        else:
            assert results[thread] == "IntegrityError"  # rounds after the first collide with its own rows
    assert ran_for_another, "no transaction carried another thread's work"
    expected = {n for t in range(24) if t % 3 for n in range(t * 10, t * 10 + 3)}
    assert rows(group) == expected


def test_a_lone_writer_commits_and_a_failed_one_leaves_nothing(group: GroupCommit) -> None:
    assert group.run(lambda conn: conn.execute(text("INSERT INTO item VALUES (1, 0)")).rowcount) == 1

    def fails(conn: Connection) -> None:
        conn.execute(text("INSERT INTO item VALUES (2, 0)"))
        raise Refused()

    with pytest.raises(Refused):
        group.run(fails)
    assert rows(group) == {1}
    assert group.run(lambda conn: conn.execute(text("SELECT count(*) FROM item")).scalar()) == 1


def test_the_write_lock_is_held_until_commit_and_rollback_return(tmp_path: Path) -> None:
    """The next writer is let in once COMMIT (and its fsync) or ROLLBACK has returned: let in
    before, it found SQLite's own lock still held and slept in SQLite's busy handler."""
    database = tmp_path / "lock.db"
    engine = make_engine(f"sqlite:///{database}")
    probe = os.open(f"{database}.write-lock", os.O_RDWR)
    ends: list[tuple[str, bool]] = []

    def held() -> bool:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False

    def traced(sql: str) -> None:
        if sql in ("COMMIT", "ROLLBACK"):
            ends.append((sql, held()))

    @event.listens_for(engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(traced)

    try:
        with engine.connect() as conn:
            conn.execution_options(**WRITE)
            with conn.begin():
                conn.execute(text("CREATE TABLE item (n INTEGER PRIMARY KEY)"))
            with pytest.raises(Refused), conn.begin():
                conn.execute(text("INSERT INTO item VALUES (1)"))
                raise Refused()
        assert ends == [("COMMIT", True), ("ROLLBACK", True)]
        assert not held()
        assert GroupCommit(engine).run(lambda conn: conn.execute(text("SELECT count(*) FROM item")).scalar()) == 0
    finally:
        os.close(probe)
        engine.dispose()
