"""Named volumes start with the image's files at their mount point, as docker's do, against berth and dockerd."""

from __future__ import annotations

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
