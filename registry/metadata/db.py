"""One engine per process, SQLite tuned for concurrency (WAL, busy timeout, IMMEDIATE writes)."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

WRITE = {"berth_write": True}
T = TypeVar("T")


def insert_for(bind: Any) -> Callable[..., Any]:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite alike). Imported
    here: the engine has loaded its own dialect, and a SQLite admin command is spared the
    PostgreSQL one (a tenth of its start)."""
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


class DriverMissing(RuntimeError):
    """The database URL names a driver that is not installed."""


def check_driver(url: str) -> None:
    """Fail with one line, not an import traceback, when the URL's driver is missing
    (`postgresql+psycopg://` needs the `postgres` extra)."""
    parsed = make_url(url)
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        raise DriverMissing(
            f"{parsed.drivername} needs the Python module {getattr(exc, 'name', None) or parsed.get_driver_name()}, "
            "which is not installed; install it with: pip install 'berth[postgres]'"
        ) from None


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
        # FULL: a commit is on disk before it returns (NORMAL in WAL mode may lose the last
        # commits on power loss), so an acknowledged push stays pushed. Group commit spreads
        # the WAL's fsync over concurrent writers.
        cursor.execute("PRAGMA synchronous=FULL")
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
            writers.acquire(conn.connection)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                writers.release()
                raise

    # The lock is released once COMMIT (with its fsync of the log) or ROLLBACK has returned,
    # not in SQLAlchemy's commit/rollback events, which fire before them: a writer let in
    # there found SQLite's own lock still held for the fsync and slept in the busy handler
    # (1, 2, 5 ms ...) while holding the lock every other writer queued on.
    dialect = engine.dialect
    dialect.do_commit = _then_release(dialect.do_commit, writers)  # type: ignore[method-assign,assignment]
    dialect.do_rollback = _then_release(dialect.do_rollback, writers)  # type: ignore[method-assign,assignment]

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Any) -> None:
        # A connection invalidated under its transaction is not rolled back through the dialect.
        if conn.invalidated:
            writers.release_if_owner()

    return engine


def ping(engine: Engine) -> None:
    """One round trip to the database; raises when it cannot answer."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


class Database:
    """What every index shares: the engine, its group commit and the two kinds of transaction.

    Each index (blobs, uploads, manifests, tags, ...) is given this and keeps its own
    prepared statements; an index that writes in another's transaction is handed that index.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        # Reads on SQLite take microseconds: callers may run them on the event loop.
        self.inline_reads = engine.dialect.name == "sqlite"
        # Blob uploads, mounts and manifest PUTs each end in one small write: under load
        # they commit together.
        self.group = GroupCommit(engine)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn
            conn.rollback()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**WRITE)
            with conn.begin():
                yield conn


class WriterLock:
    """Queues SQLite writers: a thread lock within the process, `flock` across processes.
    It is held by one connection's write transaction (`holder`, in thread `owner`)."""

    def __init__(self, path: str | None):
        self.thread_lock = threading.Lock()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600) if path else None
        self.holder: Any = None
        self.owner: int | None = None

    def acquire(self, holder: Any) -> None:
        self.thread_lock.acquire()
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except BaseException:
                self.thread_lock.release()
                raise
        self.holder, self.owner = holder, threading.get_ident()

    def release(self) -> None:
        self.holder = self.owner = None
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.thread_lock.release()

    def release_for(self, connection: Any) -> None:
        """Release if `connection`'s transaction holds the lock (other connections end too:
        reads, and the pool's reset of a returned connection)."""
        if self.holder is not None and self.holder is connection:
            self.release()

    def release_if_owner(self) -> None:
        if self.holder is not None and self.owner == threading.get_ident():
            self.release()


def _then_release(end: Callable[[Any], None], writers: WriterLock) -> Callable[[Any], None]:
    """The dialect's COMMIT or ROLLBACK, then the write lock if that connection held it."""

    def finish(connection: Any) -> None:
        try:
            end(connection)
        finally:
            writers.release_for(connection)

    return finish


@dataclass(eq=False)
class _Work(Generic[T]):
    run: Callable[[Connection], T]
    result: T | None = None
    error: BaseException | None = None
    finished: bool = False
    leads: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


class GroupCommit:
    """Small write transactions of many threads committed together, on SQLite.

    Under load, SQLite writers queue for its one write lock, and each holds it for a
    BEGIN, a few statements and a COMMIT, stretched by the GIL and the scheduler. Here the
    first writer to arrive leads: it runs its own work and whatever others queued
    meanwhile, each in a savepoint, in one transaction, wakes them, and hands the lead to
    the next writer waiting. A writer alone runs just its own work, as before. Work
    functions only use the connection they are given; their results are returned (and
    their errors raised) in their own threads after the commit. On PostgreSQL, which
    commits concurrent transactions in groups itself, each runs in its own transaction.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.grouped = engine.dialect.name == "sqlite"
        self._mutex = threading.Lock()
        self._pending: list[_Work[Any]] = []
        self._leading = False

    def run(self, work: Callable[[Connection], T]) -> T:
        if not self.grouped:
            with self.engine.connect() as conn:
                conn.execution_options(**WRITE)
                with conn.begin():
                    return work(conn)
        item: _Work[T] = _Work(work)
        with self._mutex:
            self._pending.append(item)
            if not self._leading:
                self._leading = item.leads = True
        while not item.finished:
            if item.leads:
                self._lead()
            else:
                item.wake.wait()
                item.wake.clear()
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._mutex:
            batch, self._pending = self._pending, []
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._pending:
                    self._pending[0].leads = True
                    self._pending[0].wake.set()
                else:
                    self._leading = False
            for item in batch:
                item.finished = True
                item.wake.set()

    def _commit(self, batch: list[_Work[Any]]) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**WRITE)
                with conn.begin():
                    if len(batch) == 1:
                        batch[0].result = batch[0].run(conn)
                        return
                    for item in batch:
                        savepoint = conn.begin_nested()
                        try:
                            item.result = item.run(conn)
                        except Exception as exc:
                            savepoint.rollback()
                            item.error = exc
                        else:
                            savepoint.commit()
        except BaseException as exc:
            for item in batch:
                item.result, item.error = None, item.error or exc


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
        # Typed Optional by the pool, but always set while the connection is checked out.
        driver: Any = connection.driver_connection if self.autocommit else None
        if self.autocommit:
            driver.autocommit = True
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
                driver.autocommit = False
            connection.close()
