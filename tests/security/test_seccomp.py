"""Issue 11.6: containers run under docker's default seccomp profile unless told otherwise.

Black-box through `berth run` and `berth exec`: /proc/self/status shows the filter mode,
`unshare -U -r` (a user namespace, the first step of many container escapes) is refused,
and ordinary busybox programs still work. `--security-opt seccomp=FILE` takes a profile in
docker's JSON format; every kind of bad FILE is refused with exit code 125, a one-line
reason, and no container left behind. The last test runs the same script under a private
dockerd and expects the same answers.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.service.seccomp_profile import default_profile
from tests.e2e.conftest import docker, e2e_dir  # noqa: F401 - fixtures for the comparison with docker
from tests.engine.conftest import Berth, private_berth
from tests.engine.images import IMAGE, busybox_base, write_image

pytestmark = pytest.mark.root

PROBE = "grep '^Seccomp:' /proc/self/status; unshare -U -r true 2>/dev/null; echo unshare=$?"
ORDINARY = (
    "set -e; mkdir -p /tmp/a/b; echo hello > /tmp/a/b/f; ln -s f /tmp/a/b/l; cat /tmp/a/b/l; "
    "chmod 600 /tmp/a/b/f; find /tmp/a -type f | sort; tar -cf /tmp/t.tar -C /tmp a; tar -tf /tmp/t.tar | wc -l; "
    "echo 3 1 2 | tr ' ' '\\n' | sort -n | tr '\\n' ' '; echo; id -u; date +%Y >/dev/null; sleep 0.01; "
    "(echo sub) & wait; ps | grep -c ps >/dev/null; rm -r /tmp/a; echo done"
)
ORDINARY_OUT = ["hello", "/tmp/a/b/f", "4", "1 2 3 ", "0", "sub", "done"]


@pytest.fixture(scope="module")
def berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Berth]:
    with private_berth(tmp_path_factory.mktemp("berth-seccomp")) as tool:
        write_image(tool.root, IMAGE, [(busybox_base().bytes(), "gzip")], {"Cmd": ["sh"]})
        yield tool


def sh(berth: Berth, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    return berth("run", "--rm", *options, IMAGE, "sh", "-c", script)


def containers(berth: Berth) -> list[str]:
    directory = berth.root / "containers"
    return sorted(n for n in os.listdir(directory) if not n.startswith(".")) if directory.is_dir() else []


def test_default_profile_filters_and_refuses_user_namespaces(berth: Berth) -> None:
    result = sh(berth, PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Seccomp:", "2", "unshare=1"]


def test_ordinary_programs_still_work(berth: Berth) -> None:
    result = sh(berth, ORDINARY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ORDINARY_OUT


def test_init_and_exec_run_under_the_filter_too(berth: Berth) -> None:
    result = sh(berth, "grep -h '^Seccomp:' /proc/1/status /proc/self/status", "--init")
    assert result.stdout.split() == ["Seccomp:", "2", "Seccomp:", "2"], result.stderr
    started = berth("run", "-d", IMAGE, "sleep", "30")
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        inside = berth("exec", container, "sh", "-c", PROBE)
        assert inside.stdout.split() == ["Seccomp:", "2", "unshare=1"], inside.stderr
    finally:
        berth("rm", "-f", container)


def test_unconfined_has_no_filter(berth: Berth) -> None:
    result = sh(berth, "grep '^Seccomp:' /proc/self/status", "--security-opt", "seccomp=unconfined")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Seccomp:", "0"]
    inspect = berth(
        "container", "inspect", berth("run", "-d", "--security-opt", "seccomp=unconfined", IMAGE, "true").stdout.strip()
    )
    assert json.loads(inspect.stdout)[0]["HostConfig"]["SecurityOpt"] == ["seccomp=unconfined"]


def test_a_profile_file_in_dockers_format(berth: Berth, tmp_path: Path) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["not_a_syscall_anywhere"], "action": "SCMP_ACT_ERRNO"},  # skipped, as docker does
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    result = sh(
        berth,
        "grep '^Seccomp:' /proc/self/status; mkdir /tmp/x || echo refused; touch /tmp/y && echo ok",
        "--security-opt",
        f"seccomp={path}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Seccomp:", "2", "refused", "ok"]
    assert "Permission denied" in result.stderr


def test_dockers_own_default_profile_loads_as_a_file(berth: Berth, tmp_path: Path) -> None:
    path = tmp_path / "default.json"
    path.write_text(json.dumps(default_profile(), indent=2))
    result = sh(berth, PROBE, "--security-opt", f"seccomp={path}")
    assert result.stdout.split() == ["Seccomp:", "2", "unshare=1"], result.stderr


def _profile(**rule: object) -> str:
    return json.dumps(
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", **rule}]}
    )


BAD_PROFILES = {
    "not json": ("{ not json", "not valid JSON"),
    "a list": ("[]", "not a JSON object"),
    "nested 100000 deep": ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    "too large": ("{" + " " * (1 << 20) + "}", "larger than"),
    "no default action": (json.dumps({"syscalls": []}), "defaultAction must be one of"),
    "unknown action": (json.dumps({"defaultAction": "SCMP_ACT_PARTY"}), "defaultAction must be one of"),
    "notify needs an agent": (json.dumps({"defaultAction": "SCMP_ACT_NOTIFY"}), "defaultAction must be one of"),
    "syscall name with a path": (_profile(names=["../../etc/passwd"]), "names must be syscall names"),
    "syscall name with a shell": (_profile(names=["read; rm -rf /"]), "names must be syscall names"),
    "syscall name 10 kB long": (_profile(names=["a" * 10_000]), "too many or too long"),
    "names not a list": (_profile(names="read"), "names must be syscall names"),
    "argument index 9": (
        _profile(args=[{"index": 9, "op": "SCMP_CMP_EQ", "value": 1}]),
        "index: expected an integer from 0 to 5",
    ),
    "negative value": (_profile(args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": -1}]), "value: expected an integer"),
    "value over 64 bits": (
        _profile(args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": 1 << 64}]),
        "value: expected an integer",
    ),
    "boolean value": (_profile(args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": True}]), "value: expected an integer"),
    "unknown operator": (_profile(args=[{"index": 0, "op": "SCMP_CMP_ROUGHLY", "value": 1}]), "op must be one of"),
    "seven arguments": (_profile(args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": 1}] * 7), "at most 6"),
    "errno out of range": (_profile(action="SCMP_ACT_ERRNO", errnoRet=99999), "errnoRet: expected an integer"),
    "bad kernel version": (_profile(includes={"minKernel": "four"}), "kernel version"),
    "unknown architecture": (
        json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}),
        "architecture",
    ),
}


@pytest.mark.parametrize("name", list(BAD_PROFILES))
def test_bad_profile_files_are_refused_and_create_nothing(berth: Berth, tmp_path: Path, name: str) -> None:
    text, reason = BAD_PROFILES[name]
    path = tmp_path / "profile.json"
    path.write_text(text)
    before = containers(berth)
    result = sh(berth, "echo ran", "--security-opt", f"seccomp={path}")
    assert result.returncode == 125, result.stdout
    assert reason in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == "" and containers(berth) == before


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("../" * 12 + "etc/shadow", "not valid JSON"),  # a traversal to a real, secret, non-JSON file
        ("/", "not a regular file"),
        ("/dev/zero", "not a regular file"),  # endless
        ("/does/not/exist.json", "No such file"),
    ],
)
def test_profile_paths_that_are_not_profiles(berth: Berth, tmp_path: Path, target: str, reason: str) -> None:
    before = containers(berth)
    result = berth("run", "--rm", "--security-opt", f"seccomp={target}", IMAGE, "true", cwd=tmp_path)
    assert result.returncode == 125 and reason in result.stderr, result.stderr
    assert "root:" not in result.stderr  # the file's contents are never echoed
    assert containers(berth) == before


def test_a_fifo_is_refused_without_waiting_for_a_writer(berth: Berth, tmp_path: Path) -> None:
    fifo = tmp_path / "profile.json"
    os.mkfifo(fifo)
    result = berth("run", "--rm", "--security-opt", f"seccomp={fifo}", IMAGE, "true", timeout=20)
    assert result.returncode == 125 and "not a regular file" in result.stderr


@pytest.mark.parametrize("option", ["apparmor=unconfined", "seccomp", "seccomp=", "label=disable"])
def test_other_security_options_are_refused(berth: Berth, option: str) -> None:
    result = sh(berth, "echo ran", "--security-opt", option)
    assert result.returncode == 125 and "--security-opt" in result.stderr


@pytest.fixture(scope="module")
def docker_image(docker, tmp_path_factory: pytest.TempPathFactory) -> str:  # noqa: F811
    tar = tmp_path_factory.mktemp("docker-image") / "busybox.tar"
    tar.write_bytes(busybox_base().bytes())
    docker("import", str(tar), "berth-seccomp/busybox:1")
    return "berth-seccomp/busybox:1"


def test_same_answers_as_docker(berth: Berth, docker, docker_image: str) -> None:  # noqa: F811
    for options in ((), ("--security-opt", "seccomp=unconfined")):
        ours = sh(berth, PROBE + "; " + ORDINARY, *options)
        theirs = docker(
            "run", "--rm", "--network", "none", *options, docker_image, "sh", "-c", PROBE + "; " + ORDINARY, check=False
        )
        assert ours.stdout.splitlines()[:2] == theirs.stdout.splitlines()[:2], (ours.stderr, theirs.stderr)
        assert ours.stdout.splitlines()[2:] == theirs.stdout.splitlines()[2:] == ORDINARY_OUT
