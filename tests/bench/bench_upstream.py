"""Benchmark: pulls through Berth's pull-through cache beside pulls of the same bytes pushed to Berth
and pulls straight from the upstream (CNCF Distribution).

Run: python tests/bench/bench_upstream.py [--mib 256] [--rounds 5] [--small-pulls 300] [--link-mbit N]

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

These figures are all on loopback, where Distribution, Berth and the client share the machine's
cores and nothing else limits a pull: a cold pull's wall time is then the CPU of receiving,
hashing, writing and sending on top of Distribution's and the client's (docs/architecture.md),
so cold / direct measures Berth's CPU per byte against Distribution's. With `--link-mbit N`
(root), `direct` and `cold` are measured again with the upstream behind an emulated link of N
Mbit/s each way, as in a deployment where the upstream is remote: two network namespaces
(`berth-bench-up` with Distribution, `berth-bench-site` with Berth and the client; nothing in
the machine's own namespace) joined by a veth pair with a `tbf` rate limit on both ends. There
a store-then-serve proxy would take about 2x (the link's time, then the serving), and one that
streams while it stores about 1x as long as Berth keeps ahead of the link: that ratio is what
the target asks of a deployment, and the link rows show it beside the CPU-bound loopback one.
`tbf` rather than netem's rate: this kernel has no netem (so there is no added delay either),
and tbf is the shaper meant for a rate: a token bucket of `burst` bytes (two 64 KiB GSO
segments, or 1 ms of the rate if more; only that much passes at veth speed, up to 10 Gbit/s
under 0.5% of a 256 MiB pull) and a queue of at most 10 ms of the rate, which TCP fills before
a drop slows it, so the link runs at its rate (TCP payload is 1448 of each 1514-byte frame tbf
counts: 95.6%).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
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
UP, SITE = "berth-bench-up", "berth-bench-site"  # the link's namespaces: Distribution's; Berth's and the client's
UP_ADDRESS, SITE_ADDRESS = "10.213.0.1", "10.213.0.2"  # the veth pair's ends (only inside the namespaces)
IN_SITE = "BERTH_BENCH_LINK_DIR"  # set, to the directory for the link's data, when run inside `SITE`
MAX_LINK_MBIT = 100_000


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


def link_rate(text: str) -> int:
    """`--link-mbit`: a whole number of Mbit/s that tc takes and a pull can use."""
    try:
        mbit = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of Mbit/s: {text!r}") from None
    if not 1 <= mbit <= MAX_LINK_MBIT:
        raise argparse.ArgumentTypeError(f"{mbit} is outside 1..{MAX_LINK_MBIT} Mbit/s")
    return mbit


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small-pulls", type=int, default=300)
    parser.add_argument(
        "--link-mbit",
        type=link_rate,
        help="also pull direct and cold with the upstream behind an emulated link of this rate (needs root)",
    )
    return parser.parse_args(argv)


def loopback_pulls(args: argparse.Namespace) -> None:
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
            cpu_text = f"  CPU {statistics.mean(cpu[name]):6.3f} s" if name in cpu else ""
            print(f"{name:8} {value:7.3f} s  {layer_count * 64 / value:8.1f} MiB/s{cpu_text}")
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


def namespace_processes(name: str) -> list[int]:
    """The processes in network namespace `name` (left there by a run that was killed)."""
    try:
        wanted = os.stat(f"/run/netns/{name}")
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        try:
            ns = os.stat(f"/proc/{entry.name}/ns/net") if entry.name.isdigit() else None
        except OSError:
            continue
        if ns and (ns.st_dev, ns.st_ino) == (wanted.st_dev, wanted.st_ino):
            found.append(int(entry.name))
    return found


def remove_link() -> None:
    """Ends what is left in the link's namespaces, then deletes them (the veth pair goes with them)."""
    for name in (UP, SITE):
        if not Path("/run/netns", name).exists():
            continue
        processes = namespace_processes(name)
        for pid in processes:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "delete", name], check=True)


