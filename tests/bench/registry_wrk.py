"""Requests/s and latency percentiles from `wrk` (Debian package `wrk`), driven by Lua scripts.

wrk is C with one epoll loop per thread; with one thread it spends far less CPU per request
than any Python client, which matters on a 2-core machine where the servers need the cores.
The Lua `done` hook prints one JSON line with the totals, the status errors and p50/p99.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""

RESPONSE_CHECK = r"""
bad = 0
response = function(status, headers, body)
  if status ~= %(expect)d and bad < 3 then
    bad = bad + 1
    io.stderr:write("BENCH_BAD " .. status .. " " .. tostring(body):sub(1, 300) .. "\n")
  end
end
"""


def lua_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def static_script(method: str, path: str, headers: dict[str, str], body: str | None, expect: int) -> str:
    lines = [f"wrk.method = {lua_string(method)}", f"wrk.path = {lua_string(path)}"]
    for key, value in headers.items():
        lines.append(f"wrk.headers[{lua_string(key)}] = {lua_string(value)}")
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    return "\n".join(lines) + "\n" + RESPONSE_CHECK % {"expect": expect} + DONE


def counter_script(method: str, path_prefix: str, headers: dict[str, str], body: str, expect: int) -> str:
    """A request whose path ends with a fresh counter each time (a new tag per PUT)."""
    header_table = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    return (
        f"counter = 0\nheaders = {{{header_table}}}\nbody = {lua_string(body)}\n"
        "request = function()\n  counter = counter + 1\n"
        f"  return wrk.format({lua_string(method)}, {lua_string(path_prefix)} .. counter, headers, body)\nend\n"
        + RESPONSE_CHECK % {"expect": expect}
        + DONE
    )


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    client_cpu: float  # wrk's CPU seconds / wall seconds (1.0 = one full core)
    bad_samples: list[str]


def available() -> bool:
    return shutil.which("wrk") is not None


def run(base_url: str, script: str, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        path = fh.name
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                path,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(path)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-500:]!r} {proc.stderr[-500:]!r}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    secs = data["duration_us"] / 1e6
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    bad = [ln.removeprefix("BENCH_BAD ") for ln in proc.stderr.splitlines() if ln.startswith("BENCH_BAD ")]
    return WrkResult(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        client_cpu=cpu / secs if secs else 0.0,
        bad_samples=bad,
    )
