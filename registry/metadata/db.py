"""One engine per process, SQLite tuned for concurrency (WAL, busy timeout, IMMEDIATE writes)."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

WRITE = {"berth_write": True}


def insert_for(bind: Any) -> Callable[..., Any]:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite alike)."""
    return postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # No pre-ping: it costs a round trip per checkout; a dead connection is discarded
        # when it fails, and recycling bounds how long one lives.
        return create_engine(url, pool_size=20, max_overflow=20, pool_recycle=300)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_size=32, max_overflow=32, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event below choose DEFERRED or IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    writers = WriterLock(f"{parsed.database}.write-lock" if parsed.database not in (None, "", ":memory:") else None)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A write transaction takes the write lock up front (queued on WriterLock, which
        # wakes waiters at once, unlike SQLite's busy handler that sleeps up to 100 ms).
        # Reads run in autocommit: each statement sees one consistent snapshot, and a
        # read skips the BEGIN/ROLLBACK round trips on the hot path.
        if conn.get_execution_options().get("berth_write"):
            writers.acquire()
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writers.release()
                raise
            conn.info["berth_writer"] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end(conn: Any) -> None:
        if conn.info.pop("berth_writer", False):
            writers.release()

    return engine


class WriterLock:
    """Queues SQLite writers: a thread lock within the process, `flock` across processes."""

    def __init__(self, path: str | None):
        self.thread_lock = threading.Lock()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path else None

    def acquire(self) -> None:
        self.thread_lock.acquire()
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.thread_lock.release()


class Prepared:
    """A SQLAlchemy Core query compiled once and run on a pooled DBAPI connection.

    For the hottest reads (manifest and blob lookups) SQLAlchemy's per-call connection
    and result machinery costs several times the query itself; this keeps the query
    declared in Core and skips that machinery.
    """

    def __init__(self, engine: Engine, statement: Any):
        compiled = statement.compile(dialect=engine.dialect)
        self.engine = engine
        self.sql = str(compiled)
        # A lone SELECT needs no transaction: on PostgreSQL, autocommit saves the BEGIN and
        # ROLLBACK round trips (psycopg switches it on the client side).
        self.autocommit = engine.dialect.name == "postgresql" and statement.is_select
        self.order = compiled.positiontup if compiled.positional else None
        # Values written into the statement (not `bindparam`s) are bound parameters too.
        self.constants = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}

    def _arguments(self, params: dict[str, Any]) -> Any:
        params = {**self.constants, **params} if self.constants else params
        return tuple(params[name] for name in self.order) if self.order is not None else params

    def execute(self, conn: Any, **params: Any) -> Any:
        """Run inside a transaction of an SQLAlchemy Connection, skipping statement building."""
        return conn.exec_driver_sql(self.sql, self._arguments(params))

    def first(self, **params: Any) -> tuple[Any, ...] | None:
        rows = self._run(params, one=True)
        return rows[0] if rows else None

    def all(self, **params: Any) -> list[tuple[Any, ...]]:
        return self._run(params, one=False)

    def _run(self, params: dict[str, Any], one: bool) -> list[tuple[Any, ...]]:
        arguments = self._arguments(params)
        connection = self.engine.raw_connection()
        if self.autocommit:
            connection.driver_connection.autocommit = True
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self.sql, arguments)
                if one:
                    row = cursor.fetchone()
                    return [row] if row is not None else []
                return list(cursor.fetchall())
            finally:
                cursor.close()
        finally:
            if self.autocommit:
                connection.driver_connection.autocommit = False
            connection.close()
