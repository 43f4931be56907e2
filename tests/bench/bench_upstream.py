"""Benchmark: pulls through Berth's pull-through cache beside pulls of the same bytes pushed to Berth
and pulls straight from the upstream (CNCF Distribution).

Run: python tests/bench/bench_upstream.py [--mib 256] [--rounds 5] [--small-pulls 300]

A pull is what a client does: GET the manifest by tag, then GET every blob (streamed, bytes
counted). Each round has an image of its own bytes, so that:
- `direct` pulls it from the upstream;
- `cold` pulls it through Berth with nothing cached (every blob is fetched from the upstream
  while streamed);
- `cached` pulls it through Berth again, and `pushed` pulls the same image pushed to Berth (the
  same stored files), in alternating order from round to round.
Then a small image (a config and three 4 KiB layers, where the per-request work shows) is pulled
`--small-pulls` times cached and as many times pushed, alternately over one connection each.
Medians of wall time; beside them the CPU time Berth's processes spent (summed from /proc over
the process group, per pull), which the other loads of a shared machine disturb less. Ratios
from this one run. Targets (issue 16): cached <= pushed, cold <= 1.2 x direct.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def pull(base: str, repository: str, http: requests.Session | None = None) -> int:
    session = http or requests.Session()
    try:
        manifest = session.get(f"{base}/v2/{repository}/manifests/1", headers={"Accept": ACCEPT}, timeout=600)
        manifest.raise_for_status()
        document = manifest.json()
        total = 0
        for blob in [document["config"], *document["layers"]]:
            with session.get(f"{base}/v2/{repository}/blobs/{blob['digest']}", stream=True, timeout=600) as response:
                response.raise_for_status()
                for chunk in response.iter_content(1 << 20):
                    total += len(chunk)
        return total
    finally:
        if http is None:
            session.close()


def timed(function, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def group_cpu(group: int) -> float:
    """CPU seconds (user and system) the live processes of a process group have used."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # fields after the command: state, ppid, pgrp, ...
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measured(berth: RegistryProcess, repository: str, http: requests.Session | None = None) -> tuple[float, float]:
    """(wall seconds, Berth's CPU seconds) of one pull."""
    cpu = group_cpu(berth.process.pid)
    wall = timed(pull, berth.url, repository, http)
    return wall, group_cpu(berth.process.pid) - cpu


def wait_until_prefix_refuses_pushes(berth: RegistryProcess) -> None:
    """Every worker rereads the upstreams within 2 s: wait until each refuses a push under the prefix."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        refused = [requests.post(f"{berth.url}/v2/hub/probe/blobs/uploads/", timeout=10).status_code for _ in range(4)]
        if refused == [403] * 4:
            return
    raise SystemExit("the upstream was not configured on every worker within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small-pulls", type=int, default=300)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-upstream-"))
    upstream = Distribution(tmp / "upstream")
    berth = RegistryProcess(tmp / "berth", workers=2)
    berth_host = berth.url.removeprefix("http://")
    try:
        add_upstream(berth.data_dir, "up", upstream.url, "--prefix", "hub", "--tag-ttl", "1h")
        wait_until_prefix_refuses_pushes(berth)
        rows: dict[str, list[float]] = {"direct": [], "cold": [], "cached": [], "pushed": []}
        cpu: dict[str, list[float]] = {"cold": [], "cached": [], "pushed": []}
        layer_count = max(args.mib // 64, 1)
        for n in range(args.rounds):
            layers = [{f"big{i}": random_bytes(64 << 20, 1000 * n + i)} for i in range(layer_count)]
            push_image(tmp, upstream.host, f"bench/r{n}:1", layers, compress=False)
            rows["direct"].append(timed(pull, upstream.url, f"bench/r{n}"))
            wall, used = measured(berth, f"hub/bench/r{n}")
            rows["cold"].append(wall)
            cpu["cold"].append(used)
            push_image(tmp, berth_host, f"local/r{n}:1", layers, compress=False)
            for kind in ["cached", "pushed"] if n % 2 == 0 else ["pushed", "cached"]:
                wall, used = measured(berth, f"hub/bench/r{n}" if kind == "cached" else f"local/r{n}")
                rows[kind].append(wall)
                cpu[kind].append(used)
        medians = {k: statistics.median(v) for k, v in rows.items()}
        print(f"{layer_count * 64} MiB image, {args.rounds} rounds, medians (Berth's CPU: mean per pull)")
        for name, value in medians.items():
            used = f"  CPU {statistics.mean(cpu[name]):6.3f} s" if name in cpu else ""
            print(f"{name:8} {value:7.3f} s  {layer_count * 64 / value:8.1f} MiB/s{used}")
        print(
            f"cached / pushed = {medians['cached'] / medians['pushed']:.2f} wall, "
            f"{statistics.mean(cpu['cached']) / statistics.mean(cpu['pushed']):.2f} CPU (target <= 1.0)"
        )
        print(f"cold / direct   = {medians['cold'] / medians['direct']:.2f} (target <= 1.2)")

        small = [{f"s{i}": random_bytes(4096, 7000 + i)} for i in range(3)]
        push_image(tmp, upstream.host, "small/app:1", small, compress=False)
        push_image(tmp, berth_host, "local/small:1", small, compress=False)
        pull(berth.url, "hub/small/app")
        times: dict[str, list[float]] = {"cached": [], "pushed": []}
        used_cpu = {"cached": 0.0, "pushed": 0.0}
        sessions = {"cached": requests.Session(), "pushed": requests.Session()}
        for n in range(args.small_pulls):
            for kind in ["cached", "pushed"] if n % 2 == 0 else ["pushed", "cached"]:
                repository = "hub/small/app" if kind == "cached" else "local/small"
                wall, used = measured(berth, repository, sessions[kind])
                times[kind].append(wall)
                used_cpu[kind] += used
        for session in sessions.values():
            session.close()
        small_medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
        print(f"small image (4 requests a pull), {args.small_pulls} pulls each, median ms per pull")
        for name, value in small_medians.items():
            print(f"{name:8} {value:7.2f} ms  CPU {used_cpu[name] * 1000 / args.small_pulls:6.2f} ms")
        print(
            f"cached / pushed = {small_medians['cached'] / small_medians['pushed']:.2f} wall, "
            f"{used_cpu['cached'] / used_cpu['pushed']:.2f} CPU (target <= 1.0)"
        )
    finally:
        berth.stop()
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # gigabytes of images


if __name__ == "__main__":
    main()
