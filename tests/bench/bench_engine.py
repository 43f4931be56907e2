"""Benchmark: `berth run --rm IMAGE true` start-to-exit latency beside runc, crun, docker and podman.

Run as root: python tests/bench/bench_engine.py [-n 30] [--no-docker] [--no-podman] [--no-pull]

Every runtime runs `true` from the same busybox root filesystem with no network (and berth
once more on its default bridge network), and each figure is the wall-clock time of the whole
command (process start to exit), as a user would see it. Medians, minimums and 90th
percentiles in milliseconds, and ratios to runc, all from this one run. With --pull it also
times pull + first run of a ~50 MB image from a berth registry on a loopback port: `berth run`
into an empty store against `docker pull` + `docker run`.

The whole benchmark runs in a network namespace of its own (made at start), so berth's bridge and
NAT rules never touch the machine's network. `--throughput MIB` sends MIB through a published
port and straight to the container's address, host side to a busybox `nc -l` in the container.
Issue 13's targets are checked at the end of each part: the bridge's start over `--network none`
(paired per round, so a loaded machine shifts both alike), the bridge's own work in-process
(join + leave, wall and CPU time), and the published port against direct and against docker's.
The seccomp filter's share shows twice: `berth run` beside the same run with
`seccomp=unconfined`, and the in-process cost of compiling docker's default profile (first
run on a machine) and of reading the cached program (every run).

dockerd is started here, private to the run (its own data root, exec root and socket;
its bridge and iptables rules inside the benchmark's network namespace); crun and podman
are tried and their refusals reported: crun refuses hybrid cgroup v1/v2 machines, and
podman (through runc) could not set the nofile rlimit without CAP_SYS_RESOURCE in the
sandbox these figures were first taken in.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.runtime.rootfs import merge_layer  # noqa: E402
from engine.service.images import ImageStore, ensure_layers  # noqa: E402
from engine.service.paths import Paths  # noqa: E402
from tests.bench.installed import install, interpreter  # noqa: E402
from tests.engine.images import IMAGE, TarBuilder, busybox_base, standard_image, write_image  # noqa: E402

Timings = list[float]


class Runtime:
    """One way of running `true`: a command line (a fresh container id each time, if needed)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        needs_id: bool = False,
        runs: int | None = None,
    ) -> None:
        self.name, self.argv, self.env, self.needs_id, self.runs = name, argv, env, needs_id, runs
        self.timings: Timings = []
        self.error: str | None = None
        self._ids = 0

    def once(self) -> None:
        if self.error is not None:
            return
        self._ids += 1
        argv = [*self.argv, f"bench{self._ids}"] if self.needs_id else self.argv
        started = time.perf_counter()
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            self.error = lines[-1] if lines else f"exit {result.returncode}"
            return
        self.timings.append(elapsed)


def interleaved(runtimes: list[Runtime], n: int) -> None:
    """Round-robin: each round runs every runtime once, so load from elsewhere hits them alike."""
    for runtime in runtimes:
        runtime.once()  # warm-up: caches, bytecode, unpacked layers
        runtime.timings.clear()
    for round_number in range(n):
        for runtime in runtimes:
            if runtime.runs is None or round_number < runtime.runs:
                runtime.once()


