"""Building a container spec from an image config and `run` options, as docker merges them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.service.images import Image
from engine.service.specs import RunOptions, UsageError, build_spec, merge_env, parse_bytes, parse_signal, parse_volume


def image(**config: object) -> Image:
    digests = ["sha256:" + c * 64 for c in "123"]
    return Image("example/app:1", digests[0], digests[1], {"config": config}, [digests[2]])


def test_entrypoint_and_cmd_rules() -> None:
    img = image(Entrypoint=["/entry"], Cmd=["default"])
    assert build_spec(img, RunOptions()).args == ["/entry", "default"]
    assert build_spec(img, RunOptions(command=["mine"])).args == ["/entry", "mine"]
    assert build_spec(img, RunOptions(entrypoint="/other")).args == ["/other"]
    assert build_spec(img, RunOptions(entrypoint="", command=["sh"])).args == ["sh"]
    with pytest.raises(UsageError, match="no command"):
        build_spec(image(), RunOptions())


def test_env_user_workdir_and_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# c\nA=file\nB=file\n\n")
    monkeypatch.setenv("PASSED", "through")
    img = image(Env=["PATH=/bin", "A=image"], User="app", WorkingDir="/srv", Cmd=["sh"])
    spec = build_spec(
        img,
        RunOptions(
            env=["B=cli", "PASSED", "UNSET_ANYWHERE"], env_files=[str(env_file)], memory="64m", pids_limit=10, cpus=1.5
        ),
    )
    assert spec.env == ["PATH=/bin", "A=file", "B=cli", "PASSED=through"]
    assert (spec.user, spec.cwd) == ("app", "/srv")
    assert (spec.limits.memory, spec.limits.pids, spec.limits.cpus) == (64 << 20, 10, 1.5)
    overridden = build_spec(img, RunOptions(user="0", workdir="/tmp/../opt"))
    assert (overridden.user, overridden.cwd) == ("0", "/opt")
    with pytest.raises(UsageError):
        build_spec(img, RunOptions(workdir="relative"))
    with pytest.raises(UsageError, match="6MB"):
        build_spec(img, RunOptions(memory="1m"))


def test_parse_bytes() -> None:
    assert parse_bytes("512") == 512
    assert parse_bytes("64k") == 64 << 10
    assert parse_bytes("1.5g") == int(1.5 * (1 << 30))
    assert parse_bytes("32MB") == 32 << 20
    for bad in ("", "x", "12q", "-1m", "m"):
        with pytest.raises(UsageError):
            parse_bytes(bad)


def test_parse_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = parse_volume(f"{tmp_path}:/data:ro")
    assert (mount.source, mount.target, mount.readonly) == (str(tmp_path), "/data", True)
    created = tmp_path / "made" / "here"
    assert parse_volume(f"{created}:/x").readonly is False
    assert created.is_dir()
    monkeypatch.setenv("BERTH_ROOT", str(tmp_path / "root"))
    named = parse_volume("named:/data")
    assert named.source == str(tmp_path / "root" / "volumes" / "named" / "_data") and os.path.isdir(named.source)
    assert named.seed and not parse_volume("named:/data:ro,nocopy").seed and parse_volume("named:/d:ro").readonly
    assert not parse_volume(f"{tmp_path}:/data").seed  # bind mounts are never seeded
    bad_modes = ("named:/d:nocopy,nocopy", "named:/d:ro,rw", "named:/d:", f"{tmp_path}:/d:nocopy", "named:/d:ro:x")
    for bad in ("../up:/data", "a/b:/data", f"{tmp_path}:relative", f"{tmp_path}", f"{tmp_path}:/d:rx", *bad_modes):
        with pytest.raises(UsageError):
            parse_volume(bad)


def test_merge_env_and_signals() -> None:
    assert merge_env(["A=1", "B=2"], ["A=3"]) == ["A=3", "B=2"]
    assert parse_signal("TERM") == parse_signal("SIGTERM") == parse_signal("15") == 15
    with pytest.raises(UsageError):
        parse_signal("NOPE")
