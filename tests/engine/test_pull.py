"""`berth run` of an image that is not local: pulled from a berth registry on a loopback port, then run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client.copy import copy_image
from client.location import Location, Options, open_source, open_target
from registry.oci.reference import parse_reference
from tests.conftest import RegistryProcess
from tests.engine.conftest import Berth
from tests.engine.images import IMAGE

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def pushed(berth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test image pushed to a fresh registry; yields its reference there."""
    registry = RegistryProcess(tmp_path_factory.mktemp("registry-data"))
    try:
        reference = f"127.0.0.1:{registry.port}/engine/busybox:pulled"
        source = open_source(Location("oci", path=berth_root / "images", name=IMAGE), Options())
        target = open_target(Location("docker", parse_reference(reference)), Options())
        try:
            copy_image(source, target)
        finally:
            source.close()
            target.close()
        yield reference
    finally:
        registry.stop()


def test_run_pulls_a_missing_image(pushed: str, tmp_path: Path) -> None:
    fresh = Berth(tmp_path / "fresh-root", on_host=True)  # the registry listens on the machine's loopback
    result = fresh("run", "--rm", "-q", "--network", "none", pushed, "cat", "/data/hello", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from layer three\n"
    assert "Unable to find image" in result.stderr
    again = fresh("run", "--rm", "--network", "none", pushed, "true")
    assert again.returncode == 0 and "Unable to find" not in again.stderr
    assert len(list((tmp_path / "fresh-root" / "layers" / "sha256").iterdir())) == 3


def test_unknown_repository_is_a_clear_error(pushed: str, tmp_path: Path) -> None:
    host = pushed.split("/")[0]
    berth = Berth(tmp_path / "root", on_host=True)
    result = berth("run", "--rm", "-q", "--network", "none", f"{host}/engine/absent:1", "true", timeout=60)
    assert result.returncode == 125
    assert "absent" in result.stderr


def test_a_transferring_pull_imports_no_thread_pool_or_logging(pushed: str, tmp_path: Path) -> None:
    """concurrent.futures imports logging (~7 ms); client/parallel.py runs the transfers instead."""
    from tests.engine.test_cli import imported

    env = {**Berth(tmp_path / "root").env}
    done, modules = imported(["-m", "engine", "pull", "-q", pushed], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "root" / "images" / "index.json").exists()
    assert not {"concurrent.futures", "logging", "click"} & modules


def test_a_present_pull_imports_only_what_it_reads(pushed: str, tmp_path: Path) -> None:
    """One manifest request and the store's index: no dataclasses (inspect), no tempfile (shutil, bz2,
    lzma), and no idna codec for the loopback registry's TLS probe."""
    from tests.engine.test_cli import at_start, imported

    env = {**Berth(tmp_path / "root").env}
    first, _ = imported(["-m", "engine", "pull", "-q", pushed], env)
    assert first.returncode == 0, first.stderr[-2000:]
    done, modules = imported(["-m", "engine", "pull", "-q", pushed], env)
    assert done.returncode == 0, done.stderr[-2000:]
    unwanted = {"dataclasses", "inspect", "tempfile", "shutil", "encodings.idna"} & modules - at_start(env)
    assert not unwanted, sorted(unwanted)
