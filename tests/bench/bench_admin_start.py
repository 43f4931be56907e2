"""Benchmark: the start-up of the registry's admin commands, one source tree beside another.

An admin command (`berth user list`, `berth replicate ls`, ...) opens the registry's database
and checks its schema before doing anything; issue 12 wants a CLI that starts fast. This runs
each command against a registry already at the head revision, alternating the trees round by
round so the machine's load hits them alike, and prints medians of the wall time and of the
process's CPU time (user + system), with each tree's ratio to the first one and to a bare
`python -c pass`.

Run: python tests/bench/bench_admin_start.py --tree /work/main --tree . [--rounds 15]
     [--database-url postgresql+psycopg://...]

Each tree is imported through PYTHONPATH (from a scratch directory, since `python -m` puts the
working directory first), so an older checkout, e.g. a `git archive` of main, can be measured
beside this one. Bytecode is compiled first: an installed package has it, and under
PYTHONDONTWRITEBYTECODE=1 (as on these machines) every run would compile from source.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (("user", "list"), ("replicate", "ls"), ("upstream", "ls"), ("quota", "list"))
"""Commands that open the database and print a few rows; each exists in every measured tree."""


def timed(command: list[str], env: dict[str, str], stdin: str | None = None) -> tuple[float, float]:
    """The wall and CPU seconds (user + system) of one run of `command`, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare(tree: Path, where: list[str], env: dict[str, str]) -> None:
    """Compile the tree's bytecode and bring the database to its head, as a started registry has."""
    names = [str(tree / name) for name in ("client", "engine", "registry", "migrations")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *names], check=True, env=env)
    timed([sys.executable, "-m", "engine", "db", "upgrade", *where], env)
    listed = subprocess.run(
        [sys.executable, "-m", "engine", "user", "list", *where], capture_output=True, text=True, env=env
    )
    if "bench" not in listed.stdout:
        timed([sys.executable, "-m", "engine", "user", "add", "bench", "--password-stdin", *where], env, "secret\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, required=True, help="a source tree (repeat)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--database-url", help="PostgreSQL (or other) URL instead of a SQLite data dir")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree]
    with tempfile.TemporaryDirectory(prefix="berth-admin-bench-") as scratch:
        # `python -m` puts the working directory first on sys.path: run where no tree is.
        os.chdir(scratch)
        where = ["--data-dir", scratch, *(["--database-url", args.database_url] if args.database_url else [])]
        envs = {tree: {**os.environ, "PYTHONPATH": str(tree)} for tree in trees}
        for tree in trees:
            prepare(tree, where, {**envs[tree], "PYTHONDONTWRITEBYTECODE": ""})
        samples: dict[str, list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            samples.setdefault("python -c pass", []).append(timed([sys.executable, "-c", "pass"], dict(os.environ)))
            for command in COMMANDS:
                for tree in trees:
                    key = f"{' '.join(command)} [{tree}]"
                    samples.setdefault(key, []).append(
                        timed([sys.executable, "-m", "engine", *command, *where], envs[tree])
                    )
    medians = {
        key: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for key, runs in samples.items()
    }
    floor_wall, floor_cpu = medians["python -c pass"]
    print(f"medians of {args.rounds} rounds, seconds (wall, CPU), load {os.getloadavg()[0]:.1f}:")
    print(f"  python -c pass: {floor_wall:.3f} {floor_cpu:.3f}")
    for command in COMMANDS:
        first_wall, first_cpu = medians[f"{' '.join(command)} [{trees[0]}]"]
        for tree in trees:
            wall, cpu = medians[f"{' '.join(command)} [{tree}]"]
            print(
                f"  berth {' '.join(command)} [{tree}]: {wall:.3f} {cpu:.3f}"
                f"  (x first: {wall / first_wall:.2f} {cpu / first_cpu:.2f};"
                f" x python: {wall / floor_wall:.1f} {cpu / floor_cpu:.1f})"
            )


if __name__ == "__main__":
    main()
