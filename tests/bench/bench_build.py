"""Benchmark: `berth build` beside `docker build` (a private dockerd, classic builder) and `buildah bud`.

Three figures, medians of --rounds, ratios from this one run:
- a cached rebuild of a 5-step Dockerfile (FROM, COPY, RUN, RUN, COPY): every step reused;
- a cold build of it (--no-cache): RUN steps that do little, so this is per-step overhead;
- the diff and compression of a 100 MiB layer (half random, half text) beside `tar | gzip`
  (and `tar | zstd` for --compression zstd) of the same directory, each file synced to disk
  (berth hashes the tar and the blob too, which the pipelines do not).

Run (as root): python tests/bench/bench_build.py [--rounds 3] [--layer-mb 100]
The base image is a static busybox imported into dockerd and copied into berth's and buildah's
stores from `docker save`, so nothing is pulled. Every tool builds with no network.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_client import start_dockerd  # noqa: E402
from tests.bench.installed import install, interpreter  # noqa: E402
from tests.e2e.images import busybox_rootfs, tar_directory  # noqa: E402

BASE = "bench-build/base:1"
DOCKERFILE = f"""\
FROM {BASE}
COPY a.txt /srv/a.txt
RUN echo one > /one && ls /srv > /listing
RUN echo two > /two
COPY sub /srv/sub
CMD ["cat", "/one", "/two"]
"""


def run(*command: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def timed(*command: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    run(*command, env=env)
    return time.perf_counter() - started


def context(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "a.txt").write_text("a\n")
    for i in range(20):
        (path / "sub" / f"f{i}").write_text(f"file {i}\n" * 100)
    return path


class Tools:
    """How each tool builds the context, with the cache (`cached`) or without."""

    def __init__(self, work: Path, docker_sock: str) -> None:
        self.berth_env = {"BERTH_ROOT": str(work / "berth"), "PYTHONPATH": str(ROOT)}
        self.dev = [sys.executable, "-c", "from engine.cli import main; main()"]
        # `berth` is judged as installed (see installed.py); an empty PYTHONPATH counts as unset,
        # so it imports its own copy. `berth-dev` is the development install, for comparison.
        self.installed = [str(install(work / "installed"))]
        self.installed_env = self.berth_env | {"PYTHONPATH": ""}
        self.docker_env = {"DOCKER_HOST": f"unix://{docker_sock}", "DOCKER_BUILDKIT": "0"}
        storage = work / "buildah"
        self.buildah = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run")]
        self.has_buildah = shutil.which("buildah") is not None

    def setup(self, work: Path) -> None:
        busybox = shutil.which("busybox", path="/bin:/usr/bin")
        if busybox is None:
            raise SystemExit("needs busybox-static")
        rootfs = busybox_rootfs(busybox, work / "rootfs")
        run("docker", "import", str(tar_directory(rootfs, work / "rootfs.tar")), BASE, env=self.docker_env)
        archive = work / "base.tar"
        run("docker", "save", "-o", str(archive), BASE, env=self.docker_env)
        self.berth("copy", f"docker-archive:{archive}", f"local:{BASE}", "-q")
        if self.has_buildah:
            try:
                run(*self.buildah, "pull", "-q", f"docker-archive:{archive}")
                run(*self.buildah, "tag", run(*self.buildah, "images", "-q").split()[0], BASE)
            except SystemExit as exc:
                print(f"buildah skipped: {str(exc).splitlines()[-1]}")
                self.has_buildah = False

    def berth(self, *args: str) -> str:
        return run(*self.dev, *args, env=self.berth_env)

    def build(self, tool: str, ctx: Path, cached: bool) -> float:
        no_cache = [] if cached else ["--no-cache"]
        if tool in ("berth", "berth-dev"):
            berth, env = (self.dev, self.berth_env) if tool == "berth-dev" else (self.installed, self.installed_env)
            args = ["build", "--network", "none", "-q", "-t", "bench/app:1", *no_cache, str(ctx)]
            return timed(*berth, *args, env=env)
        if tool == "docker":
            return timed(
                "docker", "build", "--network=none", "-q", "-t", "bench/app:1", *no_cache, str(ctx), env=self.docker_env
            )
        layers = ["--layers"] if cached else ["--layers", "--no-cache"]
        return timed(*self.buildah, "bud", "--network", "none", "-q", *layers, "-t", "bench/app:1", str(ctx))


def layer_dir(path: Path, megabytes: float) -> Path:
    """Half random bytes (incompressible), half text (compressible), in 1 MiB files."""
    rng = random.Random(7)
    path.mkdir(parents=True)
    words = [rng.randbytes(6).hex() for _ in range(2000)]
    for i in range(int(megabytes)):
        data = rng.randbytes(1 << 20) if i % 2 else " ".join(rng.choices(words, k=80_000)).encode()[: 1 << 20]
        (path / f"f{i:04d}").write_bytes(data)
    return path


def bench_layer(work: Path, megabytes: float, rounds: int) -> None:
    from client.layout import Layout
    from engine.service.layer_diff import write_layer

    upper = layer_dir(work / "upper", megabytes)
    run("sync")
    for compression, command in (("gzip", "gzip -6"), ("zstd", "zstd -3 -q")):
        ours, theirs = [], []
        for i in range(rounds):
            layout = Layout.open(work / f"layout-{compression}-{i}", create=True)
            started = time.perf_counter()
            blob = write_layer(upper, layout, compression)
            ours.append(time.perf_counter() - started)
            # berth fsyncs the blob before the cache may point at it; the reference syncs its file too
            theirs.append(
                timed("sh", "-c", f"tar -C {upper} -cf - . | {command} > {work / 'out'} && sync {work / 'out'}")
            )
        size = (work / "out").stat().st_size
        mine, ref = statistics.median(ours), statistics.median(theirs)
        print(
            f"  {megabytes:.0f} MiB layer, {compression}: berth {mine:5.2f} s ({blob.size / 1e6:.1f} MB), "
            f"tar | {command} {ref:5.2f} s ({size / 1e6:.1f} MB): {mine / ref:4.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layer-mb", type=float, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: berth build, dockerd and buildah need namespaces and mounts")
    run(sys.executable, "-m", "compileall", "-q", *(str(ROOT / name) for name in ("client", "engine", "registry")))
    with tempfile.TemporaryDirectory(prefix="berth-build-bench-") as tmp:
        work = Path(tmp)
        dockerd, sock = start_dockerd(work / "docker")
        try:
            tools = Tools(work, sock)
            tools.setup(work)
            ctx = context(work / "ctx")
            names = ["berth", "berth-dev", "docker", *(["buildah"] if tools.has_buildah else [])]
            results: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for tool in names:
                    results.setdefault(f"{tool} cold", []).append(tools.build(tool, ctx, cached=False))
                    results.setdefault(f"{tool} cached", []).append(tools.build(tool, ctx, cached=True))
                floor = str(interpreter(Path(tools.installed[0])))
                results.setdefault("python start", []).append(timed(floor, "-c", "pass", env={"PYTHONPATH": ""}))
            medians = {k: statistics.median(v) for k, v in results.items()}
            print(f"5-step Dockerfile, median of {args.rounds} rounds (ratio to docker build):")
            for kind in ("cached", "cold"):
                for tool in names:
                    value = medians[f"{tool} {kind}"]
                    print(f"  {kind:>6} {tool:>9}: {value:6.3f} s  ({value / medians[f'docker {kind}']:4.2f}x docker)")
            start = medians["python start"]
            print(
                f"  (the installed berth's interpreter starting and exiting alone: {start:.3f} s; a cached berth "
                f"build beyond it: {medians['berth cached'] - start:.3f} s)"
            )
            bench_layer(work, args.layer_mb, args.rounds)
        finally:
            dockerd.terminate()
            dockerd.wait(30)


if __name__ == "__main__":
    main()
