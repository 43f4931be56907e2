"""`berth build` end to end on the engine: real containers for RUN, the store, the cache, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from client.layout import Layout, store_name
from tests.engine.conftest import Berth
from tests.engine.images import IMAGE
from tests.engine.netns import session_netns

pytestmark = pytest.mark.root

DOCKERFILE = f"""\
ARG BASE={IMAGE}
FROM $BASE AS base
ENV GREETING="hello world"
WORKDIR /app/new
COPY a.txt sub ./
RUN echo "$GREETING" > out.txt && rm /etc/keep
USER app
RUN id -u > /tmp/id.txt
RUN <<SCRIPT
echo "from a heredoc script" > /tmp/heredoc.txt
SCRIPT

FROM base
COPY --from=base /app/new/out.txt /copied
COPY <<EOF /here.txt
greeting is $GREETING
EOF
CMD ["cat", "/copied", "/here.txt", "/tmp/id.txt"]
"""


def make_context(path: Path, dockerfile: str = DOCKERFILE) -> Path:
    path.mkdir()
    (path / "Dockerfile").write_text(dockerfile)
    (path / "a.txt").write_text("a\n")
    (path / "sub").mkdir()
    (path / "sub" / "b.txt").write_text("b\n")
    (path / "secret.txt").write_text("never copied\n")
    (path / ".dockerignore").write_text("secret.txt\n")
    return path


def leftover_containers(berth: Berth) -> list[Path]:
    containers = berth.root / "containers"
    return [p for p in containers.iterdir() if not p.name.startswith(".")] if containers.is_dir() else []


def steps(output: str, word: str) -> int:
    return sum(1 for line in output.splitlines() if line.startswith("#") and line.split()[1:2] == [word])


def test_build_run_and_cached_rebuild(berth: Berth, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    first = berth("build", "-t", "built/one:1", "--progress", "plain", str(context), timeout=120)
    assert first.returncode == 0, first.stderr
    run = berth("run", "--rm", "built/one:1")
    assert run.stdout == "hello world\ngreeting is hello world\n1000\n", run.stderr

    again = berth("build", "-t", "built/one:1", "--progress", "plain", str(context), timeout=120)
    assert again.returncode == 0, again.stderr
    assert steps(again.stderr, "CACHED") == 7 and steps(again.stderr, "DONE") == 2  # the two FROMs
    assert again.stdout.split()[2] == first.stdout.split()[2]

    (context / "sub" / "b.txt").write_text("changed\n")
    changed = berth("build", "-t", "built/one:1", "--progress", "plain", str(context), timeout=120)
    assert steps(changed.stderr, "CACHED") == 1  # WORKDIR only: COPY and everything after it ran again

    layout = Layout.open(berth.root / "images")
    _, manifest = layout.image(store_name("built/one:1"))
    config = json.loads(layout.read_blob(manifest.config.digest))
    assert len(config["rootfs"]["diff_ids"]) == len(manifest.layers)
    assert sum(not h.get("empty_layer") for h in config["history"]) == len(manifest.layers)
    assert config["config"]["User"] == "app" and config["config"]["WorkingDir"] == "/app/new"

    target = berth("build", "-t", "built/target:1", "--target", "base", "--progress", "plain", str(context))
    assert target.returncode == 0 and "stage-1" not in target.stderr, target.stderr
    probe = berth("run", "--rm", "built/target:1", "cat", "/tmp/heredoc.txt", "/copied")
    assert probe.stdout == "from a heredoc script\n" and "No such file" in probe.stderr
    missing = berth("build", "--target", "nope", str(context))
    assert missing.returncode != 0 and "target stage 'nope' could not be found" in missing.stderr


def test_failing_run_stops_with_its_code_and_tags_nothing(berth: Berth, tmp_path: Path) -> None:
    dockerfile = f"FROM {IMAGE}\nRUN echo partial > /x; for i in 1 2 3; do echo line $i; done; exit 7\nCMD x\n"
    context = make_context(tmp_path / "ctx", dockerfile)
    result = berth("build", "-t", "built/failed:1", "--progress", "plain", str(context), timeout=120)
    assert result.returncode == 7
    assert "failed with exit code 7" in result.stderr and "  line 3" in result.stderr
    assert berth("run", "--rm", "built/failed:1", "true").returncode != 0
    assert not leftover_containers(berth)


@pytest.mark.parametrize(
    ("copy", "message"),
    [
        ("COPY ../outside /x", "outside the build context"),
        ("COPY secret.txt /x", "excluded by .dockerignore"),
        ("COPY nothing* /x", "matches nothing"),
        ("FROB x", "Dockerfile:2: unknown instruction"),
        ("RUN --network=bogus true", "Dockerfile:2: RUN --network=bogus"),
        ("COPY --chmod=999 a.txt /x", "Dockerfile:2: invalid --chmod"),
        ("EXPOSE 70000", "Dockerfile:2: invalid port"),
        ("USER nobody-here\nRUN true", "unable to find user nobody-here"),
    ],
)
def test_bad_sources_are_refused(berth: Berth, tmp_path: Path, copy: str, message: str) -> None:
    context = make_context(tmp_path / "ctx", f"FROM {IMAGE}\n{copy}\n")
    result = berth("build", "--progress", "plain", str(context), timeout=60)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not leftover_containers(berth)


def test_symlink_out_of_the_context_stays_inside(berth: Berth, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", f'FROM {IMAGE}\nCOPY escape /got\nCMD ["cat", "/got"]\n')
    (context / "escape").symlink_to("/etc/hostname")
    result = berth("build", "--progress", "plain", str(context), timeout=60)
    assert result.returncode != 0 and "not found in the build context" in result.stderr


def test_source_date_epoch_gives_one_digest(berth: Berth, tmp_path: Path) -> None:
    digests = []
    for name in ("one", "two"):
        context = make_context(tmp_path / name)
        if name == "two":
            shutil.copystat(context / "a.txt", context / "sub")
        result = berth(
            "build", "--no-cache", "-q", "--build-arg", "SOURCE_DATE_EPOCH=1700000000", str(context), timeout=120
        )
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1]


def test_prune_drops_the_cache_but_not_images(berth: Berth, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx")
    args = ("build", "-t", "built/pruned:1", "--compression", "zstd", "--progress", "plain", str(context))
    assert berth(*args, timeout=120).returncode == 0
    layout = Layout.open(berth.root / "images")
    _, manifest = layout.image(store_name("built/pruned:1"))
    assert {layer.media_type for layer in manifest.layers[3:]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    assert any(e.descriptor.artifact_type for e in layout.entries())
    listed = json.loads(berth("images", "--format", "json").stdout)
    assert listed and not [row for row in listed if "artifactType" in row]  # the cache is no image
    pruned = berth("builder", "prune", timeout=60)
    assert pruned.returncode == 0 and "Deleted build cache entries:" in pruned.stdout
    assert not any(e.descriptor.artifact_type for e in layout.entries())
    assert "hello world" in berth("run", "--rm", "built/pruned:1").stdout
    again = berth(*args, timeout=120)
    assert steps(again.stderr, "CACHED") == 0


def test_add_archives_urls_and_metadata(berth: Berth, tmp_path: Path) -> None:
    import hashlib
    import io
    import subprocess
    import sys
    import tarfile

    context = make_context(tmp_path / "ctx")
    with tarfile.open(context / "bundle.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("pkg/file.txt")
        info.size = 8
        tar.addfile(info, io.BytesIO(b"from tar"))
    (tmp_path / "served.txt").write_text("served over http\n")
    # The server runs in berth's network namespace, where the build fetches from.
    command = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    server = subprocess.Popen((berth.netns or session_netns()).wrap(command), stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().split(" port ")[1].split()[0]  # type: ignore[union-attr]
    served_sha256 = hashlib.sha256((tmp_path / "served.txt").read_bytes()).hexdigest()
    dockerfile = f"""\
