"""Load test: many clients pushing and pulling against two replicas while garbage collection
runs every few seconds and one replica is restarted (issue 11).

    python tests/bench/bench_load.py [--seconds 120] [--clients 64]

Two `berth serve` processes (one worker each) share one SQLite database and one blob
directory, each with its own data directory, on loopback ports; both collect garbage every 5 s
(`--gc-interval 5s`, a 60 s grace by default: blobs must outlive the slowest push). Each
client loops: push an image (one to three layers of 1 KiB to 3 MiB, monolithic or in
chunks, a config, a manifest under a tag of its own) to one replica, pull a random earlier
image from the other and check every byte; now and then it deletes one of its images
(garbage for the collector) or leaves an upload unfinished. Halfway through, replica B is
stopped (SIGTERM) and started again on its port.

Pass: no 5xx answer and no refused or reset connection except on connections to B while it
restarts (a GET or HEAD whose reused connection the server closed before answering is sent
once more, as docker's client does, and counted), garbage collection ran, and afterwards every
manifest answered 201 (and not deleted) is pullable from both replicas with intact bytes. An
operation whose connection the restarting replica refused or reset is counted and abandoned
(its image is not expected afterwards); the client goes on with the next one. Prints request
counts, rates, latencies, what the collections removed (from the shared database's `gc_run`
rows) and the verdict; exits 1 on failure. Loopback only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, wait_http  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
KIB = 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Replica:
    """`python -m registry` on a fixed port, restartable."""

    def __init__(self, name: str, root: Path, shared: Path, grace: str):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = root / name
        self.args = [
            "--database-url", f"sqlite:///{shared / 'registry.db'}", "--storage", f"file://{shared / 'blobs'}",
            "--gc-interval", "5s", "--gc-grace", grace, "--workers", "1", "--log-level", "warning",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.restarting = threading.Event()
        self.restarted_at: float | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "registry", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data)]
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
        self.process = subprocess.Popen([*command, *self.args], cwd=ROOT, env=env, start_new_session=True)
        wait_http(f"{self.url}/v2/", self.process, timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)

    def restart(self) -> float:
        self.restarting.set()
        started = time.monotonic()
        try:
            self.stop()
            self.start()
        finally:
            self.restarting.clear()
            self.restarted_at = time.monotonic()
        return self.restarted_at - started


@dataclass
class Image:
    repository: str
    tag: str
    digest: str
    manifest: bytes
    blobs: dict[str, bytes]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    excused: int = 0
    retried: int = 0
    resent: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    images: list[Image] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    mismatches: list[str] = field(default_factory=list)


class Client:
    def __init__(self, number: int, replicas: list[Replica], tally: Tally, seed: int):
        self.number = number
        self.replicas = replicas
        self.tally = tally
        self.random = random.Random(seed + number)
        self.http = requests.Session()
        self.repository = f"load/client{number % 16}"
        self.pushed: list[Image] = []

    def request(self, replica: Replica, kind: str, method: str, path: str, **kwargs: object) -> requests.Response:
        restarting = replica.restarting.is_set()
        started = time.perf_counter()
        try:
            response = self.send(method, f"{replica.url}{path}", **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if not (restarting or replica.restarting.is_set()):
                since = ""
                if replica.restarted_at is not None:
                    since = f", {time.monotonic() - replica.restarted_at:.2f} s after its restart"
                with self.tally.lock:
                    self.tally.server_errors.append(f"{method} {path} on {replica.name}{since}: {str(exc)[-160:]}")
            raise
        elapsed = time.perf_counter() - started
        with self.tally.lock:
            self.tally.statuses[f"{kind} {response.status_code}"] += 1
            self.tally.latencies.setdefault(kind, []).append(elapsed)
            if response.status_code >= 500:
                if restarting or replica.restarting.is_set():
                    self.tally.excused += 1
                else:
                    self.tally.server_errors.append(f"{method} {path} on {replica.name}: {response.status_code}")
        return response

    def send(self, method: str, url: str, **kwargs: object) -> requests.Response:
        """One request; a GET or HEAD whose connection closed before any answer is sent once more,
        as docker's client does: the server may close a keep-alive connection that was idle for
        its timeout (5 s) just as the client reuses it."""
        try:
            return self.http.request(method, url, timeout=120, **kwargs)  # type: ignore[arg-type]
        except requests.ConnectionError as exc:
            if method not in ("GET", "HEAD") or "Connection aborted" not in str(exc):
                raise
        with self.tally.lock:
            self.tally.resent += 1
        return self.http.request(method, url, timeout=120, **kwargs)  # type: ignore[arg-type]

    def expect(self, response: requests.Response, status: int, what: str) -> None:
        if response.status_code != status:
            raise RuntimeError(f"{what}: {response.status_code} {response.text[:200]}")

    def push_blob(self, replica: Replica, data: bytes) -> str:
        digest = sha256(data)
        uploads = f"/v2/{self.repository}/blobs/uploads/"
        if len(data) <= 1024 * KIB or self.random.random() < 0.5:
            response = self.request(replica, "blob push", "POST", f"{uploads}?digest={digest}", data=data)
            self.expect(response, 201, "POST")
            return digest
        location = self.request(replica, "blob push", "POST", uploads).headers["Location"]
        step = 512 * KIB
        for offset in range(0, len(data), step):
            chunk = data[offset : offset + step]
            headers = {"Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
            response = self.request(replica, "blob chunk", "PATCH", location, data=chunk, headers=headers)
            self.expect(response, 202, "PATCH")
            location = response.headers["Location"]
        self.expect(self.request(replica, "blob push", "PUT", f"{location}?digest={digest}"), 201, "PUT")
        return digest

    def push_image(self, replica: Replica) -> Image:
        layers = [os.urandom(self.random.choice([KIB, 16 * KIB, 256 * KIB, 3 * 1024 * KIB])) for _ in range(3)]
        layers = layers[: self.random.randint(1, 3)]
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
        blobs = {self.push_blob(replica, blob): blob for blob in [config, *layers]}
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": len(layer)}
                for layer in layers
            ],
        }
        body = json.dumps(manifest).encode()
        tag = f"c{self.number}-{os.urandom(4).hex()}"
        path = f"/v2/{self.repository}/manifests/{tag}"
        headers = {"Content-Type": OCI_MANIFEST}
        self.expect(self.request(replica, "manifest put", "PUT", path, data=body, headers=headers), 201, "manifest")
        return Image(self.repository, tag, sha256(body), body, blobs)

    def pull(self, replica: Replica, image: Image) -> None:
        got = self.request(replica, "manifest get", "GET", f"/v2/{image.repository}/manifests/{image.digest}")
        if got.status_code != 200 or got.content != image.manifest:
            self.record_mismatch(image, f"manifest {image.digest} on {replica.name}: {got.status_code}")
            return
        for digest, data in image.blobs.items():
            blob = self.request(replica, "blob get", "GET", f"/v2/{image.repository}/blobs/{digest}")
            if blob.status_code != 200 or blob.content != data:
                self.record_mismatch(image, f"blob {digest} of {image.digest} on {replica.name}: {blob.status_code}")

    def record_mismatch(self, image: Image | None, text: str) -> None:
        """A failed pull of an image another client deleted meanwhile is no failure."""
        with self.tally.lock:
            if image is None or image.digest not in self.tally.deleted:
                self.tally.mismatches.append(text)

    def step(self) -> None:
        writer, reader = self.random.sample(self.replicas, 2)
        choice = self.random.random()
        if choice < 0.05 and self.pushed:
            image = self.pushed.pop(self.random.randrange(len(self.pushed)))
            with self.tally.lock:
                self.tally.deleted.add(image.digest)
                self.tally.images.remove(image)
            path = f"/v2/{image.repository}/manifests/{image.digest}"
            self.expect(self.request(writer, "manifest delete", "DELETE", path), 202, "delete")
            return
        if choice < 0.08:  # an abandoned upload, for the collector
            location = self.request(writer, "blob push", "POST", f"/v2/{self.repository}/blobs/uploads/")
            self.request(writer, "blob chunk", "PATCH", location.headers["Location"], data=os.urandom(64 * KIB))
            return
        image = self.push_image(writer)
        self.pushed.append(image)
        with self.tally.lock:
            self.tally.images.append(image)
            candidates = list(self.tally.images)
        self.pull(reader, self.random.choice(candidates))

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                self.step()
            except (requests.ConnectionError, requests.Timeout):
                with self.tally.lock:
                    self.tally.retried += 1  # the restarting replica went away mid-request
            except RuntimeError as exc:
                self.record_mismatch(None, f"client {self.number}: {exc}")


def verify(replicas: list[Replica], tally: Tally) -> list[str]:
    """Every manifest answered 201 and not deleted, with every blob, from both replicas."""
    problems = []
    http = requests.Session()
    for image in tally.images:
        for replica in replicas:
            got = http.get(f"{replica.url}/v2/{image.repository}/manifests/{image.tag}")
            if got.content != image.manifest:
                problems.append(f"{image.repository}:{image.tag} on {replica.name}: {got.status_code}")
                continue
            for digest in image.blobs:
                blob = http.get(f"{replica.url}/v2/{image.repository}/blobs/{digest}")
                if blob.status_code != 200 or hashlib.sha256(blob.content).hexdigest() != digest[7:]:
                    problems.append(f"{digest} of {image.tag} on {replica.name}: {blob.status_code}")
    return problems


def collections(shared: Path) -> tuple[int, int, int, int]:
    """Runs, blobs, uploads and bytes the replicas' scheduled collections recorded."""
    with sqlite3.connect(shared / "registry.db") as db:
        row = db.execute(
            "SELECT count(*), coalesce(sum(blobs), 0), coalesce(sum(uploads), 0), coalesce(sum(bytes_reclaimed), 0)"
            " FROM gc_run WHERE trigger = 'schedule'"
        ).fetchone()
    return row[0], row[1], row[2], row[3]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the clients run (default 120)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--gc-grace", default="60s", help="the replicas' collection grace (default 60s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="berth-load-"))
    shared = root / "shared"
    shared.mkdir()
    replicas = [Replica(name, root, shared, args.gc_grace) for name in ("A", "B")]
    try:
        for replica in replicas:
            replica.start()
        tally = Tally()
        started = time.monotonic()
        deadline = started + args.seconds
        clients = [Client(n, replicas, tally, args.seed) for n in range(args.clients)]
        threads = [threading.Thread(target=c.run, args=(deadline,), daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        time.sleep(args.seconds / 2)
        restart = replicas[1].restart()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        problems = verify(replicas, tally) + tally.mismatches
        runs, blobs, uploads, reclaimed = collections(shared)
        if runs == 0:
            problems.append("garbage collection never ran")
        print(f"{args.clients} clients, {elapsed:.0f} s, replica B restarted in {restart:.1f} s")
        for kind, values in sorted(tally.latencies.items()):
            print(
                f"  {kind:16} {len(values):7d} requests  {len(values) / elapsed:8.1f}/s  "
                f"p50 {percentile(values, 0.5) * 1000:7.1f} ms  p99 {percentile(values, 0.99) * 1000:7.1f} ms"
            )
        print("  statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())))
        print(f"  images kept: {len(tally.images)}, deleted: {len(tally.deleted)}")
        print(f"  operations cut by the restart and retried: {tally.retried}; 5xx during the restart: {tally.excused}")
        print(f"  GET/HEAD sent again after an idle keep-alive connection closed as it was reused: {tally.resent}")
        print(
            f"  garbage collection: {runs} runs removed {blobs} blobs and {uploads} uploads, "
            f"{reclaimed / (1024 * 1024):.1f} MiB"
        )
        failures = tally.server_errors + problems
        for line in failures[:30]:
            print(f"  FAIL {line}")
        cut = len(tally.server_errors)
        print("PASS" if not failures else f"FAIL ({cut} 5xx or cut connections, {len(problems)} other)")
        return 0 if not failures else 1
    finally:
        for replica in replicas:
            replica.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
