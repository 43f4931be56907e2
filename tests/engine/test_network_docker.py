"""The same network scenarios under berth and under docker, side by side, in test namespaces.

Each engine gets its own network namespace (tests/engine/netns.py) with a "host address" of
its own; docker's half runs a private dockerd inside its namespace with its bridge and
iptables there (tests/conftest.py dockerd_command without its --bridge=none and
--iptables=false), and is skipped, with the reason, where that dockerd cannot start. Both
halves assert the same outcomes, so a difference from docker shows up as one half failing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import dockerd_command
from tests.engine.conftest import root_skip_reason
from tests.engine.images import IMAGE, busybox_base, standard_image, write_image
from tests.engine.netns import NetNS

pytestmark = [pytest.mark.root, pytest.mark.e2e]

HOST_ADDRESS = "10.98.0.1"
EXPOSING = "127.0.0.1:5000/test/exposing:latest"
GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')"


@dataclass
class Engine:
    """One engine's command line (`berth` or `docker -H ...`), run from inside its namespace."""

    name: str
    argv: list[str]
    netns: NetNS
    image: str
    exposing: str
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.netns.wrap([*self.argv, *args]), capture_output=True, text=True, timeout=timeout, env=self.env
        )

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, f"{self.name}: {result.stderr}"
        return result.stdout

    def pid(self, container: str) -> int:
        inspected = json.loads(self.ok("container", "inspect", container))[0]
        return int(inspected["State"]["Pid"])


def _namespace(prefix: str) -> NetNS:
    ns = NetNS(prefix)
    ns.run("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer", check=True)
    ns.run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", "uplink", check=True)
    ns.run("ip", "link", "set", "uplink", "up", check=True)
    ns.run("ip", "link", "set", "uplink-peer", "up", check=True)
    return ns


def _berth(tmp: Path) -> Iterator[Engine]:
    root = tmp / "berth"
    standard_image(root)
    write_image(root, EXPOSING, [(busybox_base().bytes(), "gzip")], {"ExposedPorts": {"80/tcp": {}}})
    ns = _namespace("berth-cmp")
    engine = Engine(
        "berth", [sys.executable, "-m", "engine"], ns, IMAGE, EXPOSING, {**os.environ, "BERTH_ROOT": str(root)}
    )
    try:
        yield engine
    finally:
        names = (
            [n for n in os.listdir(root / "containers") if not n.startswith(".")]
            if (root / "containers").is_dir()
            else []
        )
        if names:
            engine("rm", "-f", *names)
        engine("network", "prune")
        ns.delete()


