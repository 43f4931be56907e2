"""The engine API's part of bench_engine.py: the docker CLI through Berth's socket beside dockerd.

- `docker run --rm --network none IMAGE true`, start to exit, through each engine;
- `docker ps -a` with 100 containers and `docker images` with 100 distinct images (plus the base).

Both engines are private to the run (berth: `berth engine serve` on a scratch BERTH_ROOT; dockerd:
bench_engine's Dockerd), in the benchmark's own network namespace; timings interleave rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.bench_engine import Dockerd, Runtime, interleaved, summary
from tests.engine.images import busybox_base, write_image

IMAGE = "berth-bench"
COUNT = 100


def _serve(work: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    root = work / "api-root"
    write_image(root, f"docker.io/library/{IMAGE}:latest", [(busybox_base().bytes(), "gzip")])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"BERTH_ROOT": str(root)}
    sock = work / "engine.sock"
    log = open(work / "serve.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "engine", "serve", "--socket", str(sock)], stdout=log, stderr=log, env=env
    )
    deadline = time.monotonic() + 60
    while subprocess.run(["docker", "-H", f"unix://{sock}", "version"], capture_output=True).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"berth engine serve did not start; see {work / 'serve.log'}")
        time.sleep(0.1)
    return process, f"unix://{sock}", env


def _containers(cli: list[str], env: dict[str, str] | None) -> None:
    for _ in range(COUNT):
        subprocess.run([*cli, "create", "--network", "none", IMAGE, "true"], capture_output=True, check=True, env=env)


def _berth_images(root: Path) -> None:
    """COUNT distinct images (one label apart) sharing the busybox layer, as pulls would store them."""
    layer = busybox_base().bytes()
    for i in range(COUNT):
        write_image(root, f"docker.io/bench/image{i}:1", [(layer, "gzip")], {"Labels": {"n": str(i)}})


def _docker_images(docker: Dockerd) -> None:
    tar = busybox_base().bytes()
    for i in range(COUNT):
        argv = docker.cli("import", "--change", f"LABEL n={i}", "-", f"bench/image{i}:1")
        subprocess.run(argv, input=tar, capture_output=True, check=True)


def bench_api(work: Path, n: int, with_docker: bool) -> list[str]:
    process, sock, env = _serve(work)
    docker: Dockerd | None = None
    try:
        berth_cli = ["docker", "-H", sock]
        runs = [
            Runtime("docker run --rm -> berth", [*berth_cli, "run", "--rm", "--network", "none", IMAGE, "true"], env)
        ]
        if with_docker:
            docker = Dockerd(work / "api-dockerd")
            tar = busybox_base().bytes()
            subprocess.run(docker.cli("import", "-", IMAGE), input=tar, capture_output=True, check=True)
            runs.append(
                Runtime("docker run --rm -> dockerd", docker.cli("run", "--rm", "--network", "none", IMAGE, "true"))
            )
        interleaved(runs, n)
        reference = statistics_median(runs[-1]) if docker is not None else None
        lines = [summary(r, reference) for r in runs]
        _containers(berth_cli, env)
        _berth_images(Path(env["BERTH_ROOT"]))
        listings = [Runtime("docker ps -a (100) -> berth", [*berth_cli, "ps", "-a"], env)]
        listings.append(Runtime("docker images (101) -> berth", [*berth_cli, "images"], env))
        if docker is not None:
            _containers(docker.cli(), None)
            _docker_images(docker)
            listings.insert(1, Runtime("docker ps -a (100) -> dockerd", docker.cli("ps", "-a")))
            listings.append(Runtime("docker images (101) -> dockerd", docker.cli("images")))
        interleaved(listings, n)
        for i in range(0, len(listings), 2 if docker is not None else 1):
            pair = listings[i : i + 2]
            reference = statistics_median(pair[-1]) if docker is not None else None
            lines += [summary(r, reference) for r in pair]
        return lines
    finally:
        if docker is not None:
            ids = subprocess.run(docker.cli("ps", "-aq"), capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(docker.cli("rm", "-f", *ids), capture_output=True)
            docker.stop()
        process.terminate()
        process.wait(30)


def statistics_median(runtime: Runtime) -> float | None:
    import statistics

    return statistics.median(runtime.timings) if runtime.timings else None
