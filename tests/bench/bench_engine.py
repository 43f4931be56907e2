"""Benchmark: `berth run --rm IMAGE true` start-to-exit latency beside runc, crun, docker and podman.

Run as root: python tests/bench/bench_engine.py [-n 30] [--no-docker] [--no-podman] [--no-pull]

Every runtime runs `true` from the same busybox root filesystem with no network, and
each figure is the wall-clock time of the whole command (process start to exit), as a
user would see it. Medians, minimums and 90th percentiles in milliseconds, and ratios to
runc, all from this one run. With --pull it also times pull + first run of a ~50 MB
image from a berth registry on a loopback port: `berth run` into an empty store against
`docker pull` + `docker run`.

dockerd is started here, private to the run (its own data root, exec root and socket,
no iptables, no bridge); crun and podman are tried and their refusals reported (both
refuse hybrid cgroup v1/v2 machines such as this one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.rootfs import merge_layer  # noqa: E402
from engine.store import ImageStore, Paths, ensure_layers  # noqa: E402
from tests.engine.images import IMAGE, TarBuilder, busybox_base, standard_image, write_image  # noqa: E402

Timings = list[float]


def timed(argv: list[str], n: int, env: dict[str, str] | None = None, between: Callable[[], None] | None = None,
          ) -> Timings | str:
    """Run argv n times; the wall-clock seconds of each, or the error text of the first failure."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            return lines[-1] if lines else f"exit {result.returncode}"
        out.append(elapsed)
        if between:
            between()
    return out


def summary(name: str, timings: Timings | str, reference: float | None) -> str:
    if isinstance(timings, str):
        return f"{name:<34} refused: {timings[:150]}"
    med = statistics.median(timings)
    p90 = sorted(timings)[int(0.9 * (len(timings) - 1))]
    ratio = f"{med / reference:5.2f}x" if reference else "     -"
    return f"{name:<34} median {med * 1000:7.1f} ms   min {min(timings) * 1000:7.1f}   p90 {p90 * 1000:7.1f}   {ratio}"


