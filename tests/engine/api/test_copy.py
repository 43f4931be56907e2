"""`docker cp` both ways against berth and dockerd: files, directories, tar streams, stopped containers,
paths that do not exist, and paths and archives that try to leave the container's root."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.engine.api.conftest import IMAGE_NAME, Engine, http

pytestmark = [pytest.mark.root, pytest.mark.e2e]
NONE = ("--network", "none")
SETUP = (
    "mkdir -p /data/sub && echo hello > /data/file && echo deep > /data/sub/inner"
    " && ln -sfn / /data/rootlink && ln -sfn /etc /data/etclink"
)


def tar_of(*entries: tuple[str, bytes | str | None]) -> bytes:
    """A tar: (name, bytes) is a file, (name, None) a directory, (name, "->target") a symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content.removeprefix("->")
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def box(engine: Engine) -> str:
    engine.ok("run", "-d", *NONE, "--name", "box", IMAGE_NAME, "sh", "-c", f"{SETUP} && exec sleep 600")
    engine.ok("exec", "box", "sh", "-c", f"test -e /data/rootlink || ({SETUP})")
    yield "box"
    engine.ok("rm", "-f", "box")


def test_copy_out_files_and_directories(engine: Engine, box: str, tmp_path: Path) -> None:
    engine.ok("cp", "box:/data/file", str(tmp_path / "copied"))
    assert (tmp_path / "copied").read_text() == "hello\n"
    engine.ok("cp", "box:/data", str(tmp_path / "tree"))
    assert (tmp_path / "tree" / "sub" / "inner").read_text() == "deep\n"
    assert os.readlink(tmp_path / "tree" / "rootlink") == "/"
    assert os.readlink(tmp_path / "tree" / "etclink") == "/etc"
    engine.ok("cp", "box:/data/sub/.", str(tmp_path / "tree"))  # the contents, into an existing directory
    assert (tmp_path / "tree" / "inner").read_text() == "deep\n"
    streamed = engine.docker("cp", "box:/data/sub", "-", text=False)
    with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as tar:
        assert sorted(m.name.rstrip("/") for m in tar.getmembers()) == ["sub", "sub/inner"]


def test_copy_in_files_directories_and_tar_streams(engine: Engine, box: str, tmp_path: Path) -> None:
    (tmp_path / "note").write_text("from the host\n")
    (tmp_path / "dir" / "nested").mkdir(parents=True)
    (tmp_path / "dir" / "nested" / "leaf").write_text("leaf\n")
    engine.ok("cp", str(tmp_path / "note"), "box:/data/")
    engine.ok("cp", str(tmp_path / "note"), "box:/data/renamed")
    engine.ok("cp", str(tmp_path / "dir"), "box:/data/dir")
    streamed = engine.docker("cp", "-", "box:/data/sub", input=tar_of(("t", None), ("t/x", b"tarred\n")), text=False)
    assert streamed.returncode == 0, streamed.stderr
    out = engine.ok("exec", "box", "cat", "/data/note", "/data/renamed", "/data/dir/nested/leaf", "/data/sub/t/x")
    assert out == "from the host\nfrom the host\nleaf\ntarred\n"
    into_link = engine.docker("cp", str(tmp_path / "note"), "box:/data/rootlink/tmp/")  # a symlink to a directory
    assert into_link.returncode == 0, into_link.stderr
    assert engine.ok("exec", "box", "cat", "/tmp/note") == "from the host\n"


def test_a_stopped_container_both_ways(engine: Engine, tmp_path: Path) -> None:
    engine.ok("run", *NONE, "--name", "stopped", IMAGE_NAME, "sh", "-c", SETUP)
    try:
        engine.ok("cp", "stopped:/data/file", str(tmp_path / "out"))
        assert (tmp_path / "out").read_text() == "hello\n"
        (tmp_path / "in").write_text("while stopped\n")
        engine.ok("cp", str(tmp_path / "in"), "stopped:/data/in")
        engine.ok("cp", str(tmp_path / "in"), "stopped:/etc/added")  # only in the image's layer below
        engine.ok("start", "-a", "stopped")
        engine.ok("cp", "stopped:/data/in", str(tmp_path / "back"))
        engine.ok("cp", "stopped:/etc/added", str(tmp_path / "added"))
        assert (tmp_path / "back").read_text() == (tmp_path / "added").read_text() == "while stopped\n"
    finally:
        engine.ok("rm", "-f", "stopped")