def summary(runtime: Runtime, reference: float | None) -> str:
    if runtime.error is not None:
        return f"{runtime.name:<36} refused: {runtime.error[:150]}"
    timings = runtime.timings
    med = statistics.median(timings)
    p90 = sorted(timings)[int(0.9 * (len(timings) - 1))]
    ratio = f"{med / reference:5.2f}x" if reference else "     -"
    return (
        f"{runtime.name:<36} median {med * 1000:7.1f} ms   min {min(timings) * 1000:7.1f}   "
        f"p90 {p90 * 1000:7.1f}   {ratio}   (n={len(timings)})"
    )


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
    """A private dockerd: its own data root, exec root and socket; its bridge and iptables rules live in
    the benchmark's own network namespace."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True)
        self.sock = f"unix://{self.dir}/sock"
        self.log = open(self.dir / "log", "wb")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--data-root",
                str(self.dir / "data"),
                "--exec-root",
                str(self.dir / "exec"),
                "--pidfile",
                str(self.dir / "pid"),
                "-H",
                self.sock,
            ],
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
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
    # The bytecode cache on, as on any installed system (this sandbox sets PYTHONDONTWRITEBYTECODE).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"BERTH_ROOT": str(berth_root)}
    store = ImageStore(Paths(berth_root))
    bundle = make_bundle(work, ensure_layers(store, store.resolve(IMAGE)))
    runc = Runtime(
        "runc run", ["runc", "--root", str(work / "runc-state"), "run", "--bundle", str(bundle)], needs_id=True
    )
    runtimes = [runc]
    if shutil.which("crun"):
        runtimes.append(
            Runtime(
                "crun run", ["crun", "--root", str(work / "crun-state"), "run", "--bundle", str(bundle)], needs_id=True
            )
        )
    berth = [sys.executable, "-m", "engine", "run", "--rm", "--network", "none", IMAGE, "true"]
    # Judged as installed (see installed.py); an empty PYTHONPATH counts as unset, so it imports its own copy.
    installed = install(work / "installed")
    installed_env = env | {"PYTHONPATH": ""}
    berth_run = Runtime("berth run --rm (installed)", [str(installed), *berth[3:]], installed_env)
    runtimes.append(berth_run)
    unbridged = Runtime("berth run --rm (python -m engine, dev)", berth, env)
    runtimes.append(unbridged)
    bridged = Runtime("berth run --rm --network bridge", [*berth[:6], "bridge", *berth[7:]], env)
    runtimes.append(bridged)
    unconfined = [*berth[:5], "--security-opt", "seccomp=unconfined", *berth[5:]]
    runtimes.append(Runtime("berth run --rm, seccomp=unconfined", unconfined, env))
    script = Path(sys.executable).parent / "berth"
    if script.exists():
        runtimes.append(Runtime("berth run --rm (console script, dev)", [str(script), *berth[3:]], env))
    # The same command without site's .pth hooks (this sandbox's certifi patch, the editable-install finder):
    # what an ordinary installed berth pays for interpreter start-up.
    import site

    bare_env = env | {"PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()])}
    runtimes.append(Runtime("berth run --rm (python -S, no .pth)", [sys.executable, "-S", *berth[1:]], bare_env))
    floor = Runtime("python -c pass (installed's floor)", [str(interpreter(installed)), "-c", "pass"], installed_env)
    runtimes.append(floor)
    runtimes.append(Runtime("python -c pass (dev floor)", [sys.executable, "-c", "pass"], env))
    runtimes.append(Runtime("python -S -c pass", [sys.executable, "-S", "-c", "pass"], env))
    runtimes.append(Runtime("python -c 'import click' (CLI floor)", [sys.executable, "-c", "import click"], env))

    dockerd = None
    docker_pair: tuple[Runtime, Runtime] | None = None
    tar = rootfs_tar(bundle, work) if with_docker or with_podman else None
    if with_docker and shutil.which("dockerd") and tar:
        dockerd = Dockerd(work / "docker")
        subprocess.run(dockerd.cli("import", str(tar), "berth-bench:latest"), check=True, capture_output=True)
        docker = [
            Runtime(
                f"docker run --rm{label}",
                dockerd.cli("run", "--rm", "--network", network, "berth-bench:latest", "true"),
                runs=max(5, n // 3),
            )
            for label, network in (("", "none"), (" --network bridge", "bridge"))
        ]
        docker_pair = (docker[0], docker[1])
        runtimes.extend(docker)
    if with_podman and shutil.which("podman") and tar:
        podman = [
            "podman",
            "--root",
            str(work / "podman/root"),
            "--runroot",
            str(work / "podman/run"),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]
        imported = subprocess.run([*podman, "import", str(tar), "berth-bench:latest"], capture_output=True, text=True)
        # --ulimit host: podman's default nofile limit needs CAP_SYS_RESOURCE, which this sandbox lacks.
        podman_run = Runtime(
            "podman run --rm",
            [*podman, "run", "--rm", "--network", "none", "--ulimit", "host", "berth-bench:latest", "true"],
            runs=max(5, n // 3),
        )
        if imported.returncode != 0:
            podman_run.error = (imported.stderr.strip().splitlines() or ["import failed"])[-1]
        runtimes.append(podman_run)
    try:
        interleaved(runtimes, n)
    finally:
        if dockerd is not None:
            dockerd.stop()
    reference = statistics.median(runc.timings) if runc.timings else None
    lines = [summary(runtime, reference) for runtime in runtimes]
    if reference and berth_run.timings:
        ratio = statistics.median(berth_run.timings) / reference
        verdict = "PASS" if ratio <= 3 else "FAIL"
        lines.append(f"issue 12 target, {berth_run.name} within 3x runc: {ratio:.2f}x {verdict}")
        if floor.timings:
            # Where the time goes: the interpreter's own start (site and its .pth hooks included), then berth's.
            start = statistics.median(floor.timings)
            ours = statistics.median(berth_run.timings) - start
            lines.append(
                f"  of which the interpreter starting: {start * 1000:.1f} ms; berth's imports and work: "
                f"{ours * 1000:.1f} ms; 3x runc leaves berth {(3 * reference - start) * 1000:.1f} ms"
            )
    added = bridge_cost(unbridged, bridged)
    if added is not None:
        verdict = "PASS" if added <= 30 else "FAIL"
        lines.append(f"issue 13 target, bridge start at most 30 ms over --network none: {added:+.1f} ms {verdict}")
        lines.append("  (median of per-round differences, both `python -m engine`: rounds share the machine's load)")
    docker_added = bridge_cost(*docker_pair) if docker_pair else None
    if docker_added is not None:
        lines.append(f"  docker's bridge over its --network none, the same way: {docker_added:+.1f} ms")
    if not shutil.which("crun"):
        lines.insert(1, f"{'crun run':<36} not installed")
    return lines


def bridge_cost(without: Runtime, bridged: Runtime) -> float | None:
    """What a bridge adds to a start, in ms: runs are interleaved, so each round's two runs are paired, and
    the median of their differences is steadier on a loaded machine than a difference of two medians."""
    if without.error or bridged.error or not without.timings or not bridged.timings:
        return None
    return statistics.median(b - a for a, b in zip(without.timings, bridged.timings, strict=True)) * 1000


def bench_plumbing(work: Path, n: int) -> list[str]:
    """The bridge's own work in-process, without a container: join (lease, veth into a fresh namespace,
    address, route, /etc/hosts; with -p the port's socket and nft element) and leave (all of it gone).

    Here leave deletes the veth itself, through pyroute2 (imported once, before the timed runs); after a
    real run the kernel has usually removed it with the container's namespace, and leave only finds it gone."""
    from engine.service import attachments, ports
    from engine.service.networks import Networks

    networks = Networks(Paths(work / "berth").networks)  # bench_start's store: its default network is there
    hosts = work / "plumbing-hosts"
    lines = []
    for label, publish in (("bridge", []), ("bridge -p 15100:80", ["15100:80"])):
        joins, leaves, cpu = [], [], []
        for number in range(n + 1):
            request = attachments.Request(
                "bridge",
                "plumbing",
                "plumbing",
                str(hosts),
                publish=[p for t in publish for p in ports.parse_publish(t)],
            )
            started, started_cpu = time.perf_counter(), time.process_time()
            joined = attachments.join(networks, f"{number:064x}", request)
            joined.release_namespace()
            for sock in joined.sockets:
                sock.close()
            middle = time.perf_counter()
            attachments.leave(networks, f"{number:064x}")
            if number:  # the first imports pyroute2 (and nft's subprocess)
                joins.append((middle - started) * 1000)
                leaves.append((time.perf_counter() - middle) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
        lines.append(
            f"{label + ': join, leave':<36} median {statistics.median(joins):5.1f} + {statistics.median(leaves):5.1f}"
            f" ms   CPU {statistics.median(cpu):4.1f} ms   (n={n}, in-process, no container)"
        )
    return lines


def bench_seccomp(work: Path, n: int) -> list[str]:
    """What the default seccomp profile costs `berth run` in-process: compiled once, then read back."""
    from engine.service import seccomp

    def timed(root: Path) -> float:
        start = time.perf_counter()
        seccomp.program(Paths(root), "")
        return (time.perf_counter() - start) * 1000

    cold = [timed(work / f"seccomp-cold-{i}") for i in range(3)]
    warm = [timed(work / "seccomp-cold-0") for _ in range(n)]
    return [
        f"{'seccomp: compile default (first run)':<36} median {statistics.median(cold):7.1f} ms   "
        f"first {cold[0]:.1f} (imports pyseccomp)",
        f"{'seccomp: cached program (each run)':<36} median {statistics.median(warm):7.2f} ms",
    ]


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
        copy_image(
            open_source(Location("oci", path=source_root / "images", name="docker.io/bench/big:1"), Options()),
            open_target(Location("docker", parse_reference(reference)), Options()),
        )
        berth = Runtime("berth run, empty store (~50 MB)", [])
        for i in range(rounds):
            berth.argv = [sys.executable, "-m", "engine", "run", "--rm", "-q", reference, "true"]
            berth.env = {**os.environ, "BERTH_ROOT": str(work / f"pull-root-{i}")}
            berth.once()
        lines.append(summary(berth, None))
        if with_docker and shutil.which("dockerd"):
            dockerd = Dockerd(work / "pull-docker")
            try:
                docker = Runtime("docker pull + docker run (~50 MB)", [])
                for _ in range(rounds):
                    started = time.perf_counter()
                    subprocess.run(dockerd.cli("pull", "-q", reference), check=True, capture_output=True)
                    subprocess.run(dockerd.cli("run", "--rm", "--network", "none", reference, "true"), check=True)
                    docker.timings.append(time.perf_counter() - started)
                    subprocess.run(dockerd.cli("rmi", reference), check=True, capture_output=True)
                lines.append(summary(docker, berth.timings and statistics.median(berth.timings) or None))
            finally:
                dockerd.stop()
    finally:
        registry.stop()
    return lines


SEND = """import socket, sys, time
size, host, port = int(sys.argv[1]) << 20, sys.argv[2], int(sys.argv[3])
block = memoryview(bytes(1 << 20))
for _ in range(100):
    try:
        sock = socket.create_connection((host, port))
        break
    except OSError:
        time.sleep(0.05)
started = time.perf_counter()
for _ in range(size >> 20):
    sock.sendall(block)
sock.shutdown(socket.SHUT_WR)
sock.recv(1)
print(time.perf_counter() - started)
"""


def _send(mib: int, host: str, port: str) -> float:
    """Seconds to push `mib` MiB to host:port (a busybox `nc -l` that exits after one connection)."""
    sent = subprocess.run([sys.executable, "-c", SEND, str(mib), host, port], capture_output=True, text=True)
    return float(sent.stdout)


def _rate_line(label: str, mib: int, seconds: list[float]) -> str:
    rates = [mib / s for s in seconds]
    return (
        f"{label:<36} {statistics.median(rates):8.0f} MiB/s   median of {len(rates)} ({mib} MiB each; "
        f"{min(rates):.0f}-{max(rates):.0f})"
    )


def bench_throughput(work: Path, mib: int, with_docker: bool, rounds: int = 3) -> list[str]:
    """Host -> container through a published port, straight to the container's address, and
    through docker's published port (its userland proxy on loopback).

    Berth's two transfers alternate, `rounds` times, and the 80% target is judged on the median of
    each round's ratio, so the machine's load moves both sides of a ratio alike."""
    env = {**os.environ, "BERTH_ROOT": str(work / "berth")}
    berth = [sys.executable, "-m", "engine"]
    published: list[float] = []
    direct: list[float] = []
    for _ in range(rounds):
        for times, publish in ((published, True), (direct, False)):
            argv = [*berth, "run", "-d", *(["-p", "15001:5001"] if publish else []), IMAGE, "nc", "-l", "-p", "5001"]
            box = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.strip()
            try:
                inspect = subprocess.run(
                    [*berth, "network", "inspect", "bridge"], env=env, capture_output=True, text=True
                )
                address = json.loads(inspect.stdout)[0]["Containers"][box]["IPv4Address"].split("/")[0]
                times.append(_send(mib, *(("127.0.0.1", "15001") if publish else (address, "5001"))))
            finally:
                subprocess.run([*berth, "rm", "-f", box], env=env, capture_output=True)
    lines = [
        _rate_line("berth, published port 127.0.0.1", mib, published),
        _rate_line("berth, container address", mib, direct),
    ]
    docker: list[float] = []
    tar = work / "rootfs.tar"  # written by bench_start for docker
    if with_docker and shutil.which("dockerd") and tar.exists():
        dockerd = Dockerd(work / "docker-throughput")
        try:
            subprocess.run(dockerd.cli("import", str(tar), "berth-bench:latest"), check=True, capture_output=True)
            run = dockerd.cli("run", "-d", "-p", "15002:5001", "berth-bench:latest", "nc", "-l", "-p", "5001")
            subprocess.run(run, check=True, capture_output=True)
            docker.append(_send(mib, "127.0.0.1", "15002"))
            lines.append(_rate_line("docker, published port 127.0.0.1", mib, docker))
        finally:
            dockerd.stop()
    ratio = statistics.median(d / p for p, d in zip(published, direct, strict=True))
    lines.append(f"issue 13 target, published port at least 80% of direct: {ratio:.0%} {_verdict(ratio >= 0.8)}")
    if docker:
        ratio = docker[0] / statistics.median(published)
        lines.append(f"issue 13 target, published port at least docker's: {ratio:.2f}x {_verdict(ratio >= 1)}")
    return lines


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="runs per runtime (docker and podman: n/3)")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument("--no-pull", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="pull rounds")
    parser.add_argument("--throughput", type=int, default=1024, metavar="MIB", help="MiB per transfer (0: skip)")
    parser.add_argument("--no-api", action="store_true", help="skip the engine API (docker CLI -> berth vs dockerd)")
    parser.add_argument("--only-api", action="store_true", help="only the engine API figures")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the engine benchmark needs root (namespaces, overlay mounts, cgroups)")
    from engine.runtime import netns, syscalls

    syscalls.unshare(syscalls.CLONE_NEWNET)  # our own network namespace: bridges and NAT stay in it
    netns.bring_up("lo")
    with tempfile.TemporaryDirectory(prefix="bench-engine-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        try:
            if not args.no_api:
                from tests.bench.engine_api import bench_api

                print(f"docker CLI through berth's engine API and through dockerd, {args.n} runs (ratio: to dockerd)")
                for line in bench_api(work, args.n, not args.no_docker):
                    print(line)
                if args.only_api:
                    return
            print(f"start-to-exit of `true`, {args.n} runs each, {os.cpu_count()} cores")
            for line in bench_start(args.n, work, not args.no_docker, not args.no_podman):
                print(line)
            for line in bench_seccomp(work, args.n):
                print(line)
            for line in bench_plumbing(work, args.n):
                print(line)
            if args.throughput:
                print(f"\nthroughput host -> container, {args.throughput} MiB through python's sendall")
                for line in bench_throughput(work, args.throughput, not args.no_docker):
                    print(line)
            if not args.no_pull:
                print(f"\npull + first run, {args.rounds} rounds, loopback berth registry (ratio: to berth)")
                for line in bench_pull(work, args.rounds, not args.no_docker):
                    print(line)
        finally:
            unmount_under(work)


def unmount_under(work: Path) -> None:
    """Detach whatever podman or dockerd left mounted in the scratch directory."""
    from engine.runtime import syscalls

    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(str(work))]
    for point in sorted(points, key=len, reverse=True):
        try:
            syscalls.umount2(point, syscalls.MNT_DETACH)
        except OSError:
            pass


if __name__ == "__main__":
    main()
