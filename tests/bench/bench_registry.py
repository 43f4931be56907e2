"""Benchmark: our registry beside CNCF Distribution (Debian's `docker-registry`), one run, ratios.

    python tests/bench/bench_registry.py [--quick] [--json out.json] [--only PHASE,...]
                                         [--profile DIR] [--berth-only] [--workers N] [--keep]

Starts both registries on loopback ports with scratch data directories (ours with its default
worker count, one per core; Distribution with filesystem storage, the in-memory blob descriptor
cache of Debian's default config and error-level logs), runs the same workload against each,
phase by phase, and prints absolute figures, the ratio ours/Distribution and the targets of
issue 2 marked PASS/FAIL. A full run takes about 6 minutes; `--quick` about one.

Phases:
- blobs: a 256 MiB blob pushed monolithically (POST, one PUT streaming the body) and in 8 MiB
  chunks (POST, PATCHes with Content-Range, empty PUT ?digest=), then pulled; best of 3 (noise
  from other processes only ever slows a run down). The payload's digest is computed before
  the clock starts; the pull's sha256 is verified once, after a timed warm-up pull, and never
  inside the timed pulls.
- manifests: GET/HEAD/PUT by tag at concurrency 1, 16, 64. GET and PUT (a fresh tag per request)
  run under wrk; HEAD runs under the Python asyncio client (wrk waits for a body after a HEAD
  response's Content-Length), whose CPU is shown.
- tags: 1,000 manifest PUTs by tag (c=16), then tags/list in pages of n=100 following Link.
- repos: 1,000 repositories (2 cross-repository mounts + manifest PUT each, c=16), then
  /v2/_catalog?n=100 following Link.
- small: 2,000 x 4 KiB blobs at c=16, as docker does (POST, PUT ?digest= with the body) and in
  the single-request form (POST ?digest= with the body).

Request/s and small-blob runs alternate the servers twice and keep each one's best. Every figure
records the cores the server used, the cores the load generator used and the cores other
processes on the machine used ("others": a noisy neighbour shows). `--profile DIR` samples our
workers with py-spy during our half of each phase and prints where the samples went (such runs
are slower and not comparable; use them with `--berth-only`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import registry_workloads as wl  # noqa: E402
import registry_wrk as wrk  # noqa: E402
from registry_blobs import BlobClient  # noqa: E402
from registry_http import UnexpectedResponse, hammer, run  # noqa: E402
from registry_profile import CpuMeter, Profiler, summarize  # noqa: E402
from registry_servers import Server, distribution, ours, scratch_dir  # noqa: E402

MiB = 1024 * 1024
PHASES = ("blobs", "manifests", "tags", "repos", "small")


@dataclass
class Scale:
    blob_mib: int
    blob_reps: int
    chunk_mib: int
    wrk_seconds: float
    concurrencies: tuple[int, ...]
    tags: int
    repos: int
    list_reps: int
    small_blobs: int
    small_size: int = 4096
    small_concurrency: int = 16
    create_concurrency: int = 16
    rounds: int = 2  # req/s and small-blob runs alternate servers this many times; best is kept


FULL = Scale(
    blob_mib=256,
    blob_reps=3,
    chunk_mib=8,
    wrk_seconds=6,
    concurrencies=(1, 16, 64),
    tags=1000,
    repos=1000,
    list_reps=5,
    small_blobs=2000,
)
QUICK = Scale(
    blob_mib=64,
    blob_reps=1,
    chunk_mib=8,
    wrk_seconds=2,
    concurrencies=(1, 16, 64),
    tags=200,
    repos=200,
    list_reps=2,
    small_blobs=400,
    rounds=1,
)


@dataclass
class Measure:
    value: float | None = None
    server_cores: float | None = None
    client_cores: float | None = None
    other_cores: float | None = None  # busy cores of the machine minus server and client: noise
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    name: str
    unit: str
    higher_is_better: bool
    target: float | None  # ratio ours/Distribution to reach (>= if higher is better, else <=)
    results: dict[str, Measure] = field(default_factory=dict)
    baseline: Measure | None = None  # what the ratio divides by when Distribution lacks this form

    @property
    def ratio(self) -> float | None:
        a, b = self.results.get("berth"), self.baseline or self.results.get("distribution")
        if not a or not b or a.value is None or not b.value:
            return None
        return a.value / b.value

    @property
    def noise(self) -> str:
        """The most CPU other processes on the machine used during either kept measurement."""
        seen = [m.other_cores for m in self.results.values() if m.other_cores is not None]
        return f"{max(seen):.2f}" if seen else ""

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.results.get("berth") is None or self.results["berth"].value is None:
            return "FAIL"
        ratio = self.ratio
        if ratio is None:
            return "n/a"
        ok = ratio >= self.target if self.higher_is_better else ratio <= self.target
        return "PASS" if ok else "FAIL"


class Bench:
    def __init__(self, scale: Scale, servers: list[Server], profile_dir: Path | None):
        self.scale = scale
        self.servers = servers
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.profile_dir = profile_dir
        self.profiles: list[tuple[str, Path]] = []
        self.fixture = wl.make_fixture()

    def row(self, name: str, unit: str, higher: bool = True, target: float | None = None) -> Row:
        row = Row(name, unit, higher, target)
        self.rows.append(row)
        return row

    def measure(self, row: Row, server: Server, fn: Callable[[], Measure | float]) -> None:
        """Run one measurement against one server, with CPU accounting and optional profiling."""
        slug = "".join(c if c.isalnum() else "_" for c in row.name).strip("_")
        profiling = self.profile_dir is not None and server.label == "berth"
        meter = CpuMeter(sorted({server.process.pid, *server.worker_pids()}))  # type: ignore[union-attr]
        try:
            if profiling:
                out = self.profile_dir / f"{slug}.txt"  # type: ignore[operator]
                out.unlink(missing_ok=True)
                with Profiler(server.process.pid, out):  # type: ignore[union-attr]
                    with meter:
                        got = fn()
                self.profiles.append((row.name, out))
            else:
                with meter:
                    got = fn()
        except Unsupported as exc:
            row.results[server.label] = Measure(None, extra={"unsupported": str(exc)})
            note = f"{row.name}: {server.label} does not support it: {exc}"
            if not any(n.startswith(f"{row.name}: {server.label} ") for n in self.notes):
                self.notes.append(note)
            print(f"  {server.label:12s} {row.name}: unsupported: {str(exc)[:300]}", flush=True)
            return
        except (UnexpectedResponse, OSError, RuntimeError) as exc:
            text = exc.describe() if isinstance(exc, UnexpectedResponse) else f"[{server.label}] {exc!r}"
            self.failures.append(f"{row.name}: {text}")
            row.results[server.label] = Measure(None)
            print(f"  {server.label:12s} {row.name}: FAILED {text[:300]}", flush=True)
            return
        m = got if isinstance(got, Measure) else Measure(got)
        if m.server_cores is None:
            m.server_cores = meter.server_cores
        if m.client_cores is None:
            m.client_cores = meter.client_cores
        m.other_cores = max(0.0, meter.machine_cores - m.server_cores - m.client_cores)
        previous = row.results.get(server.label)
        if previous is not None and previous.value is not None and m.value is not None:
            better = m.value > previous.value if row.higher_is_better else m.value < previous.value
            if not better:  # best of the repeated runs
                m, previous = previous, m
            m.extra["other runs"] = [*previous.extra.get("other runs", []), round(previous.value, 2)]
        row.results[server.label] = m
        shown = "FAILED" if m.value is None else f"{m.value:,.2f} {row.unit}"
        print(
            f"  {server.label:12s} {row.name}: {shown}  (server {m.server_cores:.2f} cores, "
            f"client {m.client_cores:.2f}, others {m.other_cores:.2f} cores) {m.extra or ''}",
            flush=True,
        )

    # -- phases ----------------------------------------------------------------------------

    def setup(self) -> None:
        for server in self.servers:
            run(wl.install_fixture(server.label, server.host, server.port, self.fixture))

    def blobs(self) -> None:
        s = self.scale
        size = s.blob_mib * MiB
        print(f"generating {s.blob_mib} MiB of random data ...", flush=True)
        with open("/dev/urandom", "rb") as fh:
            base = bytearray(fh.read(size))
        view = memoryview(base)

        def stamp(tag: bytes) -> None:
            base[: len(tag)] = tag  # a distinct blob per push

        def variant(tag: bytes) -> str:
            stamp(tag)  # hashed here, before any clock starts
            return "sha256:" + hashlib.sha256(view).hexdigest()

        for form, target in (("monolithic", 1.5), ("chunked", 2.0)):
            label = f"push 256 MiB {form}" if s.blob_mib == 256 else f"push {s.blob_mib} MiB {form}"
            row = self.row(f"blob {label}", "MiB/s", target=target)
            digests: list[str] = []
            for i in range(s.blob_reps):
                digests.append(variant(f"{form}-{i:04d}-".encode()))
            for server in self.servers:

                def go(server: Server = server, form: str = form, digests: list[str] = digests) -> Measure:
                    client = BlobClient(server.label, server.host, server.port)
                    times = []
                    try:
                        for i, digest in enumerate(digests):
                            stamp(f"{form}-{i:04d}-".encode())
                            if form == "monolithic":
                                times.append(client.push_monolithic("bench/big", view, digest))
                            else:
                                times.append(client.push_chunked("bench/big", view, digest, s.chunk_mib * MiB))
                    finally:
                        client.close()
                    rates = [s.blob_mib / t for t in times]
                    return Measure(max(rates), extra={"runs MiB/s": [round(r) for r in rates]})

                self.measure(row, server, go)
        pull_digest = digests[-1] if digests else None
        row = self.row(f"blob pull {s.blob_mib} MiB", "MiB/s", target=1.0)
        for server in self.servers:

            def pull(server: Server = server) -> Measure:
                client = BlobClient(server.label, server.host, server.port)
                try:
                    client.pull("bench/big", pull_digest, size, verify=True)  # warm-up, verified after timing
                    times = [client.pull("bench/big", pull_digest, size, verify=False) for _ in range(s.blob_reps)]
                finally:
                    client.close()
                rates = [s.blob_mib / t for t in times]
                return Measure(max(rates), extra={"runs MiB/s": [round(r) for r in rates]})

            self.measure(row, server, pull)

    def manifests(self) -> None:
        s = self.scale
        if not wrk.available():
            raise RuntimeError("wrk is not installed: apt-get install -y wrk")
        repo, fixture = wl.FIXTURE_REPO, self.fixture
        scripts = {
            "GET": wrk.static_script("GET", f"/v2/{repo}/manifests/latest", {"Accept": wl.MANIFEST_ACCEPT}, None, 200),
            "HEAD": "",  # wrk hangs on HEAD (it waits for Content-Length body bytes): see _head
            "PUT": wrk.counter_script(
                "PUT", f"/v2/{repo}/manifests/put-", {"Content-Type": wl.OCI_MANIFEST}, fixture.manifest.decode(), 201
            ),
        }
        for server in self.servers:  # warm-up: connections, caches, lazy imports
            wrk.run(server.base, scripts["GET"], 16, 1)
        for method, script in scripts.items():
            for c in s.concurrencies:
                target = 2.0 if method in ("GET", "HEAD") else None
                row = self.row(f"manifest {method} by tag c={c}", "req/s", target=target)
                for server in [*self.servers] * s.rounds:

                    def go(server: Server = server, script: str = script, c: int = c, method: str = method) -> Measure:
                        if method == "HEAD":
                            return self._head(server, c)
                        r = wrk.run(server.base, script, c, s.wrk_seconds)
                        if r.errors or r.bad_samples:
                            raise RuntimeError(f"{r.errors} errors in {r.requests} requests; samples: {r.bad_samples}")
                        return Measure(
                            r.rps,
                            client_cores=r.client_cpu,
                            extra={"p50 ms": round(r.p50_ms, 3), "p99 ms": round(r.p99_ms, 3)},
                        )

                    self.measure(row, server, go)

    def _head(self, server: Server, c: int) -> Measure:
        """HEAD through the Python client: client CPU is reported, so its share is visible."""
        r = run(
            hammer(
                server.label,
                server.host,
                server.port,
                c,
                self.scale.wrk_seconds,
                "HEAD",
                f"/v2/{wl.FIXTURE_REPO}/manifests/latest",
                {"Accept": wl.MANIFEST_ACCEPT},
                200,
            )
        )
        if r.failures:
            raise RuntimeError("; ".join(r.failures[:3]))
        return Measure(
            r.count / r.elapsed,
            extra={"p50 ms": round(1000 * r.percentile(50), 3), "p99 ms": round(1000 * r.percentile(99), 3)},
        )

    def tags(self) -> None:
        s = self.scale
        create = self.row(f"create {s.tags} tags (PUT manifest, c={s.create_concurrency})", "s", higher=False)
        listing = self.row(f"list {s.tags} tags (n=100 pages)", "ms", higher=False)
        for server in self.servers:

            def go(server: Server = server) -> Measure:
                r = run(
                    wl.create_tags(
                        server.label, server.host, server.port, self.fixture, "bench/tags", s.tags, s.create_concurrency
                    )
                )
                if r.failures:
                    raise RuntimeError("; ".join(r.failures[:3]))
                return Measure(
                    r.elapsed,
                    extra={"per s": round(r.count / r.elapsed, 1), "p99 ms": round(1000 * r.percentile(99), 2)},
                )

            self.measure(create, server, go)

            def ls(server: Server = server) -> Measure:
                return self._list(server, "/v2/bench/tags/tags/list?n=100", "tags", s.tags)

            self.measure(listing, server, ls)

    def repos(self) -> None:
        s = self.scale
        create = self.row(f"create {s.repos} repos (2 mounts + PUT, c={s.create_concurrency})", "s", higher=False)
        listing = self.row(f"list catalog, {s.repos}+ repos (n=100 pages)", "ms", higher=False, target=0.5)
        for server in self.servers:

            def go(server: Server = server) -> Measure:
                r = run(
                    wl.create_repositories(
                        server.label, server.host, server.port, self.fixture, "bench/r", s.repos, s.create_concurrency
                    )
                )
                if r.failures:
                    raise RuntimeError("; ".join(r.failures[:3]))
                return Measure(r.elapsed, extra={"repos/s": round(r.count / r.elapsed, 1)})

            self.measure(create, server, go)

            def ls(server: Server = server) -> Measure:
                return self._list(server, "/v2/_catalog?n=100", "repositories", s.repos, prefix="bench/r")

            self.measure(listing, server, ls)

    def _list(self, server: Server, first: str, key: str, expected: int, prefix: str = "") -> Measure:
        times, pages, names = [], 0, []
        for _ in range(self.scale.list_reps):
            started = time.perf_counter()
            names, pages = run(wl.list_paginated(server.label, server.host, server.port, first, key))
            times.append(time.perf_counter() - started)
        found = sum(1 for n in names if n.startswith(prefix))
        if found != expected or len(set(names)) != len(names):
            raise RuntimeError(
                f"GET {first} (following Link) listed {found} names starting with {prefix!r} "
                f"({len(names)} total, {len(set(names))} distinct), expected {expected}"
            )
        return Measure(1000 * statistics.median(times), extra={"pages": pages, "names": len(names)})

    def small(self) -> None:
        s = self.scale
        for one_request in (False, True):
            form = "POST ?digest= (1 req)" if one_request else "POST + PUT (docker)"
            row = self.row(
                f"{s.small_blobs} x {s.small_size // 1024} KiB blobs, {form}, c={s.small_concurrency}",
                "blobs/s",
                target=None if one_request else 2.0,
            )
            if not one_request:
                two_step = row
            for server in [*self.servers] * s.rounds:
                blobs = wl.small_blobs(s.small_blobs, s.small_size)  # fresh blobs each run

                def go(server: Server = server, one_request: bool = one_request, blobs: list = blobs) -> Measure:
                    repo = "bench/small-one" if one_request else "bench/small-two"
                    r = run(
                        wl.push_small_blobs(
                            server.label, server.host, server.port, repo, blobs, s.small_concurrency, one_request
                        )
                    )
                    if r.failures and one_request and server.label == "distribution" and " got 202 " in r.failures[0]:
                        raise Unsupported(
                            "POST ?digest= with a body opens a session (202) instead of "
                            "completing the upload (201); its ratio uses Distribution's POST + PUT. "
                            + r.failures[0][:200]
                        )
                    if r.failures:
                        raise UnexpectedResponseSummary(r.failures)
                    return Measure(
                        r.count / r.elapsed,
                        extra={
                            "p50 ms": round(1000 * r.percentile(50), 2),
                            "p99 ms": round(1000 * r.percentile(99), 2),
                        },
                    )

                self.measure(row, server, go)
            theirs = row.results.get("distribution")
            if one_request and theirs is not None and "unsupported" in theirs.extra:
                row.baseline = two_step.results.get("distribution")

    # -- report ----------------------------------------------------------------------------

    def table(self) -> str:
        head = (
            f"{'measurement':58s} {'unit':>7s} {'berth':>11s} {'distrib.':>11s} {'ratio':>7s} {'target':>7s} "
            f"{'':4s} {'others':>6s}"
        )
        out = [head, "-" * len(head)]
        for row in self.rows:
            cells = []
            for label in ("berth", "distribution"):
                m = row.results.get(label)
                if m is not None and "unsupported" in m.extra:
                    cells.append("unsupported")
                else:
                    cells.append("-" if m is None else "FAILED" if m.value is None else f"{m.value:,.2f}")
            ratio = row.ratio
            target = "" if row.target is None else (">=" if row.higher_is_better else "<=") + f"{row.target:g}x"
            out.append(
                f"{row.name:58s} {row.unit:>7s} {cells[0]:>11s} {cells[1]:>11s} "
                f"{'' if ratio is None else f'{ratio:.2f}x':>7s} {target:>7s} {row.verdict:4s} {row.noise:>6s}"
            )
            lat = [row.results.get(lb) for lb in ("berth", "distribution")]
            if all(m and m.value is not None and "p50 ms" in m.extra for m in lat):
                out.append(
                    f"{'    p50 / p99 ms':58s} {'':>7s} "
                    + " ".join(f"{m.extra['p50 ms']:>5.2f}/{m.extra['p99 ms']:<5.2f}" for m in lat)
                )
            if all(m and m.value is not None and "pages" in m.extra for m in lat):
                out.append(f"{'    pages fetched':58s} {'':>7s} " + " ".join(f"{m.extra['pages']:>11d}" for m in lat))
        return "\n".join(out)


class Unsupported(Exception):
    """The reference does not implement this form of a request: a note, not a failure."""


class UnexpectedResponseSummary(RuntimeError):
    def __init__(self, failures: list[str]):
        super().__init__(f"{len(failures)} failed items, first: {failures[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run at reduced sizes")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--only", help=f"comma-separated phases among {','.join(PHASES)}")
    parser.add_argument("--profile", type=Path, help="py-spy our workers during each phase into this directory")
    parser.add_argument("--workers", type=int, help="our worker processes (default: the server's, one per core)")
    parser.add_argument("--berth-only", action="store_true", help="skip Distribution (profiling runs)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    phases = args.only.split(",") if args.only else list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}")
    scale = QUICK if args.quick else FULL
    if args.profile:
        scale = replace(scale, rounds=1)

    scratch = scratch_dir()
    servers = [] if args.berth_only else [distribution(scratch)]
    servers.append(ours(scratch, args.workers))
    started = time.perf_counter()
    try:
        for server in servers:
            server.start()
            print(
                f"{server.label}: {server.base} pid {server.process.pid} "  # type: ignore[union-attr]
                f"workers {server.worker_pids()} data {server.workdir}",
                flush=True,
            )
        bench = Bench(scale, servers, args.profile.resolve() if args.profile else None)
        bench.setup()
        for phase in phases:
            print(f"== {phase}", flush=True)
            try:
                getattr(bench, phase)()
            except (UnexpectedResponse, RuntimeError) as exc:
                text = exc.describe() if isinstance(exc, UnexpectedResponse) else str(exc)
                bench.failures.append(f"phase {phase}: {text}")
                print(f"  phase {phase} FAILED: {text}", flush=True)
        for server in servers:
            if server.process is not None and server.process.poll() is not None:
                bench.failures.append(f"{server.label} exited: {server.log_tail()}")
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    elapsed = time.perf_counter() - started
    print()
    print(
        f"berth vs CNCF Distribution ({'quick' if args.quick else 'full'} run, {elapsed:.0f} s; ratio = berth / "
        "Distribution; for times lower is better; others = cores used by other processes on the machine)"
    )
    print(bench.table())
    if bench.notes:
        print("\nnotes:")
        for note in bench.notes:
            print(f"  - {note}")
    if bench.failures:
        print("\nfailures:")
        for failure in bench.failures:
            print(f"  - {failure}")
    for name, path in bench.profiles:
        print(f"\nprofile of berth during '{name}' ({path}):\n{summarize(path)}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "scale": asdict(scale),
                    "rows": [
                        {
                            "name": r.name,
                            "unit": r.unit,
                            "ratio": r.ratio,
                            "target": r.target,
                            "verdict": r.verdict,
                            "higher_is_better": r.higher_is_better,
                            "results": {k: asdict(v) for k, v in r.results.items()},
                        }
                        for r in bench.rows
                    ],
                    "failures": bench.failures,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
