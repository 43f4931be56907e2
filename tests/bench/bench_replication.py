"""Benchmark: `berth replicate run` beside `skopeo sync` copying the same repositories from one Berth
to a CNCF Distribution.

Run: python tests/bench/bench_replication.py [--repositories 8] [--rounds 3] [--base-mib 16] [--layer-mib 4]

The source Berth holds `apps/r0..rN`, each with tags v1 and v2 (a base layer every repository
shares, a layer of its own per tag, a config) and `apps/multi`, a two-platform index. Each round
starts two empty Distributions; one receives `berth replicate run` (push mode, `apps/*`), the
other `skopeo sync --all --preserve-digests` of the same repositories (order alternating by
round). Both results are checked tag by tag against the source. Then both run again with
nothing to copy. Rows: the command's wall time (a Python process start, imports and the schema
check for berth, a Go start for skopeo) and, for berth, the run's own time from its
`replication_run` row (`-run`), which is what the server's on-push and scheduled replication
pay. Medians; ratios from this one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from registry.oci import mediatypes as mt  # noqa: E402
from tests.client.images import random_bytes  # noqa: E402
from tests.client.servers import Distribution  # noqa: E402
from tests.conftest import RegistryProcess  # noqa: E402
from tests.registry.test_replication import ACCEPT, digest_of, put_blob, put_manifest  # noqa: E402

BERTH = [sys.executable, "-c", "from engine.cli import main; main()"]


def manifest_doc(url: str, repository: str, layers: list[bytes], arch: str = "amd64") -> dict[str, object]:
    """Push a config and `layers`; returns the image manifest naming them."""
    config = put_blob(url, repository, json.dumps({"architecture": arch, "os": "linux"}).encode())
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, **config},
        "layers": [{"mediaType": mt.OCI_LAYER, **put_blob(url, repository, layer)} for layer in layers],
    }


def fill(url: str, repositories: int, base_mib: int, layer_mib: int) -> dict[tuple[str, str], str]:
    """Push the source repositories; returns {(repository, tag): digest}."""
    base = random_bytes(base_mib << 20, 1)
    expected = {}
    for n in range(repositories):
        for t, tag in enumerate(("v1", "v2")):
            doc = manifest_doc(url, f"apps/r{n}", [base, random_bytes(layer_mib << 20, 100 * n + t + 2)])
            expected[(f"apps/r{n}", tag)] = str(put_manifest(url, f"apps/r{n}", tag, doc)["digest"])
    children = []
    for seed, arch in enumerate(("amd64", "arm64")):
        doc = manifest_doc(url, "apps/multi", [random_bytes(layer_mib << 20, 9000 + seed)], arch)
        child = put_manifest(url, "apps/multi", digest_of(json.dumps(doc).encode()), doc)
        children.append({**child, "platform": {"architecture": arch, "os": "linux"}})
    index = put_manifest(url, "apps/multi", "1", {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children})
    expected[("apps/multi", "1")] = str(index["digest"])
    return expected


def check(url: str, expected: dict[tuple[str, str], str], who: str) -> None:
    for (repository, tag), digest in expected.items():
        response = requests.head(f"{url}/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT}, timeout=30)
        found = response.headers.get("Docker-Content-Digest")
        if found != digest:
            raise SystemExit(f"{who}: {repository}:{tag} is {found} at the destination, not {digest}")


def run(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed: {done.stdout}{done.stderr}")
    return took


def last_run_seconds(berth: RegistryProcess, name: str) -> float:
    with sqlite3.connect(berth.data_dir / "registry.db") as db:
        started, finished = db.execute(
            "SELECT started_at, finished_at FROM replication_run WHERE replication = ? ORDER BY id DESC LIMIT 1",
            (name,),
        ).fetchone()
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repositories", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-mib", type=int, default=16)
    parser.add_argument("--layer-mib", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    source = RegistryProcess(tmp / "source", workers=2)
    source_host = source.url.removeprefix("http://")
    flags = ["--data-dir", str(source.data_dir)]
    rows: dict[str, list[float]] = {
        k: [] for k in ("berth", "berth-run", "skopeo", "berth-noop", "berth-noop-run", "skopeo-noop")
    }
    try:
        expected = fill(source.url, args.repositories, args.base_mib, args.layer_mib)
        listing = tmp / "sync.yml"
        repositories = sorted({repository for repository, _tag in expected})
        listing.write_text(
            json.dumps({source_host: {"tls-verify": False, "images": {r: [] for r in repositories}}})  # JSON is YAML
        )
        for n in range(args.rounds):
            targets = {who: Distribution(tmp / f"{who}-{n}") for who in ("berth", "skopeo")}
            try:
                name = f"bench-{n}"
                add = ["replicate", "add", name, targets["berth"].url, "--repository", "apps/*", "--mode", "push"]
                run([*BERTH, *add, *flags])
                commands = {
                    "berth": [*BERTH, "replicate", "run", name, *flags],
                    "skopeo": [
                        "skopeo",
                        "--insecure-policy",
                        "sync",
                        "--src",
                        "yaml",
                        "--dest",
                        "docker",
                        "--dest-tls-verify=false",
                        "--all",
                        "--preserve-digests",
                        str(listing),
                        f"{targets['skopeo'].host}/apps",
                    ],
                }
                order = ["berth", "skopeo"] if n % 2 == 0 else ["skopeo", "berth"]
                for who in order:
                    rows[who].append(run(commands[who]))
                    check(targets[who].url, expected, who)
                    if who == "berth":
                        rows["berth-run"].append(last_run_seconds(source, name))
                for who in order:
                    rows[f"{who}-noop"].append(run(commands[who]))
                    if who == "berth":
                        rows["berth-noop-run"].append(last_run_seconds(source, name))
            finally:
                for target in targets.values():
                    target.stop()
        medians = {k: statistics.median(v) for k, v in rows.items()}
        unique = args.base_mib + (2 * args.repositories + 2) * args.layer_mib
        print(
            f"{args.repositories} repositories x 2 tags + a 2-platform index, {unique} MiB of distinct blobs, "
            f"{args.rounds} rounds, medians"
        )
        for key, value in medians.items():
            print(f"{key:14} {value:7.2f} s")
        print(
            f"copy:    berth / skopeo sync = {medians['berth'] / medians['skopeo']:.2f} (run alone: "
            f"{medians['berth-run'] / medians['skopeo']:.2f})"
        )
        print(
            f"nothing: berth / skopeo sync = {medians['berth-noop'] / medians['skopeo-noop']:.2f} (run alone: "
            f"{medians['berth-noop-run'] / medians['skopeo-noop']:.2f})"
        )
    finally:
        source.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
