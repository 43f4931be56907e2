"""Benchmark: our registry beside CNCF Distribution (Debian's `docker-registry`), one run, ratios.

    python tests/bench/bench_registry.py [--quick] [--json out.json] [--only PHASE,...]
                                         [--profile DIR] [--berth-only] [--workers N] [--keep]
                                         [--auth] [--backend postgres-s3] [--rehash]

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

Optional modes, each reported in its own table after the main one, as ratios from the same run:
- `--auth` (phase auth): manifest GET/HEAD by tag on an instance of ours (same worker count)
  holding one account made with `berth user add` / `berth grant`, every request carrying a
  Bearer token fetched from its /token with Basic credentials before each timed run, against a
  fresh open twin holding the same data; target of issue 3: at least 0.9x. Distribution with an htpasswd file
  (bcrypt cost 4, checked on every request) against open Distribution, for reference.
- `--backend postgres-s3`: a third server, ours on a throwaway PostgreSQL cluster and moto's S3
  server, runs every phase; a table gives its figures over filesystem + SQLite (issue 4). moto
  is Python with objects in memory, so blob figures measure it too; blobs are capped at 64 MiB.
  Server cores then include PostgreSQL's and moto's, shown apart in the per-run lines.
- `--rehash` (phase rehash): a 64 MiB upload in 8 MiB PATCHes, all on one process (the running
  sha256 stays in memory) versus alternating between two processes sharing one data directory
  (with postgres-s3 also one database and bucket), so the completing PUT re-hashes from storage.

Every measurement starts after sync(2), so no run pays for the writeback of data an earlier
run (of either server) left dirty. Request/s and small-blob runs alternate the servers twice
and keep each one's best. Every figure
records the cores the server used, the cores the load generator used and the cores other
processes on the machine used ("others": a noisy neighbour shows). `--profile DIR` samples our
workers with py-spy during our half of each phase and prints where the samples went (such runs
are slower and not comparable; use them with `--berth-only`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import registry_backends as backends  # noqa: E402
import registry_workloads as wl  # noqa: E402
import registry_wrk as wrk  # noqa: E402
from registry_blobs import BlobClient, push_chunked_alternating  # noqa: E402
from registry_http import UnexpectedResponse, hammer, run  # noqa: E402
from registry_profile import CpuMeter, Profiler, ServiceMeter, summarize  # noqa: E402
from registry_servers import Server, distribution, ours, scratch_dir  # noqa: E402

MiB = 1024 * 1024
PHASES = ("blobs", "manifests", "tags", "repos", "small")
EXTRA_PHASES = ("auth", "rehash")  # run only when asked for: --auth, --rehash or --only
PG_S3 = "berth pg+s3"
AUTH_TARGET = 0.9  # issue 3: token auth costs at most 10% of manifest GET requests/s


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
    labels: tuple[str, str] = ("berth", "distribution")  # ratio = results[labels[0]] / results[labels[1]]

    @property
    def ratio(self) -> float | None:
        a, b = self.results.get(self.labels[0]), self.baseline or self.results.get(self.labels[1])
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
        mine = self.results.get(self.labels[0])
        if mine is None or mine.value is None:
            return "FAIL"
        ratio = self.ratio
        if ratio is None:
            return "n/a"
        ok = ratio >= self.target if self.higher_is_better else ratio <= self.target
        return "PASS" if ok else "FAIL"


class Bench:
    def __init__(
        self,
        scale: Scale,
        servers: list[Server],
        profile_dir: Path | None,
        auth_pairs: list[tuple[Server, Server]] | None = None,
        replica_pairs: list[tuple[str, Server, Server]] | None = None,
    ):
        self.scale = scale
        self.servers = servers
        self.auth_pairs = auth_pairs or []  # (open server, the same server with auth)
        self.replica_pairs = replica_pairs or []  # (backend, replica A, replica B) sharing one index
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.profile_dir = profile_dir
        self.profiles: list[tuple[str, Path]] = []
        self.fixture = wl.make_fixture()

    def row(
        self,
        name: str,
        unit: str,
        higher: bool = True,
        target: float | None = None,
        labels: tuple[str, str] = ("berth", "distribution"),
    ) -> Row:
        row = Row(name, unit, higher, target, labels=labels)
        self.rows.append(row)
        return row

    def measure(
        self,
        row: Row,
        server: Server,
        fn: Callable[[], Measure | float],
        label: str | None = None,
        pids: list[int] | None = None,
    ) -> None:
        """Run one measurement against one server, with CPU accounting and optional profiling.

        `label` files the result under another name than the server's; `pids` are the processes
        whose CPU counts as the server's (several replicas)."""
        label = label or server.label
        slug = "".join(c if c.isalnum() else "_" for c in row.name).strip("_")
        # Dirty pages an earlier run left (Distribution does not fsync what it stores) are
        # written back now, not by kernel threads in the middle of this measurement.
        os.sync()
        profiling = self.profile_dir is not None and label == "berth"
        meter = CpuMeter(pids or server.cpu_pids())
        services = ServiceMeter(server.backends)
        try:
            if profiling:
                out = self.profile_dir / f"{slug}.txt"  # type: ignore[operator]
                out.unlink(missing_ok=True)
                with Profiler(server.process.pid, out):  # type: ignore[union-attr]
                    with meter, services:
                        got = fn()
                self.profiles.append((row.name, out))
            else:
                with meter, services:
                    got = fn()
        except Unsupported as exc:
            row.results[label] = Measure(None, extra={"unsupported": str(exc)})
            note = f"{row.name}: {label} does not support it: {exc}"
            if not any(n.startswith(f"{row.name}: {label} ") for n in self.notes):
                self.notes.append(note)
            print(f"  {label:12s} {row.name}: unsupported: {str(exc)[:300]}", flush=True)
            return
        except (UnexpectedResponse, OSError, RuntimeError) as exc:
            text = exc.describe() if isinstance(exc, UnexpectedResponse) else f"[{label}] {exc!r}"
            self.failures.append(f"{row.name}: {text}")
            row.results[label] = Measure(None)
            print(f"  {label:12s} {row.name}: FAILED {text[:300]}", flush=True)
            return
        m = got if isinstance(got, Measure) else Measure(got)
        if m.server_cores is None:
            m.server_cores = meter.server_cores
            if server.backends:  # the registry's cores plus PostgreSQL's and moto's, shown apart
                m.extra["cores"] = {"registry": round(m.server_cores, 2)} | {
                    k: round(v, 2) for k, v in services.cores.items()
                }
                m.server_cores += services.total
        if m.client_cores is None:
            m.client_cores = meter.client_cores
        m.other_cores = max(0.0, meter.machine_cores - m.server_cores - m.client_cores)
        previous = row.results.get(label)
        if previous is not None and previous.value is not None and m.value is not None:
            better = m.value > previous.value if row.higher_is_better else m.value < previous.value
            if not better:  # best of the repeated runs
                m, previous = previous, m
            m.extra["other runs"] = [*previous.extra.get("other runs", []), round(previous.value, 2)]
        row.results[label] = m
        shown = "FAILED" if m.value is None else f"{m.value:,.2f} {row.unit}"
        print(
            f"  {label:12s} {row.name}: {shown}  (server {m.server_cores:.2f} cores, "
            f"client {m.client_cores:.2f}, others {m.other_cores:.2f} cores) {m.extra or ''}",
            flush=True,
        )

    # -- phases ----------------------------------------------------------------------------

    def setup(self) -> None:
        for server in [*self.servers, *(server for pair in self.auth_pairs for server in pair)]:
            auth = backends.auth_headers(server, wl.FIXTURE_REPO)
            run(wl.install_fixture(server.label, server.host, server.port, self.fixture, auth))

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

    def _head(self, server: Server, c: int, headers: dict[str, str] | None = None) -> Measure:
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
                headers or {"Accept": wl.MANIFEST_ACCEPT},
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

    def auth(self) -> None:
        """Manifest GET/HEAD by tag on each server with and without auth, alternating.

        Ours with auth is a second process on its own data directory holding one account:
        every request carries `Authorization: Bearer TOKEN`, a token fetched from its /token
        with Basic credentials (scope repository:NAME:pull,push) just before each timed run.
        Distribution with auth checks an htpasswd bcrypt entry (cost 4) on every request."""
        s = self.scale
        if not wrk.available():
            raise RuntimeError("wrk is not installed: apt-get install -y wrk")
        repo = wl.FIXTURE_REPO
        path = f"/v2/{repo}/manifests/latest"
        headers = {"Accept": wl.MANIFEST_ACCEPT}
        for pair in self.auth_pairs:  # warm-up
            for server in pair:
                script = wrk.static_script("GET", path, headers | backends.auth_headers(server, repo), None, 200)
                wrk.run(server.base, script, 16, 1)
        for method in ("GET", "HEAD"):
            for c in s.concurrencies:
                for plain, authed in self.auth_pairs:
                    target = AUTH_TARGET if authed.auth == "token" else None
                    row = self.row(
                        f"manifest {method} by tag c={c}",
                        "req/s",
                        target=target,
                        labels=(authed.label, plain.label),
                    )
                    for server in [plain, authed] * s.rounds:

                        def go(server: Server = server, c: int = c, method: str = method) -> Measure:
                            sent = headers | backends.auth_headers(server, repo)  # a fresh token, untimed
                            if method == "HEAD":
                                return self._head(server, c, sent)
                            script = wrk.static_script("GET", path, sent, None, 200)
                            r = wrk.run(server.base, script, c, s.wrk_seconds)
                            if r.errors or r.bad_samples:
                                raise RuntimeError(
                                    f"{r.errors} errors in {r.requests} requests; samples: {r.bad_samples}"
                                )
                            return Measure(
                                r.rps,
                                client_cores=r.client_cpu,
                                extra={"p50 ms": round(r.p50_ms, 3), "p99 ms": round(r.p99_ms, 3)},
                            )

                        self.measure(row, server, go)

    def rehash(self) -> None:
        """A chunked 64 MiB upload in 8 MiB PATCHes: every request to one process (the running
        sha256 stays in its memory) versus PATCHes alternating between two processes sharing
        the index and the store (the completing PUT re-hashes the whole upload from storage).
        Both processes run one worker, so which process takes a request is deterministic."""
        size_mib, chunk_mib = 64, 8
        size = size_mib * MiB
        with open("/dev/urandom", "rb") as fh:
            base = bytearray(fh.read(size))
        view = memoryview(base)
        reps = max(2, self.scale.blob_reps)
        for backend, a, b in self.replica_pairs:
            row = self.row(
                f"chunked push {size_mib} MiB in {chunk_mib} MiB PATCHes [{backend}]",
                "MiB/s",
                labels=("re-hash", "in memory"),
            )
            pids = sorted({*a.cpu_pids(), *b.cpu_pids()})
            for i in range(reps):
                for split in (False, True):
                    base[:16] = f"rehash-{int(split)}-{i:06d}".encode()[:16].ljust(16, b"-")
                    digest = "sha256:" + hashlib.sha256(view).hexdigest()  # before the clock starts

                    def go(split: bool = split, digest: str = digest, pair: tuple[Server, ...] = (a, b)) -> Measure:
                        clients = [BlobClient(x.label, x.host, x.port) for x in pair]
                        try:
                            if split:
                                took = push_chunked_alternating(clients, "bench/rehash", view, digest, chunk_mib * MiB)
                            else:
                                took = clients[0].push_chunked("bench/rehash", view, digest, chunk_mib * MiB)
                        finally:
                            for client in clients:
                                client.close()
                        return Measure(size_mib / took)

                    self.measure(row, a, go, label="re-hash" if split else "in memory", pids=pids)

    # -- report ----------------------------------------------------------------------------

    def table(self) -> str:
        main = [r for r in self.rows if r.labels == ("berth", "distribution")]
        return self._render(main, ("berth", "distribution"), ("berth", "distrib."))

    def extra_tables(self) -> str:
        """The optional modes: ours on PostgreSQL + S3 against filesystem + SQLite (every main
        row), auth against no auth, re-hash against the in-memory running hash."""
        out = []
        main = [r for r in self.rows if r.labels == ("berth", "distribution")]
        if any(PG_S3 in r.results for r in main):
            views = [replace(r, labels=(PG_S3, "berth"), target=None, baseline=None) for r in main]
            out.append(
                "\nberth on PostgreSQL + S3 (moto) vs berth on filesystem + SQLite, same run "
                "(ratio = pg+s3 / fs+sqlite; server cores include PostgreSQL and moto)"
            )
            out.append(self._render(views, (PG_S3, "berth"), ("pg+s3", "fs+sqlite"), cpu_per_request=True))
        groups: dict[tuple[str, str], list[Row]] = {}
        for r in self.rows:
            if r.labels != ("berth", "distribution"):
                groups.setdefault(r.labels, []).append(r)
        for labels, rows in groups.items():
            if labels == ("re-hash", "in memory"):
                out.append(
                    "\nupload hashing paths: two processes sharing one index and store, PATCHes alternating "
                    "(completing PUT re-hashes from storage) vs one process (running sha256 in memory); "
                    "ratio = re-hash / in memory"
                )
            else:
                out.append(f"\nauth: {labels[0]} vs {labels[1]}, same run, same settings (ratio = auth / no auth)")
            titles = labels if labels == ("re-hash", "in memory") else ("auth", "no auth")
            out.append(self._render(rows, labels, titles, cpu_per_request=True))
        return "\n".join(out)

    def _render(
        self, rows: list[Row], labels: tuple[str, str], titles: tuple[str, str], cpu_per_request: bool = False
    ) -> str:
        """One table; `cpu_per_request` adds the server's CPU microseconds per request (or per
        MiB), a figure that a busy neighbour disturbs far less than the rate itself."""
        head = (
            f"{'measurement':58s} {'unit':>7s} {titles[0]:>11s} {titles[1]:>11s} {'ratio':>7s} {'target':>7s} "
            f"{'':4s} {'others':>6s}"
        )
        out = [head, "-" * len(head)]
        for row in rows:
            cells = []
            for label in labels:
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
            lat = [row.results.get(lb) for lb in labels]
            if all(m and m.value is not None and "p50 ms" in m.extra for m in lat):
                out.append(
                    f"{'    p50 / p99 ms':58s} {'':>7s} "
                    + " ".join(f"{m.extra['p50 ms']:>5.2f}/{m.extra['p99 ms']:<5.2f}" for m in lat)
                )
            if cpu_per_request and all(m and m.value and m.server_cores is not None for m in lat):
                per = [1e6 * m.server_cores / m.value for m in lat]  # type: ignore[union-attr,operator]
                unit = {"req/s": "CPU us/req", "MiB/s": "CPU us/MiB", "blobs/s": "CPU us/blob"}.get(row.unit)
                if unit:
                    cells = f"{per[0]:>11,.0f} {per[1]:>11,.0f} {per[0] / per[1]:>6.2f}x"
                    out.append(f"{'    server ' + unit:58s} {'':>7s} {cells}")
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
    parser.add_argument("--only", help=f"comma-separated phases among {','.join(PHASES + EXTRA_PHASES)}")
    parser.add_argument("--profile", type=Path, help="py-spy our workers during each phase into this directory")
    parser.add_argument("--workers", type=int, help="our worker processes (default: the server's, one per core)")
    parser.add_argument("--berth-only", action="store_true", help="skip Distribution (profiling runs)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--auth",
        action="store_true",
        help="add the auth phase: manifest GET/HEAD with a bearer token (ours) and htpasswd (Distribution)",
    )
    parser.add_argument(
        "--backend",
        choices=("filesystem-sqlite", "postgres-s3"),
        default="filesystem-sqlite",
        help="postgres-s3: also run ours on a throwaway PostgreSQL and moto's S3 (blobs capped at 64 MiB)",
    )
    parser.add_argument(
        "--rehash",
        action="store_true",
        help="add the rehash phase: a chunked upload on one process vs alternating between two replicas",
    )
    args = parser.parse_args()
    phases = args.only.split(",") if args.only else list(PHASES)
    phases += [p for p, on in (("auth", args.auth), ("rehash", args.rehash)) if on and p not in phases]
    unknown = set(phases) - set(PHASES) - set(EXTRA_PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}")
    scale = QUICK if args.quick else FULL
    if args.profile:
        scale = replace(scale, rounds=1)
    pg_s3 = args.backend == "postgres-s3"
    if pg_s3:
        scale = replace(scale, blob_mib=min(scale.blob_mib, 64))

    scratch = scratch_dir()
    servers = [] if args.berth_only else [distribution(scratch)]
    servers.append(ours(scratch, args.workers))
    auth_pairs: list[tuple[Server, Server]] = []
    replica_pairs: list[tuple[str, Server, Server]] = []
    postgres: backends.Postgres | None = None
    moto: backends.MotoS3 | None = None
    started = time.perf_counter()
    everything = list(servers)
    try:
        if pg_s3:
            postgres, moto = backends.Postgres(), backends.MotoS3(scratch)
            postgres.start()
            moto.start()
            print(f"postgresql: {postgres.url}  moto s3: {moto.endpoint}", flush=True)

            def backend_args() -> list[str]:
                assert postgres is not None and moto is not None
                return [
                    "--database-url", postgres.new_database(),
                    "--storage", f"s3://{moto.new_bucket()}/registry",
                    "--s3-endpoint", moto.endpoint,
                ]  # fmt: skip

            services = {"postgres": postgres.pids, "moto": moto.pids}

            variant = ours(scratch, args.workers, label=PG_S3, backend_args=backend_args(), env=backends.S3_ENV)
            variant.backends = services
            servers.append(variant)
            everything.append(variant)
        if "auth" in phases:
            authed = ours(scratch, args.workers, label="berth+token")
            data = authed.workdir / "data"
            data.mkdir()
            backends.add_account(["--data-dir", str(data)], {})
            authed.auth = "token"
            # A fresh open twin, so both sides hold the same data (only the fixture): the main
            # servers carry every other phase's tags, repositories and events by now.
            twin = ours(scratch, args.workers, label="berth (open)")
            auth_pairs.append((twin, authed))
            everything += [twin, authed]
            if not args.berth_only:
                htpasswd = scratch / "htpasswd"
                backends.write_htpasswd(htpasswd)
                theirs = distribution(scratch, label="distribution+htpasswd", htpasswd=htpasswd)
                auth_pairs.append((distribution(scratch, label="distribution (open)"), theirs))
                everything += list(auth_pairs[-1])
        if "rehash" in phases:
            shared = scratch / "replicas-fs-sqlite"
            shared.mkdir()
            pair = [ours(scratch, 1, label=f"fs+sqlite replica {x}", data_dir=shared) for x in "AB"]
            replica_pairs.append(("fs+sqlite", pair[0], pair[1]))
            everything += pair
            if pg_s3:
                args_ = backend_args()
                pair = [
                    ours(scratch, 1, label=f"pg+s3 replica {x}", backend_args=args_, env=backends.S3_ENV) for x in "AB"
                ]
                for server in pair:
                    server.backends = services
                replica_pairs.append(("pg+s3", pair[0], pair[1]))
                everything += pair
        for server in everything:
            server.start()
            print(
                f"{server.label}: {server.base} pid {server.process.pid} "  # type: ignore[union-attr]
                f"workers {server.worker_pids()} data {server.workdir}",
                flush=True,
            )
        bench = Bench(scale, servers, args.profile.resolve() if args.profile else None, auth_pairs, replica_pairs)
        if pg_s3:
            bench.notes.append(
                f"{PG_S3}: moto's S3 server is Python and keeps objects in memory, so blob throughput on "
                "PostgreSQL + S3 measures moto as much as our registry; blobs are capped at 64 MiB in this mode. "
                "PostgreSQL runs with synchronous_commit=off (like SQLite's WAL + synchronous=NORMAL). "
                "Server cores of pg+s3 include PostgreSQL and moto."
            )
        bench.setup()
        for phase in phases:
            print(f"== {phase}", flush=True)
            try:
                getattr(bench, phase)()
            except (UnexpectedResponse, RuntimeError) as exc:
                text = exc.describe() if isinstance(exc, UnexpectedResponse) else str(exc)
                bench.failures.append(f"phase {phase}: {text}")
                print(f"  phase {phase} FAILED: {text}", flush=True)
        for server in everything:
            if server.process is not None and server.process.poll() is not None:
                bench.failures.append(f"{server.label} exited: {server.log_tail()}")
    finally:
        for server in everything:
            server.stop()
        if moto is not None:
            moto.stop()
        if postgres is not None:
            postgres.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    elapsed = time.perf_counter() - started
    print()
    print(
        f"berth vs CNCF Distribution ({'quick' if args.quick else 'full'} run, {elapsed:.0f} s; ratio = berth / "
        "Distribution; for times lower is better; others = cores used by other processes on the machine)"
    )
    if any(r.labels == ("berth", "distribution") for r in bench.rows):
        print(bench.table())
    extra = bench.extra_tables()
    if extra:
        print(extra)
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
                            "labels": list(r.labels),
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