def tbf_burst(mbit: int) -> int:
    """The token bucket's bytes: two 64 KiB GSO segments, or 1 ms of the rate if more."""
    return max(128 << 10, mbit * 1_000_000 // 8 // 1000)


def make_link(mbit: int) -> None:
    """Two namespaces joined by a veth pair shaped to `mbit` each way."""
    if any(Path("/run/netns", name).exists() for name in (UP, SITE)):
        print(f"removing {UP} and {SITE}, left by an earlier run", file=sys.stderr)
        remove_link()
    burst = tbf_burst(mbit)
    steps = [
        ["ip", "netns", "add", UP],
        ["ip", "netns", "add", SITE],
        ["ip", "-n", UP, "link", "add", "veth-up", "type", "veth", "peer", "name", "veth-site", "netns", SITE],
        ["ip", "-n", UP, "addr", "add", f"{UP_ADDRESS}/30", "dev", "veth-up"],
        ["ip", "-n", SITE, "addr", "add", f"{SITE_ADDRESS}/30", "dev", "veth-site"],
    ]
    for name, device in ((UP, "veth-up"), (SITE, "veth-site")):
        steps += [
            ["ip", "-n", name, "link", "set", "lo", "up"],
            ["ip", "-n", name, "link", "set", device, "up"],
            ["tc", "-n", name, "qdisc", "add", "dev", device, "root", "tbf"]
            + ["rate", f"{mbit}mbit", "burst", str(burst), "latency", "10ms"],
        ]
    for step in steps:
        subprocess.run(step, check=True)


def link_pulls(args: argparse.Namespace, tmp: Path) -> None:
    """Inside `SITE`: `direct` and `cold` pulls with Distribution across the link, in `UP`."""
    upstream = Distribution(tmp / "upstream", address=UP_ADDRESS, enter=("nsenter", f"--net=/run/netns/{UP}"))
    berth = RegistryProcess(tmp / "berth", workers=2)
    try:
        add_upstream(berth.data_dir, "up", upstream.url, "--prefix", "hub", "--tag-ttl", "1h")
        wait_until_prefix_refuses_pushes(berth)
        rows: dict[str, list[float]] = {"direct": [], "cold": []}
        cpu: list[float] = []
        layer_count = max(args.mib // 64, 1)
        for n in range(args.rounds):
            layers = [{f"big{i}": random_bytes(64 << 20, 1000 * n + i)} for i in range(layer_count)]
            push_image(tmp, upstream.host, f"bench/r{n}:1", layers, compress=False)
            for kind in ["direct", "cold"] if n % 2 == 0 else ["cold", "direct"]:
                if kind == "direct":
                    rows["direct"].append(timed(pull, upstream.url, f"bench/r{n}"))
                else:
                    wall, used = measured(berth, f"hub/bench/r{n}")
                    rows["cold"].append(wall)
                    cpu.append(used)
        medians = {k: statistics.median(v) for k, v in rows.items()}
        mib = layer_count * 64
        ceiling = args.link_mbit * 1e6 / 8 * 1448 / 1514 / (1 << 20)
        shaping = f"tbf on both ends, burst {tbf_burst(args.link_mbit) >> 10} KiB, queue <= 10 ms"
        print(f"over a {args.link_mbit} Mbit/s link ({shaping}), {mib} MiB image, {args.rounds} rounds, medians")
        print(f"direct   {medians['direct']:7.3f} s  {mib / medians['direct']:8.1f} MiB/s  (link: {ceiling:.1f} MiB/s)")
        print(
            f"cold     {medians['cold']:7.3f} s  {mib / medians['cold']:8.1f} MiB/s  CPU {statistics.mean(cpu):6.3f} s"
        )
        ratio = medians["cold"] / medians["direct"]
        print(f"cold / direct over a {args.link_mbit} Mbit/s link = {ratio:.2f}x (target <= 1.2)")
    finally:
        berth.stop()
        upstream.stop()


def linked_pulls(args: argparse.Namespace) -> None:
    """Makes the link, runs this script again inside `SITE` for the link's pulls, and removes it all."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-upstream-link-"))
    try:
        make_link(args.link_mbit)
        done = subprocess.run(
            ["nsenter", f"--net=/run/netns/{SITE}", sys.executable, __file__, *sys.argv[1:]],
            env={**os.environ, IN_SITE: str(tmp)},
        )
        if done.returncode:
            raise SystemExit(f"the pulls over the link failed ({done.returncode})")
    finally:
        remove_link()  # and with it whatever a killed run left in the namespaces
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    args = arguments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # clean up as on Ctrl-C
    if IN_SITE in os.environ:
        link_pulls(args, Path(os.environ[IN_SITE]))
        return
    if args.link_mbit and os.geteuid() != 0:
        raise SystemExit("--link-mbit needs root: it makes network namespaces and a veth pair")
    loopback_pulls(args)
    if args.link_mbit:
        linked_pulls(args)


if __name__ == "__main__":
    main()