FROM --platform=$BUILDPLATFORM_UNSET {IMAGE}
ADD bundle.tar.gz /opt/
COPY --from={IMAGE} /etc/keep /from-image
COPY --chown=app:extra --chmod=751 a.txt /owned
ADD --checksum=sha256:{served_sha256} http://127.0.0.1:{port}/served.txt /downloads/
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=30s --retries=3 CMD test -f /opt/pkg/file.txt
STOPSIGNAL SIGQUIT
VOLUME /data
EXPOSE 8080-8081/udp
CMD cat /opt/pkg/file.txt /downloads/served.txt
"""
    (context / "Dockerfile").write_text(dockerfile)
    try:
        result = berth("build", "-t", "built/add:1", "--progress", "plain", str(context), timeout=120)
    finally:
        server.kill()
        server.wait()
    assert result.returncode == 0, result.stderr
    assert berth("run", "--rm", "built/add:1").stdout == "from tarserved over http\n"
    probe = berth("run", "--rm", "built/add:1", "sh", "-c", "cat /from-image; stat -c '%u:%g %a' /owned")
    assert probe.stdout == "kept\n1000:2000 751\n", probe.stderr
    layout = Layout.open(berth.root / "images")
    _, manifest = layout.image(store_name("built/add:1"))
    config = json.loads(layout.read_blob(manifest.config.digest))["config"]
    assert config["Cmd"] == ["/bin/sh", "-ec", "cat /opt/pkg/file.txt /downloads/served.txt"]
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -f /opt/pkg/file.txt"],
        "Interval": 30_000_000_000,
        "Retries": 3,
    }
    assert config["StopSignal"] == "SIGQUIT" and config["Volumes"] == {"/data": {}}
    assert config["ExposedPorts"] == {"8080/udp": {}, "8081/udp": {}}

    # A --checksum that lies about the download: refused, naming the line.
    first_port = port
    server = subprocess.Popen((berth.netns or session_netns()).wrap(command), stdout=subprocess.PIPE, text=True)
    port = server.stdout.readline().split(" port ")[1].split()[0]  # type: ignore[union-attr]
    lying = dockerfile.replace("--checksum=sha256:", "--checksum=sha256:0").replace(f":{first_port}/", f":{port}/")
    (context / "Dockerfile").write_text(lying)
    try:
        lied = berth("build", "--no-cache", str(context), timeout=120)
    finally:
        server.kill()
        server.wait()
    assert lied.returncode != 0 and "Dockerfile:5: ADD" in lied.stderr and "--checksum" in lied.stderr, lied.stderr

    (context / "Dockerfile").write_text(f"FROM --platform=linux/s390x {IMAGE}\n")
    wrong = berth("build", str(context), timeout=60)
    assert wrong.returncode != 0 and "berth builds only for this machine" in wrong.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--output", "docker://127.0.0.1:1/x:1"), "use oci:DIR or docker-archive:FILE"),
        (("--output", "tarball:x"), "unknown transport"),
        (("--build-arg", "=value"), "invalid --build-arg"),
        (("--build-arg", "SOURCE_DATE_EPOCH=yesterday"), "invalid SOURCE_DATE_EPOCH"),
        (("--platform", "linux/arm64"), "only for this machine"),
        (("--push",), "--push needs at least one -t"),
        (("-f", "/nonexistent/Dockerfile"), "cannot read the Dockerfile"),
        (("-t", "Bad Name!"), "invalid"),
    ],
)
def test_bad_flags_change_nothing(berth: Berth, tmp_path: Path, flags: tuple[str, ...], message: str) -> None:
    context = make_context(tmp_path / "ctx", f"FROM {IMAGE}\nRUN touch /x\n")
    before = (berth.root / "images" / "index.json").read_bytes()
    result = berth("build", *flags, str(context), timeout=60)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert (berth.root / "images" / "index.json").read_bytes() == before
    assert "#1" not in result.stderr  # refused before the first step


def test_terminal_progress_prints_steps(berth: Berth, tmp_path: Path) -> None:
    context = make_context(tmp_path / "ctx", f"FROM {IMAGE}\nRUN echo shown\n")
    result = berth("build", "--progress", "tty", str(context), timeout=60)
    assert result.returncode == 0 and "RUN echo shown" in result.stderr and "shown" in result.stderr
