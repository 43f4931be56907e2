"""The Alembic history produces exactly the models' schema, and downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from registry.metadata.models import Base
from registry.migrate import current_revision, downgrade, upgrade
from tests.conftest import new_database
from tests.registry.conftest import berth


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    return new_database(request.getfixturevalue("postgres_url"))


def test_upgrade_matches_models_and_downgrade_empties(database_url: str) -> None:
    upgrade(database_url)
    assert current_revision(database_url) is not None
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    downgrade(database_url, "base")
    assert set(inspect(create_engine(database_url)).get_table_names()) <= {"alembic_version"}
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) is not None


def test_berth_db_commands(tmp_path: Path) -> None:
    where = ("--data-dir", str(tmp_path))
    assert berth("db", "current", *where).strip() == "(empty database)"
    assert "up to date" in berth("db", "upgrade", *where)
    assert berth("db", "current", *where).strip() == current_revision(f"sqlite:///{tmp_path / 'registry.db'}")
