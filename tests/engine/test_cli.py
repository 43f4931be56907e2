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


def at_start(env: dict[str, str]) -> set[str]:
    """What the interpreter imports before any of ours (a development install's .pth hooks bring tempfile)."""
    done, modules = imported(["-c", "pass"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    return modules


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


def test_every_registry_admin_command_is_hot() -> None:
    """An admin command left out would still run, but only after the engine's and the client's
    command modules were imported for nothing."""
    from engine.cli import REGISTRY_ADMIN
    from registry.cli import COMMANDS

    assert sorted(REGISTRY_ADMIN) == sorted(c.name for c in COMMANDS if c.name != "serve")


@pytest.mark.parametrize("command", [["--help"], ["run", "--help"], ["pull", "--help"], ["serve", "--help"]])
def test_the_root_still_finds_every_package_s_commands(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "engine", *command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Usage: berth" in done.stdout, done.stderr


FAST_CASES = [
    [IMAGE],
    [IMAGE, "sh", "-c", "echo --rm -d"],
    ["--rm", "--network", "none", IMAGE, "true"],
    ["--rm", "--net=host", "-it", IMAGE, "sh"],
    ["-dq", "--name", "--rm", IMAGE],
    ["-eA=1", "-e", "B", "--env=C=3", "-v/a:/b:ro", "--volume", "/c:/d", IMAGE, "-e", "X"],
    ["-p", "8080:80", "--publish=1:2/udp", "-P", "--dns", "9.9.9.9", "--add-host", "h:1.2.3.4", IMAGE],
    ["--network-alias", "a", "--network-alias=b", "--ip", "10.0.0.2", "--security-opt", "seccomp=unconfined", IMAGE],
    ["-w", "/tmp", "-u", "1000:1000", "--hostname=", "--entrypoint", "", "-m", "64m", "--read-only", "--init", IMAGE],
    ["--name", "a", "--name", "b", "--rm", "--rm", IMAGE, "--", "x"],
    ["-ti", "-u0", "-dit", IMAGE, "-"],
    ["--name", "ünïcødé\x00\n", IMAGE, "\x1b[31m"],
    ["-", "x"],
]
CLICK_CASES = [
    [],
    ["--rm"],
    ["--help"],
    ["-h", IMAGE],
    ["-ih", IMAGE],
    ["--nope", IMAGE],
    ["--rm=1", IMAGE],
    ["--", IMAGE],
    ["--name"],
    ["-e"],
    ["-ie"],
    ["--env-file", "/nonexistent", IMAGE],
    ["--cpus", "0.5", IMAGE],
    ["--pids-limit=5", IMAGE],
    ["--rm", "--network"],
    ["-x", IMAGE],
    ["--ne", "none", IMAGE],
]


@pytest.mark.parametrize("args", FAST_CASES)
def test_the_fast_run_parser_gives_click_s_parameters(args: list[str]) -> None:
    from engine.commands import run
    from engine.fast import parse_run

    ctx = run.make_context("run", list(args))
    assert parse_run(args) == ctx.params


@pytest.mark.parametrize("args", CLICK_CASES)
def test_the_fast_run_parser_leaves_help_errors_and_typed_options_to_click(args: list[str]) -> None:
    from engine.fast import parse_run

    assert parse_run(args) is None


@pytest.mark.parametrize(
    ("module", "grammar", "left_to_click"),
    [
        ("engine.commands", "RUN", {"env_file", "pids_limit", "cpus"}),
        ("engine.build_command", "BUILD", {"dockerfile"}),
        ("client.cli", "PULL", {"ca_cert", "jobs"}),
        ("client.cli", "PUSH", {"ca_cert", "jobs"}),
    ],
)
def test_the_fast_parser_knows_every_option(module: str, grammar: str, left_to_click: set[str]) -> None:
    """An option added to a click command must be added to fast.py too (or be left to click)."""
    import importlib

    import click

    from engine import fast

    command = getattr(importlib.import_module(module), grammar.lower())
    table = getattr(fast, grammar)
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    for param in options:
        if param.name in left_to_click:
            continue  # its default is checked by the parity tests above, which compare every parameter
        kind = table.flags if param.is_flag else table.multiple if param.multiple else table.values
        assert sorted(opt for opt, name in kind.items() if name == param.name) == sorted(param.opts), param.name
        if isinstance(param.type, click.Choice):
            assert table.choices[param.name] == tuple(param.type.choices), param.name
        elif not param.is_flag:
            assert param.type is click.STRING, f"{param.name}: click converts it, leave it to click"
    assert {p.name for p in options} == set(table.defaults)
    seen = [opt for kind in (table.flags, table.values, table.multiple) for opt in kind]
    assert len(seen) == len(set(seen))


BUILD_FAST_CASES = [
    ["CTX"],
    ["-q", "-t", "a/b:1", "CTX"],
    ["CTX", "-t", "a", "--tag=b", "-tc", "--no-cache", "--push"],
    ["--network", "none", "--progress=plain", "--compression", "zstd", "-o", "oci:/x", "CTX"],
    ["--build-arg", "A=1", "--build-arg=B", "--label", "k=v", "--target", "t", "--platform", "linux/amd64", "CTX"],
    ["-qt", "x", "--network=host", "CTX", "--output", "docker-archive:/y"],
]
BUILD_CLICK_CASES = [
    [],
    ["CTX", "CTX"],
    ["--help"],
    ["-f", "Dockerfile", "CTX"],
    ["--network", "nope", "CTX"],
    ["--progress", "PLAIN", "CTX"],
    ["--compression=xz", "CTX"],
    ["MISSING"],
    ["CTX", "--", "x"],
    ["-t"],
    ["--no-cache=1", "CTX"],
]


@pytest.mark.parametrize("args", BUILD_FAST_CASES)
def test_the_fast_build_parser_gives_click_s_parameters(args: list[str], tmp_path: Path) -> None:
    from engine.build_command import build
    from engine.fast import parse_build

    args = [str(tmp_path) if a == "CTX" else a for a in args]
    assert parse_build(args) == build.make_context("build", list(args)).params


@pytest.mark.parametrize("args", BUILD_CLICK_CASES)
def test_the_fast_build_parser_leaves_help_errors_and_paths_to_click(args: list[str], tmp_path: Path) -> None:
    from engine.fast import parse_build

    args = [str(tmp_path) if a == "CTX" else str(tmp_path / "missing") if a == "MISSING" else a for a in args]
    assert parse_build(args) is None


TRANSFER_FAST_CASES = [
    ("pull", ["r/a:1"]),
    ("pull", ["-q", "r/a:1", "--insecure", "--format=json", "--platform", "linux/arm64", "--all-platforms"]),
    ("pull", ["--format", "text", "-q", "r/a:1"]),
    ("push", ["r/a:1"]),
    ("push", ["oci:/x:t", "r/a:1", "--compression", "zstd", "--preserve-digests", "-q"]),
    ("push", ["--compression=none", "local:x", "--insecure", "r/a:1"]),
]
TRANSFER_CLICK_CASES = [
    ("pull", []),
    ("pull", ["a", "b"]),
    ("pull", ["-j", "2", "r/a:1"]),
    ("pull", ["--ca-cert", "/nonexistent", "r/a:1"]),
    ("pull", ["--format", "yaml", "r/a:1"]),
    ("pull", ["--compression", "gzip", "r/a:1"]),
    ("pull", ["-h"]),
    ("push", ["a", "b", "c"]),
    ("push", ["--compression", "lz4", "r/a:1"]),
    ("push", ["--jobs=9", "r/a:1"]),
]


@pytest.mark.parametrize(("name", "args"), TRANSFER_FAST_CASES)
def test_the_fast_pull_and_push_parsers_give_click_s_parameters(name: str, args: list[str]) -> None:
    from client import cli
    from engine import fast

    command = getattr(cli, name)
    assert fast.PARSERS[name](args) == command.make_context(name, list(args)).params


@pytest.mark.parametrize(("name", "args"), TRANSFER_CLICK_CASES)
def test_the_fast_pull_and_push_parsers_leave_the_rest_to_click(name: str, args: list[str]) -> None:
    from engine import fast

    assert fast.PARSERS[name](args) is None


def test_the_root_hands_exactly_the_fast_commands_to_the_fast_path() -> None:
    from engine.cli import FAST
    from engine.fast import PARSERS

    assert set(FAST) == set(PARSERS)


def test_pull_s_fast_path_fails_as_click_s(tmp_path: Path) -> None:
    env = {**os.environ, "BERTH_ROOT": str(tmp_path)}
    fast, modules = imported(["-m", "engine", "pull", "-q", "127.0.0.1:9/nothing/here:v1"], env)
    slow, _ = imported(["-m", "engine", "pull", "-q", "-j", "4", "127.0.0.1:9/nothing/here:v1"], env)
    assert fast.returncode == slow.returncode == 5
    assert "click" not in modules
    strip = [line for line in fast.stderr.splitlines() if not line.startswith("import time:")]
    assert strip == [line for line in slow.stderr.splitlines() if not line.startswith("import time:")] != []


def test_run_s_fast_path_and_click_s_path_fail_alike(berth: Berth) -> None:
    """The same failure through the fast parser and through click (an option only click parses)."""
    fast = berth("run", "--rm", "--network", "none", "127.0.0.1:5000/test/nothing-here", "true")
    slow = berth("run", "--rm", "--cpus", "1", "--network", "none", "127.0.0.1:5000/test/nothing-here", "true")
    assert fast.returncode == slow.returncode == 125
    assert fast.stderr == slow.stderr and "nothing-here" in fast.stderr
    usage = berth("run", "--rm", "--network")
    assert usage.returncode == 2 and "Option '--network' requires an argument." in usage.stderr


def test_run_imports_no_click_on_a_plain_command_line(berth: Berth) -> None:
    done, modules = imported(["-m", "engine", "run", "--rm", "--network", "none", IMAGE, "true"], berth.env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "click" not in modules and "engine.commands" not in modules


def test_build_s_fast_path_and_click_s_path_agree(berth: Berth, tmp_path: Path) -> None:
    """A cached rebuild through the fast parser imports no click and prints what click's path prints."""
    (tmp_path / "Dockerfile").write_text(f'FROM {IMAGE}\nCOPY a /a\nCMD ["cat", "/a"]\n')
    (tmp_path / "a").write_text("a\n")
    first = berth("build", "--network", "none", "-q", "-t", "fast/app:1", str(tmp_path))
    assert first.returncode == 0, first.stderr
    done, modules = imported(
        ["-m", "engine", "build", "--network", "none", "-q", "-t", "fast/app:1", str(tmp_path)], berth.env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "click" not in modules and not heavy(modules)
    slow = berth(
        "build", "-f", str(tmp_path / "Dockerfile"), "--network", "none", "-q", "-t", "fast/app:1", str(tmp_path)
    )
    assert done.stdout == slow.stdout == first.stdout and first.stdout.startswith("sha256:")
    bad = berth("build", "--network", "none", "-q", "-t", "Bad Name", str(tmp_path))
    assert bad.returncode == 125 and bad.stderr.startswith("berth: ")


STEP_ONLY = ("dataclasses", "inspect", "tempfile", "shutil", "queue", "ctypes", "engine.runtime.rootfs")
"""What a cached build never needs: dataclasses' import (inspect) and definitions, the temporary
directories of steps that run (tempfile, shutil, bz2, lzma), the layer writer's queue, and the
mount code (ctypes)."""


def test_a_cached_build_imports_only_what_it_reads(berth: Berth, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f'FROM {IMAGE}\nCOPY a /srv/a\nRUN echo one > /one\nWORKDIR /srv\nWORKDIR /made\nCMD ["cat", "/one"]\n'
    )
    (tmp_path / "a").write_text("a\n")
    command = ["build", "--network", "none", "-q", "-t", "light/app:1", str(tmp_path)]
    first = berth(*command)
    assert first.returncode == 0, first.stderr
    done, modules = imported(["-m", "engine", *command], berth.env)
    assert done.returncode == 0 and done.stdout == first.stdout, done.stderr[-2000:]
    unwanted = set(STEP_ONLY) & modules - at_start(berth.env)
    assert not unwanted, sorted(unwanted)


HOT_MODULES = (
    "engine.service.lifecycle",
    "engine.service.attachments",
    "engine.service.events",
    "engine.runtime.supervisor",
    "engine.service.builds",
    "client.front",
    "client.copy",
    "client.location",
    "client.compress",
)
FIND_GENERATED_DOCS = """
import dataclasses, importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] in ("engine", "client", "registry"):
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == name:
                if (value.__doc__ or "").startswith(value.__name__ + "("):
                    print(name, value.__name__)
"""


def test_dataclasses_of_the_hot_paths_carry_docstrings() -> None:
    """Without one, @dataclass computes inspect.signature() for __doc__: ~0.4 ms per class at every start."""
    done = subprocess.run(
        [sys.executable, "-c", FIND_GENERATED_DOCS, *HOT_MODULES], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done.stdout
