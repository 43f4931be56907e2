"""Benchmark: pulls through Berth's pull-through cache beside pulls of the same bytes pushed to Berth
and pulls straight from the upstream (CNCF Distribution).

Run: python tests/bench/bench_upstream.py [--mib 256] [--rounds 3]

A pull is what a client does: GET the manifest by tag, then GET every blob (streamed, bytes
counted). Rows: `direct` from the upstream; `cold` through Berth with nothing cached (each round a
new repository, so every blob is fetched from the upstream while streamed); `cached` through Berth
again; `pushed` the same image pushed to Berth. Medians in seconds, ratios from this one run.
Targets (issue 16): cached <= pushed, cold <= 1.2 x direct.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.client.images import random_bytes  # noqa: E402
from tests.client.servers import Distribution  # noqa: E402
from tests.conftest import RegistryProcess  # noqa: E402
from tests.registry.test_upstreams import add_upstream, push_image  # noqa: E402

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def pull(base: str, repository: str) -> int:
    with requests.Session() as http:
        manifest = http.get(f"{base}/v2/{repository}/manifests/1", headers={"Accept": ACCEPT}, timeout=600)
        manifest.raise_for_status()
        document = manifest.json()
        total = 0
        for blob in [document["config"], *document["layers"]]:
            with http.get(f"{base}/v2/{repository}/blobs/{blob['digest']}", stream=True, timeout=600) as response:
                response.raise_for_status()
                for chunk in response.iter_content(1 << 20):
                    total += len(chunk)
        return total


def timed(function, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-upstream-"))
    upstream = Distribution(tmp / "upstream")
    berth = RegistryProcess(tmp / "berth", workers=2)
    try:
        layers = [{f"big{i}": random_bytes(64 << 20, i) for i in range(max(args.mib // 64, 1))}]
        rows: dict[str, list[float]] = {"direct": [], "cold": [], "cached": [], "pushed": []}
        for n in range(args.rounds):
            push_image(tmp, upstream.host, f"bench/r{n}:1", layers, compress=False)
        push_image(tmp, berth.url.removeprefix("http://"), "local/bench:1", layers, compress=False)
        add_upstream(berth.data_dir, "up", upstream.url, "--prefix", "hub")
        deadline = time.monotonic() + 30  # every worker rereads the upstreams within 2 s: wait until pushes are refused
        while time.monotonic() < deadline:
            refused = [
                requests.post(f"{berth.url}/v2/hub/probe/blobs/uploads/", timeout=10).status_code for _ in range(4)
            ]
            if refused == [403] * 4:
                break
        for n in range(args.rounds):
            rows["direct"].append(timed(pull, upstream.url, f"bench/r{n}"))
            rows["cold"].append(timed(pull, berth.url, f"hub/bench/r{n}"))
            rows["cached"].append(timed(pull, berth.url, f"hub/bench/r{n}"))
            rows["pushed"].append(timed(pull, berth.url, "local/bench"))
        medians = {k: statistics.median(v) for k, v in rows.items()}
        print(f"{args.mib} MiB image, {args.rounds} rounds, medians")
        for name, value in medians.items():
            print(f"{name:8} {value:7.3f} s  {args.mib / value:8.1f} MiB/s")
        print(f"cached / pushed = {medians['cached'] / medians['pushed']:.2f} (target <= 1.0)")
        print(f"cold / direct   = {medians['cold'] / medians['direct']:.2f} (target <= 1.2)")
    finally:
        berth.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
