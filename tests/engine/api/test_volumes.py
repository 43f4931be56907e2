"""Named and anonymous volumes start with the image's files at their mount point, as docker's do, against berth and
dockerd."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.engine.api.conftest import IMAGE_NAME, Engine

pytestmark = [pytest.mark.root, pytest.mark.e2e]
NONE = ("--network", "none")


def test_a_new_volume_gets_the_image_files(engine: Engine) -> None:
    try:
        assert engine.ok("run", "--rm", *NONE, "-v", "seeded:/opaque", IMAGE_NAME, "cat", "/opaque/old") == "old\n"
        # the directory's mode comes along (/tmp is 1777 in the image)
        assert engine.ok("run", "--rm", *NONE, "-v", "sticky:/tmp", IMAGE_NAME, "stat", "-c", "%a", "/tmp") == "1777\n"
        # a volume that holds anything is left as it is, wherever it is mounted next
        engine.ok("run", "--rm", *NONE, "-v", "seeded:/opaque", IMAGE_NAME, "touch", "/opaque/new")
        listed = engine.ok("run", "--rm", *NONE, "-v", "seeded:/etc", IMAGE_NAME, "ls", "/etc")
        assert {"old", "new"} <= set(listed.split()) and "passwd" not in listed.split()
        # nocopy, in both spellings
        bare = engine.ok("run", "--rm", *NONE, "-v", "bare:/opaque:nocopy", IMAGE_NAME, "ls", "-A", "/opaque")
        assert bare == ""
        mount = "type=volume,source=bare2,target=/opaque,volume-nocopy"
        assert engine.ok("run", "--rm", *NONE, "--mount", mount, IMAGE_NAME, "ls", "-A", "/opaque") == ""
        readonly = engine.ok("run", "--rm", *NONE, "-v", "ro-seeded:/opaque:ro", IMAGE_NAME, "cat", "/opaque/old")
        assert readonly == "old\n"
    finally:
        engine.docker("volume", "rm", "seeded", "sticky", "bare", "bare2", "ro-seeded")


BAD_MODES = ["vol:/opaque:bogus", "vol:/opaque:ro,rw", "vol:/opaque:ro,ro", "/tmp:/opaque:nocopy", "vol:/x:nocopy:ro"]


@pytest.mark.parametrize("volume", BAD_MODES)
def test_bad_volume_modes_are_refused(berth_api: Engine, dockerd: Engine, volume: str) -> None:
    codes = [e.docker("run", "--rm", *NONE, "-v", volume, IMAGE_NAME, "true").returncode for e in (berth_api, dockerd)]
    for engine in (berth_api, dockerd):
        engine.docker("volume", "rm", "vol")
    assert codes[0] == codes[1] == 125


VOLUME_IMAGE = f'FROM {IMAGE_NAME}\nRUN mkdir /data && echo seeded > /data/f\nVOLUME ["/data"]\nCMD ["cat", "/data/f"]'
MOUNTS = "{{range .Mounts}}{{.Type}} {{.Destination}} {{.Driver}} {{.RW}} {{len .Name}};{{end}}"


def test_an_image_volume_gets_an_anonymous_volume(engine: Engine, tmp_path: Path) -> None:
    """dockerd gives each VOLUME of the image (and each `-v /PATH`, `--mount` without a source) a new volume,
    seeded from the image; `rm` keeps it, `rm -v` and `run --rm` remove it; a named volume there replaces it."""
    (tmp_path / "Dockerfile").write_text(VOLUME_IMAGE + "\n")
    built = engine.docker("build", "-q", "--network", "none", "-t", "with-volume:1", str(tmp_path),
                          extra_env={"DOCKER_BUILDKIT": "0"})  # fmt: skip
    assert built.returncode == 0, built.stderr
    before = set(engine.ok("volume", "ls", "-q").split())

    def new_volumes() -> set[str]:
        return set(engine.ok("volume", "ls", "-q").split()) - before

    try:
        engine.ok("create", *NONE, "--name", "anon", "with-volume:1")
        (made,) = new_volumes()
        assert re.fullmatch("[0-9a-f]{64}", made)
        assert engine.ok("inspect", "--format", MOUNTS, "anon").strip() == "volume /data local true 64;"
        doc = json.loads(engine.ok("inspect", "--format", "{{json .Mounts}}", "anon"))
        assert set(doc[0]) == {"Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation"}
        assert doc[0]["Name"] == made
        taken = engine.docker("create", *NONE, "--name", "anon", "with-volume:1")
        assert taken.returncode == 1 and new_volumes() == {made}  # a create refused makes no volume
        assert engine.docker("start", "-a", "anon").stdout == "seeded\n"
        assert engine.ok("rm", "anon").strip() == "anon"
        assert new_volumes() == {made}  # plain rm keeps it
        engine.ok("volume", "rm", made)

        engine.ok("run", "--rm", *NONE, "with-volume:1", "sh", "-c", "echo more > /data/g")
        assert new_volumes() == set()
        engine.ok("run", "--rm", *NONE, "-v", "named-data:/data", "with-volume:1")
        assert new_volumes() == {"named-data"}  # the named volume takes the path: nothing anonymous
        engine.ok("volume", "rm", "named-data")

        mount = "type=volume,target=/m"
        engine.ok("run", *NONE, "--name", "anon2", "-v", "/extra", "--mount", mount, "with-volume:1", "true")
        assert len(new_volumes()) == 3
        shown = engine.ok("inspect", "--format", MOUNTS, "anon2").strip(";\n").split(";")
        assert sorted(shown) == [f"volume {p} local true 64" for p in ("/data", "/extra", "/m")]
        assert engine.ok("rm", "-v", "anon2").strip() == "anon2"
        assert new_volumes() == set()
        if engine.name == "berth":  # the other front door, on the same engine
            run = engine.berth("run", "--network", "none", "--name", "from-berth", "with-volume:1")
            assert (run.returncode, run.stdout) == (0, "seeded\n"), run.stderr
            assert len(new_volumes()) == 1
            assert engine.berth("rm", "-v", "from-berth").returncode == 0
            assert engine.berth("run", "--rm", "--network", "none", "-v", "/x", "with-volume:1").returncode == 0
            assert new_volumes() == set()
    finally:
        engine.docker("rm", "-f", "anon", "anon2", "from-berth")
        leftover = new_volumes()
        if leftover:
            engine.docker("volume", "rm", *leftover)
        engine.docker("rmi", "with-volume:1")
