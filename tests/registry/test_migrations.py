"""The Alembic history produces exactly the models' schema, and downgrades cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from registry.metadata.models import Base
from registry.migrate import HEAD, alembic_config, current_revision, downgrade, upgrade
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


def test_head_is_alembic_s_head() -> None:
    """`HEAD` spares admin commands Alembic; a migration added without updating it fails here."""
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads() == [HEAD]


LOADED = """
import sys
from engine.cli import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(" ".join(sorted(sys.modules)))
"""
NOT_FOR_ADMIN = {"alembic", "mako", "starlette", "uvicorn", "jinja2", "requests", "urllib3", "boto3", "rich"}


def admin(where: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    """An admin command in a new process, as its console script would run it."""
    return subprocess.run([sys.executable, "-c", LOADED, *args, *where], capture_output=True, text=True, timeout=120)


def test_admin_command_on_a_database_at_head_loads_no_alembic(database_url: str, tmp_path: Path) -> None:
    where = ("--data-dir", str(tmp_path / "data"), "--database-url", database_url)
    upgrade(database_url)
    done = admin(where, "user", "list")
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {name.split(".")[0] for name in loaded} & NOT_FOR_ADMIN == set()
    assert {"engine.commands", "client.cli"} & loaded == set()


def test_admin_commands_create_or_upgrade_the_schema(database_url: str, tmp_path: Path) -> None:
    """A fresh database is created by replicas starting at once (the migration lock serialises
    them), an old one is upgraded, and one newer than the code is refused as before."""
    where = ("--data-dir", str(tmp_path / "data"), "--database-url", database_url)
    starts = [
        subprocess.Popen([sys.executable, "-c", LOADED, "user", "list", *where], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for process in starts:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert current_revision(database_url) == HEAD

    downgrade(database_url, "0010")
    assert admin(where, "upstream", "ls").returncode == 0
    assert current_revision(database_url) == HEAD

    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    done = admin(where, "user", "list")
    assert done.returncode != 0
    assert "Can't locate revision identified by '9999'" in done.stderr
