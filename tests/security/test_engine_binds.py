"""Issue 11.5: every mount the engine makes inside a root filesystem stays inside it.

An image controls its own tree, symlinks included, so each mount target and each bind
source inside the rootfs must be resolved as if the rootfs were `/`. Each test builds an
image whose path for one mount is an absolute symlink to a real host path, runs it, and
checks both sides: the mount is where the container expects it, and the host path is
untouched. The first one is the hole that was found: masking /proc paths bound the host
file `<dev target>/null` read-write over /proc/keys.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.service.archives import argv
from tests.engine.conftest import Berth, private_berth
from tests.engine.images import TarBuilder, busybox_base, write_image

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Berth]:
    with private_berth(tmp_path_factory.mktemp("berth-binds")) as tool:
        yield tool


def hostile(berth: Berth, name: str, links: dict[str, str]) -> str:
    """The busybox image plus a layer of symlinks `path -> absolute target`."""
    layer = TarBuilder()
    if any(path.startswith("etc/") for path in links):
        layer.dir("etc")
    for path, target in links.items():
        layer.symlink(path, target)
    reference = f"127.0.0.1:5000/hostile/{name}:latest"
    write_image(berth.root, reference, [(busybox_base().bytes(), "gzip"), (layer.bytes(), "none")], {"Cmd": ["sh"]})
    return reference


def sh(berth: Berth, image: str, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    return berth("run", "--rm", *options, image, "sh", "-c", script)


def test_masked_paths_bind_the_containers_dev_null_not_a_host_file(berth: Berth, tmp_path: Path) -> None:
    host_dev = tmp_path / "hostdev"
    host_dev.mkdir()
    (host_dev / "null").write_text("host secret\n")
    image = hostile(berth, "dev", {"dev": str(host_dev)})
    result = sh(berth, image, "cat /proc/keys; echo written > /proc/keys; test -c /dev/null && echo null-is-a-device")
    assert (host_dev / "null").read_text() == "host secret\n"
    assert "host secret" not in result.stdout
    assert result.stdout.splitlines() == ["null-is-a-device"], result.stderr


def test_proc_and_sys_mount_inside_the_rootfs_with_their_masks(berth: Berth, tmp_path: Path) -> None:
    host_proc, host_sys = tmp_path / "hostproc", tmp_path / "hostsys"
    image = hostile(berth, "procsys", {"proc": str(host_proc), "sys": str(host_sys)})
    result = sh(berth, image, "grep -c '^Pid:' /proc/self/status; wc -c < /proc/keys; cat /proc/self/mountinfo")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["1", "0"]
    options = {fields[4]: fields[5].split(",") for fields in (line.split() for line in lines[2:])}
    assert "ro" in options[f"{host_proc}/sys"] and "ro" in options[str(host_sys)]
    assert not host_proc.exists() and not host_sys.exists()


def test_volume_targets_resolve_inside_the_rootfs(berth: Berth, tmp_path: Path) -> None:
    victim, source = tmp_path / "victim", tmp_path / "source"
    victim.mkdir()
    source.mkdir()
    (source / "shared").write_text("from the volume\n")
    image = hostile(berth, "volume", {"mnt": str(victim)})
    result = sh(berth, image, "cat /mnt/vol/shared; echo new > /mnt/vol/made", "-v", f"{source}:/mnt/vol")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the volume\n"
    assert (source / "made").read_text() == "new\n"
    assert list(victim.iterdir()) == []


def test_etc_files_bind_over_the_images_own_paths(berth: Berth, tmp_path: Path) -> None:
    host_hostname, host_hosts = tmp_path / "hostname", tmp_path / "hosts-not-there"
    host_hostname.write_text("host file\n")
    image = hostile(berth, "etc", {"etc/hostname": str(host_hostname), "etc/hosts": str(host_hosts)})
    result = sh(berth, image, "cat /etc/hostname; grep -c boat /etc/hosts", "--hostname", "boat")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["boat", "1"]
    assert host_hostname.read_text() == "host file\n"
    assert not host_hosts.exists()


def test_working_directory_is_made_inside_the_rootfs(berth: Berth, tmp_path: Path) -> None:
    host_work = tmp_path / "hostwork"
    host_work.mkdir()
    image = hostile(berth, "workdir", {"escape": str(host_work)})
    result = sh(berth, image, "pwd -P; ls -d /escape/work/", "-w", "/escape/work")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{host_work}/work", "/escape/work/"]
    assert list(host_work.iterdir()) == []


def test_a_copy_into_a_stopped_container_binds_its_volume_inside_the_rootfs(berth: Berth, tmp_path: Path) -> None:
    """`docker cp` on a stopped container mounts its overlay and volumes afresh (`rootfs.enter_root`)
    in the process the API starts; here that process is started directly, as the API does."""
    victim, source = tmp_path / "victim", tmp_path / "source"
    victim.mkdir()
    source.mkdir()
    (source / "shared").write_text("from the volume\n")
    image = hostile(berth, "copy", {"mnt": str(victim)})
    assert berth("run", "--name", "copied", "-v", f"{source}:/mnt/vol", image, "true").returncode == 0
    directory = berth.root / "containers" / json.loads(berth("container", "inspect", "copied").stdout)[0]["Id"]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("made")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"new\n"))
    put = subprocess.run(
        argv(directory, "put", "/mnt/vol", name="copied"), input=archive.getvalue(), capture_output=True, env=berth.env
    )
    assert put.returncode == 0 and json.loads(put.stdout) == {"done": True}, put.stderr
    got = subprocess.run(argv(directory, "get", "/mnt/vol/shared", name="copied"), capture_output=True, env=berth.env)
    assert got.returncode == 0, got.stderr
    with tarfile.open(fileobj=io.BytesIO(got.stdout.split(b"\n", 1)[1])) as tar:
        member = tar.extractfile("shared")
        assert member is not None and member.read() == b"from the volume\n"
    assert (source / "made").read_text() == "new\n"
    assert list(victim.iterdir()) == []