def _answer(stderr: str) -> str:
    return [line for line in stderr.strip().splitlines() if not line.startswith('time="')][-1]


def test_missing_paths_answer_as_dockerd(berth_api: Engine, dockerd: Engine, tmp_path: Path) -> None:
    outcomes = []
    (tmp_path / "f").write_text("x")
    for engine in (berth_api, dockerd):
        cid = engine.ok("run", "-d", *NONE, "--name", "holder", IMAGE_NAME, "sleep", "600").strip()
        seen = [
            engine.docker("cp", "holder:/no/such/file", str(tmp_path / "x")),
            engine.docker("cp", str(tmp_path / "f"), "holder:/no/such/dir/f"),
            engine.docker("cp", str(tmp_path / "nothing"), "holder:/tmp/"),
            engine.docker("cp", "nobody:/etc/passwd", str(tmp_path / "x")),
            engine.docker("cp", str(tmp_path / "f"), "holder:/etc/passwd/"),
        ]
        # the daemon's answer, without the CLI's own logs (`time="..." level=error msg="Can't add file ... to
        # tar: ... closed pipe"`), which come before or after that answer as its goroutines' timing goes
        outcomes.append([(r.returncode, _answer(r.stderr.replace(cid, "ID"))) for r in seen])
        engine.ok("rm", "-f", "holder")
    assert outcomes[0] == outcomes[1]


def test_nothing_leaves_the_container_root(berth_api: Engine, dockerd: Engine, tmp_path: Path) -> None:
    """Paths with `..`, symlinks to `/` and archives with `../` entries or absolute links stay inside."""
    host_marker = Path("/etc/berth-cp-escape")
    outcomes = []
    for engine in (berth_api, dockerd):
        engine.ok("run", "-d", *NONE, "--name", "trap", IMAGE_NAME, "sh", "-c", f"{SETUP} && exec sleep 600")
        engine.ok("exec", "trap", "sh", "-c", f"test -e /data/rootlink || ({SETUP})")
        passwd = engine.ok("exec", "trap", "cat", "/etc/passwd")
        assert passwd != Path("/etc/passwd").read_text()
        seen = {}
        for name, source in (("dots", "trap:../../../etc/passwd"), ("link", "trap:/data/rootlink/etc/passwd")):
            result = engine.docker("cp", source, str(tmp_path / name))
            seen[name] = (result.returncode, (tmp_path / name).read_text() == passwd)
        follow = engine.docker("cp", "-L", "trap:/data/etclink", str(tmp_path / "followed"))
        seen["follow"] = (follow.returncode, (tmp_path / "followed" / "passwd").read_text() == passwd)
        climbing = tar_of(("../../../../../../etc/berth-cp-escape", b"escaped\n"))
        linked = tar_of(("up", "->/etc"), ("up/berth-cp-escape", b"through a link\n"))
        for name, archive in (("climbing", climbing), ("linked", linked)):
            result = engine.docker("cp", "-", "trap:/data/sub", input=archive, text=False)
            inside = engine.docker("exec", "trap", "cat", "/etc/berth-cp-escape")
            seen[name] = (result.returncode == 0, inside.stdout)
            engine.docker("exec", "trap", "rm", "-f", "/etc/berth-cp-escape")
        outcomes.append(seen)
        engine.ok("rm", "-f", "trap")
        for name in ("dots", "link", "followed"):
            target = tmp_path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        assert not host_marker.exists()
    assert outcomes[0]["dots"] == outcomes[0]["link"] == (0, True)
    assert outcomes[0] == outcomes[1]


