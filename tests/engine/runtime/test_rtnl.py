"""rtnl and netlink in a throw-away network namespace: a veth into a fresh namespace, addressed and routed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root

SCRIPT = """
import os, subprocess, sys
from engine.runtime import netlink, rtnl
netlink.ensure_bridge("brt", "10.8.0.1", 24)
netlink.ensure_bridge("brt", "10.8.0.1", 24)  # again: repairs nothing, fails nothing
fd = rtnl.new_namespace()
rtnl.plug(fd, bridge="brt", host_name="vetht", ifname="eth0", address="10.8.0.2", prefixlen=24,
          mac="02:42:0a:08:00:02", gateway="10.8.0.1")
inside = ["nsenter", f"--net=/proc/{os.getpid()}/fd/{fd}"]
print(subprocess.run([*inside, "ip", "-o", "-4", "addr", "show", "eth0"], capture_output=True, text=True).stdout)
print(subprocess.run([*inside, "ip", "route"], capture_output=True, text=True).stdout)
print(subprocess.run([*inside, "ip", "-o", "link", "show", "eth0"], capture_output=True, text=True).stdout)
print(subprocess.run(["ip", "-o", "link", "show", "vetht"], capture_output=True, text=True).stdout)
for bad in (dict(bridge="nobridge", host_name="vethu"), dict(bridge="brt", host_name="vetht")):
    try:
        rtnl.plug(fd, ifname="eth1", address="10.8.0.3", prefixlen=24, mac="02:42:0a:08:00:03", gateway=None, **bad)
        print("accepted", bad)
    except OSError as exc:
        print("refused:", exc)
netlink.delete_link("vetht")
netlink.delete_link("vetht")
print(subprocess.run([*inside, "ip", "-o", "link"], capture_output=True, text=True).stdout)
"""


def test_plug_a_fresh_namespace_and_refuse_bad_requests() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "inet 10.8.0.2/24" in out
    assert "default via 10.8.0.1 dev eth0" in out
    assert "02:42:0a:08:00:02" in out and "state UP" in out
    assert "master brt" in out
    assert "accepted" not in out
    refusals = [line for line in out.splitlines() if line.startswith("refused:")]
    assert len(refusals) == 2 and "File exists" in refusals[1]
    assert "eth0" not in out.split("refused:")[-1]  # deleting the host end took the peer along