def _docker(tmp: Path) -> Iterator[Engine]:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed")
    root = tmp / "docker"
    root.mkdir()
    ns = _namespace("docker-cmp")
    argv = [a for a in dockerd_command(root) if a not in ("--iptables=false", "--ip6tables=false", "--bridge=none")]
    log = open(root / "dockerd.log", "w")
    daemon = subprocess.Popen(ns.wrap(argv), stdout=log, stderr=subprocess.STDOUT)
    engine = Engine(
        "docker",
        ["docker", "-H", f"unix://{root / 'docker.sock'}"],
        ns,
        "berth-net:latest",
        "berth-net-exposing:latest",
        dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 60
        while engine("info").returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(
                    f"the private dockerd cannot run with its bridge here: {(root / 'dockerd.log').read_text()[-300:]}"
                )
            time.sleep(0.2)
        tar = busybox_base().bytes()
        for name, changes in ((engine.image, []), (engine.exposing, ["--change", "EXPOSE 80"])):
            subprocess.run([*engine.argv, "import", *changes, "-", name], input=tar, capture_output=True, check=True)
        yield engine
    finally:
        listed = engine("ps", "-aq").stdout.split()
        if listed:
            engine("rm", "-f", *listed)
        engine("network", "prune", "-f")
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        ns.delete()


@pytest.fixture(scope="module", params=["berth", "docker"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp(f"compare-{request.param}")
    yield from (_berth(tmp) if request.param == "berth" else _docker(tmp))


def until(condition: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def fetch(engine: Engine, url: str) -> str:
    until(lambda: engine.netns.run("python3", "-c", GET, url).returncode == 0)
    result = engine.netns.run("python3", "-c", GET, url)
    return result.stdout if result.returncode == 0 else f"failed: {result.stderr}"


def httpd(engine: Engine, *options: str, image: str | None = None) -> str:
    script = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
    return engine.ok("run", "-d", *options, image or engine.image, "sh", "-c", script).strip()


def test_published_port(engine: Engine) -> None:
    web = httpd(engine, "-p", "18080:80", "--hostname", "web1")
    try:
        assert fetch(engine, "http://127.0.0.1:18080/") == "hello from web1\n"
        assert fetch(engine, f"http://{HOST_ADDRESS}:18080/") == "hello from web1\n"
        got = engine.ok("run", "--rm", engine.image, "wget", "-qO-", f"http://{HOST_ADDRESS}:18080/")
        assert got == "hello from web1\n"
        assert engine.ok("port", web).splitlines()[0] == "80/tcp -> 0.0.0.0:18080"
        header, *rows = engine.ok("ps").splitlines()
        columns = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        assert re.split(r"\s{2,}", header.strip()) == columns, f"{engine.name}: {header}"
        row = next(r for r in rows if r.startswith(web[:12]))
        assert "0.0.0.0:18080->80/tcp" in row
        assert re.search(r"\s(Less than a second|\d+ seconds?|About a minute) ago\s+Up ", row), row
        conflict = engine("run", "--rm", "-p", "18080:80", engine.image, "true")
        assert conflict.returncode == 125 and "already allocated" in conflict.stderr
    finally:
        engine.ok("rm", "-f", web)


def test_names_aliases_and_isolation(engine: Engine) -> None:
    engine.ok("network", "create", "cmp-app")
    engine.ok("network", "create", "cmp-other")
    web = httpd(engine, "--network", "cmp-app", "--name", "cmp-web", "--network-alias", "cmp-www", "--hostname", "w")
    try:
        for name in ("cmp-web", "cmp-www"):
            got = engine("run", "--rm", "--network", "cmp-app", engine.image, "wget", "-qO-", f"http://{name}/")
            assert got.stdout == "hello from w\n", f"{engine.name}: {got.stderr}"
        by_id = engine("run", "--rm", "--network", "cmp-app", engine.image, "wget", "-qO-", f"http://{web[:12]}/")
        assert by_id.stdout == "hello from w\n", f"{engine.name}: {by_id.stderr}"
        address = json.loads(engine.ok("network", "inspect", "cmp-app"))[0]["Containers"][web]["IPv4Address"]
        probe = f"echo | nc -w 2 {address.split('/')[0]} 80"
        assert engine("run", "--rm", "--network", "cmp-app", engine.image, "sh", "-c", probe).returncode == 0
        assert engine("run", "--rm", "--network", "cmp-other", engine.image, "sh", "-c", probe).returncode != 0
        busy = engine("network", "rm", "cmp-app")
        assert busy.returncode != 0 and "active endpoints" in busy.stderr
    finally:
        engine.ok("rm", "-f", web)
        engine("network", "rm", "cmp-app", "cmp-other")


def test_publish_all_exposed(engine: Engine) -> None:
    web = httpd(engine, "-P", "--hostname", "exposed", image=engine.exposing)
    quiet = httpd(engine, "--hostname", "unpublished", image=engine.exposing)
    try:
        mapping = engine.ok("port", web, "80/tcp").splitlines()[0]
        assert fetch(engine, f"http://127.0.0.1:{mapping.rsplit(':', 1)[1]}/") == "hello from exposed\n"
        rows = engine.ok("ps").splitlines()[1:]
        published = next(r for r in rows if r.startswith(web[:12]))
        assert re.search(r"\s0\.0\.0\.0:\d+->80/tcp[\s,]", published), f"{engine.name}: {published}"
        unpublished = next(r for r in rows if r.startswith(quiet[:12]))  # exposed, not published: no host side
        assert re.search(r"\sUp .*\s80/tcp\s", unpublished), f"{engine.name}: {unpublished}"
        assert engine.ok("port", quiet) == ""
    finally:
        engine.ok("rm", "-f", web, quiet)


UDP_ECHO = """import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    data, peer = s.recvfrom(100)
    s.sendto(data.upper(), peer)
"""
UDP_ASK = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(b"datagram", (sys.argv[1], 15353))
print(s.recvfrom(100)[0].decode())
"""


def test_udp(engine: Engine) -> None:
    """busybox's nc has no UDP: the echo server is the host's python in the container's network namespace."""
    box = engine.ok("run", "-d", "-p", "15353:53/udp", engine.image, "sleep", "1000").strip()
    server = subprocess.Popen(["nsenter", f"--net=/proc/{engine.pid(box)}/ns/net", "python3", "-c", UDP_ECHO])
    try:
        for address in ("127.0.0.1", HOST_ADDRESS):
            asked = lambda a=address: engine.netns.run("python3", "-c", UDP_ASK, a).stdout == "DATAGRAM\n"  # noqa: E731
            assert until(asked), f"{engine.name}: no echo through {address}:15353/udp"
    finally:
        server.kill()
        server.wait()
        engine.ok("rm", "-f", box)
