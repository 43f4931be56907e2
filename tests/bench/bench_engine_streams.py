"""Benchmark: `docker cp` both ways, `docker run -i` piping, and a TTY's keystroke echo, berth beside dockerd.

Run as root: python tests/bench/bench_engine_streams.py [--mib 64] [-n 5] [--keys 50]

The same docker CLI drives `berth engine serve` and a private dockerd, each in a network namespace
of its own (the fixtures of tests/engine/api). Figures are medians of wall-clock times from this one
run, and the ratio berth/dockerd: below 1 berth is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.engine.api.conftest import IMAGE_NAME, Engine, berth_engine, docker_engine  # noqa: E402
from tests.engine.api.test_terminal import Terminal  # noqa: E402

NONE = ("--network", "none")


def timed(action: list[str], engine: Engine, data: bytes | None = None) -> float:
    began = time.perf_counter()
    result = subprocess.run(["docker", *action], input=data, capture_output=True, env=engine.env)
    elapsed = time.perf_counter() - began
    assert result.returncode == 0, result.stderr
    return elapsed


def keystrokes(engine: Engine, count: int) -> list[float]:
    """Seconds from writing a key into the CLI's terminal to seeing it echoed by the container's shell."""
    term = Terminal(["docker", "run", "-it", "--rm", *NONE, IMAGE_NAME, "sh"], engine.env)
    try:
        term.type("echo ready\r")
        term.expect(r"\r\nready\r\n")
        out = []
        for index in range(count):
            key = "abcdefghijklmnopqrstuvwxyz"[index % 26]
            began = time.perf_counter()
            term.type(key)
            term.expect(key)
            out.append(time.perf_counter() - began)
        term.type("\x15exit\r")
        term.wait()
        return out
    finally:
        term.close()


def bench(engine: Engine, work: Path, mib: int, runs: int, keys: int) -> dict[str, float]:
    payload = work / "payload"
    if not payload.exists():
        with open(payload, "wb") as f:
            f.write(os.urandom(mib << 20))
    data = payload.read_bytes()
    engine.ok("run", "-d", *NONE, "--name", "bench-box", IMAGE_NAME, "sleep", "3600")
    figures: dict[str, list[float]] = {"cp in": [], "cp out": [], "run -i cat": []}
    try:
        for _ in range(runs):
            figures["cp in"].append(timed(["cp", str(payload), "bench-box:/tmp/payload"], engine))
            target = work / f"out-{engine.name}"
            figures["cp out"].append(timed(["cp", "bench-box:/tmp/payload", str(target)], engine))
            assert target.stat().st_size == mib << 20
            target.unlink()
            figures["run -i cat"].append(timed(["run", "-i", "--rm", *NONE, IMAGE_NAME, "wc", "-c"], engine, data))
    finally:
        engine.ok("rm", "-f", "bench-box")
    out = {name: statistics.median(values) for name, values in figures.items()}
    out["tty echo"] = statistics.median(keystrokes(engine, keys))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=64, help="MiB copied and piped per run")
    parser.add_argument("-n", type=int, default=5, help="runs per figure")
    parser.add_argument("--keys", type=int, default=50, help="keystrokes timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="berth-bench-streams-") as name:
        work = Path(name)
        results = {}
        for label, start in (("berth", berth_engine), ("dockerd", docker_engine)):
            (work / label).mkdir()
            engines = start(work / label)
            engine = next(engines)
            try:
                results[label] = bench(engine, work, args.mib, args.n, args.keys)
            finally:
                engines.close()
    print(f"{'scenario':<12} {'berth':>10} {'dockerd':>10} {'ratio':>7}   ({args.mib} MiB, median of {args.n})")
    for scenario in results["berth"]:
        ours, theirs = results["berth"][scenario], results["dockerd"][scenario]
        unit = 1000 if scenario == "tty echo" else 1
        suffix = "ms" if scenario == "tty echo" else "s"
        print(f"{scenario:<12} {ours * unit:>9.3f}{suffix} {theirs * unit:>9.3f}{suffix} {ours / theirs:>6.2f}x")


if __name__ == "__main__":
    main()
