"""`berth build` beside `docker build` (the private dockerd's classic builder) on the same contexts.

Both build FROM one busybox image imported into dockerd and copied into berth's store from
`docker save`, so nothing is pulled. For each Dockerfile: the files, modes, owners and link
targets of the final root filesystems (`docker export`), the Config fields, and what `docker run`
prints are the same; berth's image reaches dockerd through `--output docker-archive:` and
`docker load`. Heredocs and `COPY --chmod` need BuildKit, which this dockerd lacks: tests/engine
covers them on berth alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import Docker, Registry
from tests.e2e.images import busybox_rootfs, tar_directory
from tests.e2e.processes import CommandFailed, require_binaries, run

pytestmark = pytest.mark.e2e

BASE = "berth-e2e/build-base:1"
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\n"

SINGLE = """\
FROM {base}
ENV GREETING="hello world" EMPTY=
ARG VERSION=1.0
LABEL org.example.version=$VERSION maintainer="someone"
WORKDIR /srv/app
COPY files/ ./
COPY --chown=1000:1000 top.txt /srv/new/dir/owned.txt
RUN rm /etc/deleteme && rm -rf /data && mkdir /data && echo new > /data/new \\
    && ln -s ../srv/app/a.txt /data/link && ln /srv/app/a.txt /data/hard \\
    && cp /bin/busybox /srv/suid && chmod 4755 /srv/suid && chown 1000:1000 /data/new
USER 1000
RUN id -u > /tmp/uid && echo "$GREETING ${{VERSION:-none}} ${{MISSING:-dflt}} ${{GREETING:+set}}" > /tmp/env
USER app
EXPOSE 8080 53/udp
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /tmp/uid /tmp/env /srv/app/a.txt; ls /data; id -un; pwd"]
"""

MULTI = """\
FROM {base} AS builder
RUN mkdir -p /out && echo built > /out/artifact && chmod 600 /out/artifact

FROM {base} AS unused
RUN echo this stage is not needed > /unused

FROM {base}
COPY --from=builder /out/ /opt/
COPY --from=0 /out/artifact /opt/second
RUN ls -l /opt > /listing
CMD ["cat", "/listing", "/opt/artifact"]
"""

PARENT = """\
FROM {base}
ONBUILD COPY top.txt /onbuild.txt
ONBUILD RUN echo triggered > /triggered
CMD ["true"]
"""
CHILD = """\
FROM {parent}
CMD ["cat", "/onbuild.txt", "/triggered"]
"""


def make_context(path: Path, dockerfile: str) -> Path:
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text(dockerfile)
    (path / "files" / "sub").mkdir(parents=True)
    (path / "files" / "a.txt").write_text("a\n")
    (path / "files" / "sub" / "b.txt").write_text("b\n")
    os.chmod(path / "files" / "sub" / "b.txt", 0o640)
    (path / "files" / "rel").symlink_to("a.txt")
    (path / "files" / "ignored.log").write_text("never copied\n")
    (path / "top.txt").write_text("top\n")
    (path / ".dockerignore").write_text("**/*.log\n")
    return path


class Berth:
    def __init__(self, root: Path, docker_config: Path) -> None:
        self.env = {**os.environ, "BERTH_ROOT": str(root), "DOCKER_CONFIG": str(docker_config)}

    def __call__(self, *args: str | os.PathLike[str], check: bool = True) -> str:
        if args and args[0] == "build":  # no bridge: these tests run in the machine's own network namespace
            args = ("build", "--network", "none", *args[1:])
        return run([sys.executable, "-m", "engine", *args], env=self.env, check=check).stdout


@pytest.fixture(scope="module")
def base(docker: Docker, e2e_dir: Path) -> Path:
    """The base image in dockerd, and as a `docker save` archive for berth."""
    busybox = require_binaries("busybox")["busybox"]
    work = e2e_dir / "build-base"
    rootfs = busybox_rootfs(
        busybox,
        work / "rootfs",
        extra={"etc/passwd": PASSWD.encode(), "etc/group": GROUP.encode(), "etc/deleteme": b"x\n"},
    )
    (rootfs / "data" / "old").write_text("replaced later\n")
    docker("import", tar_directory(rootfs, work / "rootfs.tar"), BASE)
    archive = work / "base.tar"
    docker("save", "-o", archive, BASE)
    return archive


@pytest.fixture
def berth(base: Path, tmp_path: Path) -> Berth:
    tool = Berth(tmp_path / "berth", tmp_path / "docker-config")
    tool("copy", f"docker-archive:{base}", f"local:{BASE}")
    return tool


def rootfs_listing(docker: Docker, image: str, tmp_path: Path) -> dict[str, tuple]:
    """Every path of the image's root filesystem: type, mode, owner, link target, size and content."""
    export = tmp_path / f"{image.replace('/', '_').replace(':', '_')}.tar"
    container = docker("create", image, "true").stdout.strip()
    try:
        docker("export", "-o", export, container)
    finally:
        docker("rm", container)
    listing = {}
    with tarfile.open(export) as tar:
        for m in tar.getmembers():
            content = tar.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            digest = hashlib.sha256(content).hexdigest()
            listing[m.name.rstrip("/")] = (m.type, oct(m.mode), m.uid, m.gid, m.linkname, m.size, digest)
    for runtime_file in (".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf"):
        listing.pop(runtime_file, None)
    return listing


