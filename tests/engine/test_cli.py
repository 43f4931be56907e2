"""The `berth` root: the hot commands start without the heavy libraries (issue 12's start-up budget).

Each command runs as a real process under `python -X importtime`, which names every module the
process imported; none of the server's or the progress bars' libraries may be among them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import Berth
from tests.engine.images import IMAGE

HEAVY = ("requests", "urllib3", "starlette", "sqlalchemy", "rich", "prometheus_client", "alembic", "boto3")


def imported(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env, timeout=60
    )
    modules = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done, modules


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_version_imports_nothing_of_ours_but_the_root(tmp_path: Path) -> None:
    done, modules = imported(["-m", "engine", "--version"], {**os.environ, "BERTH_ROOT": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.startswith("berth, version ")
    assert "click" not in modules and not heavy(modules)
    assert {m for m in modules if m.split(".")[0] in ("engine", "client", "registry")} == {"engine", "engine.cli"}


def test_version_matches_the_installed_metadata(tmp_path: Path) -> None:
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "engine", "--version"], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"berth, version {version('berth')}"


def test_ps_and_images_stay_light(tmp_path: Path) -> None:
    env = {**os.environ, "BERTH_ROOT": str(tmp_path)}
    for command in (["ps"], ["ps", "-a"], ["images"]):
        done, modules = imported(["-m", "engine", *command], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not heavy(modules), f"berth {' '.join(command)} imported {sorted(heavy(modules))}"


def test_pull_of_a_missing_registry_stays_off_requests(tmp_path: Path) -> None:
    """The pull path speaks HTTP through the standard library, even when it fails."""
    env = {**os.environ, "BERTH_ROOT": str(tmp_path)}
    done, modules = imported(["-m", "engine", "pull", "-q", "127.0.0.1:9/nothing/here:v1"], env)
    assert done.returncode == 5, done.stderr[-2000:]
    assert not heavy(modules), sorted(heavy(modules))
    assert not {"http.client", "email.parser", "concurrent.futures"} & modules, "client/http.py keeps these off"


def test_run_start_path_stays_light(berth: Berth) -> None:
    done, modules = imported(["-m", "engine", "run", "--rm", "--network", "none", IMAGE, "true"], berth.env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not heavy(modules), sorted(heavy(modules))


def test_the_hot_commands_are_where_the_root_looks_first() -> None:
    import importlib

    from engine.cli import HOT

    for name, source in HOT.items():
        assert name in {c.name for c in importlib.import_module(source).COMMANDS}, (name, source)


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["pull", "--help"], ["serve", "--help"]])
def test_the_root_still_finds_every_package_s_commands(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "engine", *command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage: berth" in done.stdout, done.stderr
