"""Benchmark: `berth push` / `berth pull` beside `skopeo copy` (and docker), and berth's start-up.

Issue 12's targets, each printed with its verdict: `berth --version` under 60 ms; `berth pull`
of an image already present under 100 ms; `berth pull` and `berth push` of a 5-layer ~300 MiB
image at least as fast as `skopeo copy` as whole commands, and of a 4-layer ~50 MB one within
1.2x. `berth` rows are the real command (a new Python process each time); `library` rows are
the same copy called inside this process, which shows the transfer apart from start-up.

Run: python tests/bench/bench_client.py [--registry distribution|berth|both] [--rounds 3]
     [--sizes 50,300] [--docker]

Every round pushes to a new repository (so nothing is skipped) and pulls into an empty
store/directory, then pulls again with the image present (skopeo: into the same directory).
The figures are medians in seconds and ratios to skopeo from this one run.

The command is timed as installed: pip compiles an installed package's bytecode, but an
editable install under PYTHONDONTWRITEBYTECODE=1 (as on these machines) would compile our
modules from source on every run (about 20 ms), so the bench compiles them first.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from client.layout import Layout  # noqa: E402
from tests.bench.installed import install, interpreter  # noqa: E402
from tests.client.images import build_image, random_bytes  # noqa: E402
from tests.client.servers import Distribution  # noqa: E402
from tests.conftest import RegistryProcess, dockerd_command  # noqa: E402

SIZES = {"50": (4, 12_500_000), "300": (5, 300 * 1024 * 1024 // 5)}
"""Preset: (layers, bytes per layer)."""
TARGETS = {"50": 1.2, "300": 1.0}
"""Issue 12: berth's whole command within this ratio of skopeo's."""
VERSION_TARGET = 0.060
PRESENT_TARGET = 0.100


def build(layout_dir: Path, layers: int, layer_bytes: int) -> None:
    """An image of incompressible data in an OCI layout, tagged `bench`."""
    files = [{f"data/{i}.bin": random_bytes(layer_bytes, i)} for i in range(layers)]
    build_image(Layout.open(layout_dir, create=True), "bench", files)


def run(*command: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")


DEVELOPMENT = [sys.executable, "-c", "from engine.cli import main; main()"]
"""`berth` as the development install runs it (its console script's two lines)."""
BERTH = DEVELOPMENT
"""The `berth` the copies run: main() puts the installed console script here (see installed.py)."""
INSTALLED_ENV = {"PYTHONPATH": ""}
"""An empty PYTHONPATH counts as unset, so the installed berth imports its own copy, not this tree."""


def berth(*args: str, env: dict[str, str]) -> None:
    """The real `berth` command, as its console script runs it."""
    run(*BERTH, *args, env=env | (INSTALLED_ENV if BERTH is not DEVELOPMENT else {}))


Server = Distribution | RegistryProcess


def start(kind: str, root: Path) -> tuple[Server, str]:
    if kind == "distribution":
        server: Server = Distribution(root)
        return server, server.host
    ours = RegistryProcess(root, env={"BERTH_LOG_LEVEL": "error"}, args=("--log-level", "error"))
    return ours, f"127.0.0.1:{ours.port}"


def bench(kind: str, oci: Path, work: Path, rounds: int, docker: str | None) -> dict[str, list[float]]:
    """Each timed operation gets a fresh registry, so no tool profits from blobs another sent."""
    env = {"BERTH_ROOT": str(work / "berth"), "DOCKER_CONFIG": str(work / "docker-config"), "PYTHONPATH": str(ROOT)}
    denv = {"DOCKER_HOST": f"unix://{docker}"} if docker else {}
    skopeo = ["skopeo", "--insecure-policy"]
    results: dict[str, list[float]] = {}
    for i in range(rounds):
        shutil.rmtree(work / "berth", ignore_errors=True)
        for tool in ("berth", "library", "skopeo", "docker"):
            if tool == "docker" and not docker:
                continue
            server, host = start(kind, work / f"{tool}-{i}")
            try:
                ref = f"{host}/bench/app:v1"
                if tool == "library":
                    push_s, pull_s = _library(oci, ref, work / f"library-{i}")
                    results.setdefault("library push", []).append(push_s)
                    results.setdefault("library pull", []).append(pull_s)
                    continue
                if tool == "berth":
                    berth("copy", f"oci:{oci}:bench", f"local:{ref}", "-q", env=env)
                    push: list[str] = ["berth", "push", ref, "-q"]
                elif tool == "skopeo":
                    push = [*skopeo, "copy", "--dest-tls-verify=false", f"oci:{oci}:bench", f"docker://{ref}"]
                else:
                    archive = work / f"docker-{i}.tar"
                    berth("copy", f"oci:{oci}:bench", f"docker-archive:{archive}:{ref}", "-q", env=env)
                    run("docker", "load", "-i", str(archive), env=denv)
                    push = ["docker", "push", ref]
                results.setdefault(f"{tool} push", []).append(_time(push, env if tool == "berth" else denv))
                if tool == "berth":
                    shutil.rmtree(work / "berth" / "images")
                    pull: list[str] = ["berth", "pull", ref, "-q"]
                elif tool == "skopeo":
                    pull = [*skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{work / f'out-{i}'}:v1"]
                else:
                    ids = subprocess.run(
                        ["docker", "image", "ls", "-aq"], capture_output=True, text=True, env={**os.environ, **denv}
                    ).stdout.split()
                    run("docker", "rmi", "-f", *set(ids), env=denv)
                    pull = ["docker", "pull", ref]
                results.setdefault(f"{tool} pull", []).append(_time(pull, env if tool == "berth" else denv))
                if tool in ("berth", "skopeo"):
                    wall, cpu = _timed(pull, env)
                    results.setdefault(f"{tool} present", []).append(wall)
                    results.setdefault(f"{tool} present cpu", []).append(cpu)
            finally:
                server.stop()
                for leftover in (f"{tool}-{i}", f"out-{i}", f"library-{i}", f"docker-{i}.tar"):
                    path = work / leftover
                    path.unlink() if path.is_file() else shutil.rmtree(path, ignore_errors=True)
    return results


def _library(oci: Path, ref: str, out: Path) -> tuple[float, float]:
    """berth's copy called in this process: the transfer alone, without interpreter start-up."""
    from client.copy import copy_image
    from client.location import Options, open_source, open_target, parse_location

    options = Options()
    timings = []
    for source, target in ((f"oci:{oci}:bench", ref), (ref, f"oci:{out}:v1")):
        src, dst = open_source(parse_location(source), options), open_target(parse_location(target), options)
        started = time.perf_counter()
        copy_image(src, dst, jobs=options.jobs)
        timings.append(time.perf_counter() - started)
        src.close()
        dst.close()
    return timings[0], timings[1]


def _time(command: list[str], env: dict[str, str]) -> float:
    return _timed(command, env)[0]


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds, and the CPU seconds (user + system) of the command's process.

    On a loaded machine the wall time of a Python start-up swells far more than its CPU time
    (it waits for the scheduler and for the disk between reads of its modules), so both are shown.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    if command[0] == "berth":
        berth(*command[1:], env=env)
    else:
        run(*command, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_startup(rounds: int, script: Path) -> dict[str, list[float]]:
    """`berth --version` beside the bare interpreter, installed and as the development install runs
    it, interleaved so load hits all alike."""
    dev = {"PYTHONPATH": str(ROOT)}
    commands = {
        "python -c pass": ([str(interpreter(script)), "-c", "pass"], INSTALLED_ENV),
        "berth --version": ([str(script), "--version"], INSTALLED_ENV),
        "python -c pass (dev)": ([sys.executable, "-c", "pass"], dev),
        "berth --version (dev)": ([*DEVELOPMENT, "--version"], dev),
        "python -c 'import click'": ([sys.executable, "-c", "import click"], dev),
    }
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, (command, env) in commands.items():
            wall, cpu = _timed(command, env)
            results.setdefault(name, []).append(wall)
            results.setdefault(f"{name} cpu", []).append(cpu)
    return results


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(kind: str, size: str, mb: float, results: dict[str, float]) -> None:
    print(f"\nregistry: {kind}, image {size} ({mb:.1f} MB)")
    for op in ("push", "pull", "present"):
        base = results[f"skopeo {op}"]
        for tool in ("berth", "library", "skopeo", "docker"):
            if f"{tool} {op}" not in results:
                continue
            value = results[f"{tool} {op}"]
            label = "pull (present)" if op == "present" else op
            line = f"  {tool:>7} {label:<14} {value:6.3f} s  ({value / base:4.2f}x skopeo"
            line += f", {mb / value:6.1f} MB/s)" if op != "present" else ")"
            if tool == "berth" and op != "present":
                line += f"  target <= {TARGETS[size]}x: {verdict(value / base <= TARGETS[size])}"
            if op == "present":
                line += f"  cpu {results[f'{tool} present cpu'] * 1000:.0f} ms"
            if tool == "berth" and op == "present":
                line += f"  target < {PRESENT_TARGET * 1000:.0f} ms: {verdict(value < PRESENT_TARGET)}"
            print(line)


def start_dockerd(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = root / "docker.sock"
    process = subprocess.Popen(
        dockerd_command(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while (
        subprocess.run(
            ["docker", "version"], capture_output=True, env={**os.environ, "DOCKER_HOST": f"unix://{sock}"}
        ).returncode
        != 0
    ):
        if time.monotonic() > deadline:
            raise SystemExit("dockerd did not start")
        time.sleep(0.2)
    return process, str(sock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", choices=["distribution", "berth", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="50,300", help="image presets to run: 50 (4 x 12.5 MB), 300 (5 x 60 MiB)")
    parser.add_argument("--docker", action="store_true", help="also time docker pull/push (starts dockerd)")
    args = parser.parse_args()
    global BERTH
    run(sys.executable, "-m", "compileall", "-q", *(str(ROOT / name) for name in ("client", "engine", "registry")))
    installed = Path(tempfile.mkdtemp(prefix="berth-installed-"))
    try:
        BERTH = [str(install(installed))]
        measure(args, BERTH[0])
    finally:
        shutil.rmtree(installed, ignore_errors=True)


def measure(args: argparse.Namespace, script: str) -> None:
    timings = bench_startup(max(10, args.rounds * 4), Path(script))
    started = {name: statistics.median(values) for name, values in timings.items()}
    floor, floor_cpu = started["python -c pass"], started["python -c pass cpu"]
    print("start-up, medians (wall, and CPU of the process); berth and python as installed in a venv, (dev): the")
    print("development install (its editable finder and this sandbox's certifi hook run at every start):")
    for name, value in started.items():
        if not name.endswith(" cpu"):
            cpu = started[f"{name} cpu"]
            print(
                f"  {name:<26} {value * 1000:6.1f} ms ({value / floor:4.2f}x python -c pass)"
                f"  cpu {cpu * 1000:6.1f} ms ({cpu / floor_cpu:4.2f}x)"
            )
    version = started["berth --version"]
    print(f"  berth --version target < {VERSION_TARGET * 1000:.0f} ms: {verdict(version < VERSION_TARGET)}")
    with tempfile.TemporaryDirectory(prefix="berth-client-bench-", dir="/var/tmp") as tmp:
        dockerd = start_dockerd(Path(tmp) / "docker") if args.docker else None
        try:
            for size in args.sizes.split(","):
                work = Path(tmp) / f"size-{size}"
                layers, layer_bytes = SIZES[size]
                build(work / "oci", layers, layer_bytes)
                mb = sum(p.stat().st_size for p in (work / "oci" / "blobs" / "sha256").iterdir()) / 1e6
                print(f"\nimage {size}: {layers} layers, {mb:.1f} MB compressed; median of {args.rounds} rounds")
                kinds = ["distribution", "berth"] if args.registry == "both" else [args.registry]
                for kind in kinds:
                    times = bench(kind, work / "oci", work / kind, args.rounds, dockerd[1] if dockerd else None)
                    report(kind, size, mb, {name: statistics.median(values) for name, values in times.items()})
                shutil.rmtree(work, ignore_errors=True)
        finally:
            if dockerd:
                dockerd[0].terminate()
                dockerd[0].wait(30)


if __name__ == "__main__":
    main()