def config(docker: Docker, image: str) -> dict:
    info = docker.inspect(image)["Config"]
    keys = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels")
    return {k: info.get(k) or None for k in keys}


def build_both(docker: Docker, berth: Berth, context: Path, name: str, tmp_path: Path) -> tuple[str, str]:
    docker("build", "--network=none", "-q", "-t", f"docker-{name}:1", context)
    archive = tmp_path / f"{name}.tar"
    berth("build", "--progress", "plain", "-t", f"berth-{name}:1", "-o", f"docker-archive:{archive}", context)
    docker("load", "-i", archive)
    return f"docker-{name}:1", f"docker.io/library/berth-{name}:1"


def assert_same_image(docker: Docker, ours: str, theirs: str, tmp_path: Path) -> None:
    assert rootfs_listing(docker, ours, tmp_path) == rootfs_listing(docker, theirs, tmp_path)
    assert config(docker, ours) == config(docker, theirs)
    out = [docker("run", "--rm", "--network=none", image).stdout for image in (ours, theirs)]
    assert out[0] == out[1] and out[0]


@pytest.mark.parametrize(("name", "dockerfile"), [("single", SINGLE), ("multi", MULTI)])
def test_berth_builds_what_docker_builds(
    docker: Docker, berth: Berth, tmp_path: Path, name: str, dockerfile: str
) -> None:
    context = make_context(tmp_path / "ctx", dockerfile.format(base=BASE))
    theirs, ours = build_both(docker, berth, context, name, tmp_path)
    assert_same_image(docker, ours, theirs, tmp_path)
    if name == "multi":
        log = run([sys.executable, "-m", "engine", "build", "--progress", "plain", str(context)], env=berth.env).stderr
        assert "unused" not in log and "[builder" in log


def test_onbuild_triggers_run_in_the_child(docker: Docker, berth: Berth, tmp_path: Path) -> None:
    parent = make_context(tmp_path / "parent", PARENT.format(base=BASE))
    docker("build", "-q", "-t", "docker-parent:1", parent)
    berth("build", "-t", "berth-parent:1", parent)
    child = make_context(tmp_path / "child", CHILD.format(parent="docker-parent:1"))
    docker("build", "--network=none", "-q", "-t", "docker-child:1", child)
    (child / "Dockerfile").write_text(CHILD.format(parent="berth-parent:1"))
    archive = tmp_path / "child.tar"
    berth("build", "-t", "berth-child:1", "-o", f"docker-archive:{archive}", child)
    docker("load", "-i", archive)
    assert_same_image(docker, "docker.io/library/berth-child:1", "docker-child:1", tmp_path)


def test_push_to_our_registry_then_docker_pulls_and_runs(
    docker: Docker, berth: Berth, registry: Registry, tmp_path: Path
) -> None:
    context = make_context(tmp_path / "ctx", MULTI.format(base=BASE))
    ref = f"{registry.host}/build/pushed:1"
    berth("build", "--push", "-t", ref, context)
    docker("pull", ref)
    assert docker("run", "--rm", "--network=none", ref).stdout.endswith("built\n")
    docker("rmi", ref)

    # Another store, without the base: FROM pulls the pushed image with the client.
    fresh = Berth(tmp_path / "fresh", tmp_path / "docker-config")
    child = make_context(tmp_path / "child", f"FROM {ref}\nRUN cat /opt/artifact > /again\n")
    log = fresh("build", "-t", "child:1", child)
    assert "child:1" in log
    assert fresh("run", "--rm", "--network", "none", "child:1", "cat", "/again") == "built\n"


def test_oci_output_is_read_by_skopeo_and_docker_loads_the_archive(berth: Berth, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", MULTI.format(base=BASE))
    berth("build", "-t", "out:1", "-o", f"oci:{tmp_path / 'layout'}", context)
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    try:
        inspected = run(["skopeo", "inspect", f"oci:{tmp_path / 'layout'}"]).stdout
    except (CommandFailed, FileNotFoundError):
        pytest.skip("skopeo is not installed")
    assert json.loads(inspected)["Layers"]
