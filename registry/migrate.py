"""Running the Alembic history in `migrations/` against a database URL.

Every admin command checks the schema at start. The common case, a database already at the
head revision, costs one query of `alembic_version` compared with `HEAD`; Alembic (about a
third of a second of imports and loading the scripts) is imported only when there is
something to do or to report.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from registry.metadata.db import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
LOCK_KEY = 0x62657274  # "bert"
HEAD = "0012"
"""The newest revision in `migrations/versions`; tests/registry/test_migrations.py checks it
against Alembic's own head, so a new migration fails the suite until this names it."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


@contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """One migrating process at a time, so replicas starting together don't race on DDL:
    an advisory lock on PostgreSQL, a file lock beside a SQLite database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        engine.dispose()
    elif parsed.database and parsed.database != ":memory:":
        with open(f"{parsed.database}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
    else:
        yield


def at_head(engine: Engine) -> bool:
    """Whether the database's schema is `HEAD`, read without Alembic. Anything else (no
    version table yet, an older or an unknown revision, an unreachable database) is left to
    `upgrade`, which migrates, or fails as it always has."""
    try:
        with engine.connect() as conn:
            revisions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return False
    return revisions == [HEAD]


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    make_engine(url).dispose()  # creates the SQLite directory and switches on WAL
    with migration_lock(url):
        command.upgrade(alembic_config(url), revision)


def upgrade_engine(url: str) -> Engine:
    """The engine of `url` with its schema at the head revision: migrated first only when it
    is not there already (an up-to-date database is never locked: nothing moves it back)."""
    engine = make_engine(url)
    if not at_head(engine):
        upgrade(url)
    return engine


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