def make_bundle(work: Path, layers: list[Path]) -> Path:
    """An OCI runtime bundle of the same root filesystem, with runc's default spec running `true`."""
    bundle = work / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in layers:
        merge_layer(layer, rootfs)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = ["true"]
    spec["process"]["terminal"] = False
    spec["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def rootfs_tar(bundle: Path, work: Path) -> Path:
    path = work / "rootfs.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(bundle / "rootfs", arcname=".")
    return path


class Dockerd:
    """A private dockerd: its own data root, exec root and socket; no iptables, no bridge."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "docker"
        self.dir.mkdir()
        self.sock = f"unix://{self.dir}/sock"
        self.log = open(self.dir / "log", "wb")
        self.process = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
             "--pidfile", str(self.dir / "pid"), "-H", self.sock],
            stdout=self.log, stderr=self.log, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while subprocess.run(self.cli("info"), capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start; see {self.dir / 'log'}")
            time.sleep(0.2)

    def cli(self, *args: str) -> list[str]:
        return ["docker", "-H", self.sock, *args]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def bench_start(n: int, work: Path, with_docker: bool, with_podman: bool) -> list[str]:
    berth_root = work / "berth"
    standard_image(berth_root)
    env = {**os.environ, "BERTH_ROOT": str(berth_root)}
    store = ImageStore(Paths(berth_root))
    layers = ensure_layers(store, store.resolve(IMAGE))
    bundle = make_bundle(work, layers)
    results: list[tuple[str, Timings | str]] = []

    runc_root = work / "runc-state"
    counter = iter(range(10**6))
    runc = ["runc", "--root", str(runc_root), "run", "--bundle", str(bundle)]
    timed([*runc, "warm"], 1)
    results.append(("runc run", timed_ids(runc, n, counter)))
    if shutil.which("crun"):
        crun = ["crun", "--root", str(work / "crun-state"), "run", "--bundle", str(bundle)]
        results.append(("crun run", timed_ids(crun, n, counter)))
    else:
        results.append(("crun run", "crun is not installed"))

    berth = [sys.executable, "-m", "engine", "run", "--rm", IMAGE, "true"]
    timed(berth, 2, env)
    results.append(("berth run --rm (python -m engine)", timed(berth, n, env)))
    script = Path(sys.executable).parent / "berth"
    if script.exists():
        results.append(("berth run --rm (console script)", timed([str(script), *berth[3:]], n, env)))
    results.append(("python -c pass (interpreter floor)", timed([sys.executable, "-c", "pass"], n)))

    tar = rootfs_tar(bundle, work) if with_docker or with_podman else None
    if with_docker and shutil.which("dockerd") and tar:
        dockerd = Dockerd(work)
        try:
            subprocess.run(dockerd.cli("import", str(tar), "berth-bench:latest"), check=True, capture_output=True)
            docker = dockerd.cli("run", "--rm", "--network", "none", "berth-bench:latest", "true")
            timed(docker, 1)
            results.append(("docker run --rm", timed(docker, max(5, n // 3))))
        finally:
            dockerd.stop()
    if with_podman and shutil.which("podman") and tar:
        podman = ["podman", "--root", str(work / "podman/root"), "--runroot", str(work / "podman/run"),
                  "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        imported = subprocess.run([*podman, "import", str(tar), "berth-bench:latest"], capture_output=True, text=True)
        if imported.returncode != 0:
            results.append(("podman run --rm", imported.stderr.strip().splitlines()[-1]))
        else:
            run = [*podman, "run", "--rm", "--network", "none", "berth-bench:latest", "true"]
            results.append(("podman run --rm", timed(run, max(5, n // 3))))

    reference = results[0][1]
    ref = statistics.median(reference) if not isinstance(reference, str) else None
    return [summary(name, timings, ref) for name, timings in results]


def timed_ids(argv: list[str], n: int, counter: object) -> Timings | str:
    """Like `timed`, for runtimes that need a fresh container id on every run."""
    out: Timings = []
    for _ in range(n):
        result = timed([*argv, f"bench{next(counter)}"], 1)  # type: ignore[call-overload]
        if isinstance(result, str):
            return result
        out.extend(result)
    return out


def bench_pull(work: Path, rounds: int, with_docker: bool) -> list[str]:
    """Pull + first run of a ~50 MB image from a loopback berth registry: berth against docker."""
    from client.copy import copy_image
    from client.location import Location, Options, open_source, open_target
    from registry.oci.reference import parse_reference
    from tests.conftest import RegistryProcess

    registry = RegistryProcess(work / "registry-data")
    lines = []
    try:
        source_root = work / "source"
        chunks = [(busybox_base().bytes(), "gzip")]
        for i in range(4):
            chunks.append((TarBuilder().file(f"data/blob{i}", os.urandom(12_500_000)).bytes(), "gzip"))
        write_image(source_root, "bench/big:1", chunks, {"Cmd": ["true"]})
        reference = f"127.0.0.1:{registry.port}/bench/big:1"
        copy_image(open_source(Location("oci", path=source_root / "images", name="docker.io/bench/big:1"), Options()),
                   open_target(Location("docker", parse_reference(reference)), Options()))
        berth_times: Timings = []
        for i in range(rounds):
            env = {**os.environ, "BERTH_ROOT": str(work / f"pull-root-{i}")}
            result = timed([sys.executable, "-m", "engine", "run", "--rm", "-q", reference, "true"], 1, env)
            if isinstance(result, str):
                return [summary("berth run (pull + first run)", result, None)]
            berth_times.extend(result)
        lines.append(summary("berth run, empty store (~50 MB)", berth_times, None))
        if with_docker and shutil.which("dockerd"):
            dockerd = Dockerd(work / "pull-docker")
            try:
                docker_times: Timings = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    subprocess.run(dockerd.cli("pull", "-q", reference), check=True, capture_output=True)
                    subprocess.run(dockerd.cli("run", "--rm", "--network", "none", reference, "true"), check=True)
                    docker_times.append(time.perf_counter() - started)
                    subprocess.run(dockerd.cli("rmi", reference), check=True, capture_output=True)
                lines.append(summary("docker pull + docker run (~50 MB)", docker_times, None))
            finally:
                dockerd.stop()
    finally:
        registry.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="runs per runtime (docker and podman: n/3)")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument("--no-pull", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="pull rounds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the engine benchmark needs root (namespaces, overlay mounts, cgroups)")
    with tempfile.TemporaryDirectory(prefix="bench-engine-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        print(f"start-to-exit of `true`, {args.n} runs each, {os.cpu_count()} cores")
        for line in bench_start(args.n, work, not args.no_docker, not args.no_podman):
            print(line)
        if not args.no_pull:
            print(f"\npull + first run, {args.rounds} rounds, loopback berth registry")
            for line in bench_pull(work, args.rounds, not args.no_docker):
                print(line)


if __name__ == "__main__":
    main()
