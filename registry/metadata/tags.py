"""Tags: listed a page at a time, deleted one by one (a manifest PUT moves them)."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select

from registry.metadata.db import Database, Prepared
from registry.metadata.models import Repository, Tag
from registry.metadata.repositories import RepositoryIndex

ALL_ROWS = 2**62
"""A LIMIT that never limits (SQLite and PostgreSQL spell 'no limit' differently)."""


class TagIndex:
    def __init__(self, db: Database, repositories: RepositoryIndex):
        self.db = db
        self.repositories = repositories
        # A page of tags: `after` is '' for the first page (every tag name sorts after it).
        self._page = Prepared(
            db.engine,
            select(Tag.name)
            .join(Repository, Repository.id == Tag.repository_id)
            .where(Repository.name == bindparam("repository"), Tag.name > bindparam("after"))
            .order_by(Tag.name)
            .limit(bindparam("n")),
        )

    def page(self, repository: str, n: int | None, last: str | None) -> list[str] | None:
        """Tag names in lexical order after `last`, or None when the repository is unknown."""
        rows = self._page.all(repository=repository, after=last or "", n=ALL_ROWS if n is None else n)
        if not rows and self.repositories.known(repository) is None:
            return None
        return [row[0] for row in rows]

    def delete(self, repository: str, tag: str) -> bool:
        repository_id = self.repositories.known(repository)
        if repository_id is None:
            return False
        with self.db.write() as conn:
            query = delete(Tag).where(Tag.repository_id == repository_id, Tag.name == tag)
            return conn.execute(query).rowcount == 1