def test_hostile_archive_requests(berth_api: Engine, dockerd: Engine) -> None:
    from tests.engine.api.test_service import request

    def status(engine: Engine, method: str, path: str, body: bytes = b"") -> int:
        """The answer's status; 0 when the engine hung up instead (dockerd does, before reading a body
        it will not use)."""
        try:
            return request(engine, method, path, body)[0]
        except ConnectionResetError:
            return 0

    outcomes = []
    for engine in (berth_api, dockerd):
        cid = engine.ok("run", "-d", *NONE, "--name", "target", IMAGE_NAME, "sleep", "600").strip()
        base = "/v1.41/containers/target/archive"
        seen = {
            "no path": status(engine, "GET", base),
            "stat missing": status(engine, "HEAD", f"{base}?path=/nope"),
            "put missing": status(engine, "PUT", f"{base}?path=/nope", tar_of(("x", b"x"))) in (0, 404),
            "put on a file": status(engine, "PUT", f"{base}?path=/etc/passwd", tar_of(("x", b"x"))) in (0, 400, 500),
            "not a tar": status(engine, "PUT", f"{base}?path=/tmp", b"this is not a tar archive" * 40) in (0, 400, 500),
            "no container": status(engine, "GET", "/v1.41/containers/nothing-here/archive?path=/"),
        }
        answer, body = http(engine, "GET", f"{base}?path=/etc/passwd")
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            member = tar.getmember("passwd")
            seen["passwd"] = (answer, member.size, tar.extractfile(member).read().decode().splitlines()[0])  # type: ignore[union-attr]
        outcomes.append(seen)
        engine.ok("rm", "-f", "target")
        assert cid
    assert outcomes[0]["passwd"][0] == 200
    assert outcomes[0] == outcomes[1]


def test_ownership_and_type_conflicts_as_dockerd(berth_api: Engine, dockerd: Engine, tmp_path: Path) -> None:
    """`cp -a` gives the files to the container's user; a file over a directory (and back) is refused."""
    (tmp_path / "owned").write_text("mine\n")
    os.chown(tmp_path / "owned", 4321, 4321)
    (tmp_path / "sub").write_text("a file named like a directory\n")
    (tmp_path / "dirs" / "file").mkdir(parents=True)
    outcomes = []
    for engine in (berth_api, dockerd):
        engine.ok("run", "-d", *NONE, "-u", "1000", "--name", "owner", IMAGE_NAME, "sleep", "600")
        engine.ok("exec", "-u", "0", "owner", "sh", "-c", SETUP)
        engine.ok("cp", str(tmp_path / "owned"), "owner:/tmp/kept")
        engine.ok("cp", "-a", str(tmp_path / "owned"), "owner:/tmp/given")
        owners = engine.ok("exec", "owner", "stat", "-c", "%u:%g", "/tmp/kept", "/tmp/given").split()
        over_dir = engine.docker("cp", str(tmp_path / "sub"), "owner:/data/")
        over_file = engine.docker("cp", str(tmp_path / "dirs") + "/.", "owner:/data/")
        left = engine.ok("exec", "owner", "sh", "-c", "test -d /data/sub && test -f /data/file && echo intact")
        outcomes.append((owners, over_dir.returncode, over_dir.stderr, over_file.returncode, over_file.stderr, left))
        engine.ok("rm", "-f", "owner")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ["4321:4321", "1000:1000"] and outcomes[0][1] == 1 and outcomes[0][5] == "intact\n"


def test_read_only_root_takes_copies_only_into_volumes(berth_api: Engine, dockerd: Engine, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("into the volume\n")
    outcomes = []
    for engine in (berth_api, dockerd):
        engine.ok(
            "run", "-d", *NONE, "--read-only", "-v", "rw-vol:/vol", "--name", "frozen", IMAGE_NAME, "sleep", "600"
        )
        refused = engine.docker("cp", str(tmp_path / "f"), "frozen:/tmp/f")
        accepted = engine.docker("cp", str(tmp_path / "f"), "frozen:/vol/f")
        copied = engine.docker("exec", "frozen", "cat", "/vol/f").stdout
        outcomes.append((refused.returncode, refused.stderr.strip().splitlines()[-1:], accepted.returncode, copied))
        engine.ok("rm", "-f", "frozen")
        engine.ok("volume", "rm", "rw-vol")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == 1 and outcomes[0][2:] == (0, "into the volume\n")
