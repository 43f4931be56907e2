"""Repositories: created on first write, never deleted, listed for the catalog."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from registry.metadata.db import Database, Prepared, insert_for
from registry.metadata.models import Repository


class RepositoryIndex:
    def __init__(self, db: Database):
        self.db = db
        self._id = Prepared(db.engine, select(Repository.id).where(Repository.name == bindparam("name")))

    def known(self, name: str) -> int | None:
        """A repository's id, read before a write transaction (repositories are never
        deleted, so the id stays valid) to keep the write lock short."""
        row = self._id.first(name=name)
        return None if row is None else row[0]

    def ensure(self, conn: Connection, name: str, known: int | None = None) -> int:
        """The repository's id inside a write transaction, creating it if needed."""
        if known is not None:
            return known
        conn.execute(insert_for(conn)(Repository).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
        return conn.execute(select(Repository.id).where(Repository.name == name)).scalar_one()

    def exists(self, name: str) -> bool:
        return self.known(name) is not None

    def page(self, n: int | None, last: str | None) -> list[str]:
        """Repository names in lexical order after `last`, at most `n`."""
        query = select(Repository.name).order_by(Repository.name)
        if last:
            query = query.where(Repository.name > last)
        if n is not None:
            query = query.limit(n)
        with self.db.read() as conn:
            return list(conn.execute(query).scalars())
