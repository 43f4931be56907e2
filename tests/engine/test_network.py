"""Bridge networks, published ports and user networks, end to end, inside a test network namespace.

Every `berth` here runs in a namespace made for this module (tests/engine/netns.py) with a
"host address" of its own (a dummy link), so the bridges, NAT rules and sysctls never touch
the machine's network and traffic only goes to loopback and addresses inside the namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engine.conftest import Berth, root_skip_reason
from tests.engine.images import IMAGE, busybox_base, standard_image, write_image
from tests.engine.netns import NetNS

pytestmark = pytest.mark.root

HOST_ADDRESS = "10.99.0.1"
EXPOSING = "127.0.0.1:5000/test/exposing:latest"


@pytest.fixture(scope="module")
def netns() -> Iterator[NetNS]:
    reason = root_skip_reason()
    if reason:
        pytest.skip(reason)
    ns = NetNS("berth-net")
    try:
        # the namespace's "host address": one end of a veth pair (this kernel has no dummy links)
        ns.run("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer", check=True)
        ns.run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", "uplink", check=True)
        ns.run("ip", "link", "set", "uplink", "up", check=True)
        ns.run("ip", "link", "set", "uplink-peer", "up", check=True)
        yield ns
    finally:
        ns.delete()


@pytest.fixture(scope="module")
def net(netns: NetNS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Berth]:
    root = tmp_path_factory.mktemp("berth-net-root")
    standard_image(root)
    write_image(root, EXPOSING, [(busybox_base().bytes(), "gzip")], {"ExposedPorts": {"80/tcp": {}}})
    berth = Berth(root, netns)
    yield berth
    containers = root / "containers"
    names = [n for n in os.listdir(containers) if not n.startswith(".")] if containers.is_dir() else []
    if names:
        berth("rm", "-f", *names)
    berth("network", "prune")


@pytest.fixture
def www(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("hello from the container\n")
    return tmp_path


def ok(result: object) -> str:
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    return result.stdout  # type: ignore[attr-defined]


def until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')"


def fetch(netns: NetNS, url: str, timeout: float = 10) -> str:
    """GET from the namespace's host side, retried until the server answers (busybox's wget -T crashes)."""
    until(lambda: netns.run("python3", "-c", GET, url).returncode == 0, timeout)
    result = netns.run("python3", "-c", GET, url)
    return result.stdout if result.returncode == 0 else f"failed: {result.stderr}"


def connects(net: Berth, network: str, address: str) -> bool:
    """Whether a new container on `network` can open a TCP connection to address:80 (in 2 s)."""
    return net("run", "--rm", "--network", network, IMAGE, "sh", "-c", f"echo | nc -w 2 {address} 80").returncode == 0


def serve(net: Berth, www: Path, *options: str) -> str:
    return ok(
        net("run", "-d", *options, "-v", f"{www}:/www:ro", IMAGE, "httpd", "-f", "-p", "80", "-h", "/www")
    ).strip()


def state(net: Berth) -> dict:
    path = net.root / "networks" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def nat_elements(netns: NetNS) -> str:
    return netns.run("nft", "list", "table", "ip", "berth").stdout


def veths(netns: NetNS) -> list[str]:
    return [
        line.split("@")[0] for line in netns.run("ip", "-o", "-br", "link").stdout.split() if line.startswith("veth")
    ]


def test_published_port_from_loopback_host_address_and_containers(net: Berth, netns: NetNS, www: Path) -> None:
    web = serve(net, www, "-p", "18080:80", "--name", "published")
    try:
        assert fetch(netns, "http://127.0.0.1:18080/") == "hello from the container\n"
        assert fetch(netns, f"http://{HOST_ADDRESS}:18080/") == "hello from the container\n"
        from_container = net("run", "--rm", IMAGE, "wget", "-qO-", f"http://{HOST_ADDRESS}:18080/")
        assert ok(from_container) == "hello from the container\n"
        assert ok(net("port", web)).strip() == "80/tcp -> 0.0.0.0:18080"
        settings = json.loads(ok(net("container", "inspect", web)))[0]["NetworkSettings"]
        assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}
        assert settings["Networks"]["bridge"]["Gateway"] == "172.17.0.1"
        assert settings["IPAddress"] == settings["Networks"]["bridge"]["IPAddress"]
        assert ok(net("port", web, "80")).strip() == "0.0.0.0:18080"
        assert net("port", web, "81/udp").returncode == 1
        header, *rows = ok(net("ps")).splitlines()
        assert "PORTS" in header
        assert any("0.0.0.0:18080->80/tcp" in row and "published" in row for row in rows)
    finally:
        ok(net("rm", "-f", web))
    assert "18080" not in nat_elements(netns)
    assert fetch(netns, "http://127.0.0.1:18080/", timeout=0).startswith("failed")


def test_container_network_files_and_interfaces(net: Berth) -> None:
    script = "ip -o -4 addr show eth0; ip route; cat /etc/resolv.conf; cat /etc/hosts"
    out = ok(net("run", "--rm", "--dns", "192.0.2.53", "--add-host", "db:192.0.2.7", IMAGE, "sh", "-c", script))
    assert "eth0" in out and "inet 172.17." in out
    assert "default via 172.17.0.1 dev eth0" in out
    assert "nameserver 192.0.2.53" in out
    assert "192.0.2.7\tdb" in out
    assert "127.0.0.1\tlocalhost" in out


def test_names_and_aliases_on_a_user_network(net: Berth, www: Path) -> None:
    ok(net("network", "create", "app"))
    client = ok(net("run", "-d", "--network", "app", "--name", "client", IMAGE, "sleep", "1000")).strip()
    web = serve(net, www, "--network", "app", "--name", "web", "--network-alias", "www")
    try:
        for name in ("web", "www", web[:12]):  # docker's DNS names: name, aliases, short ID
            got = net("exec", client, "wget", "-qO-", f"http://{name}/")
            assert ok(got) == "hello from the container\n"
        # a container started later finds the older one, and the other way round after a restart
        later = net("run", "--rm", "--network", "app", IMAGE, "wget", "-qO-", "http://web/")
        assert ok(later) == "hello from the container\n"
        ok(net("rm", "-f", web))
        web = serve(net, www, "--network", "app", "--name", "web", "--ip", "172.18.0.200")
        assert "172.18.0.200\tweb" in ok(net("exec", client, "cat", "/etc/hosts"))
        assert ok(net("exec", client, "wget", "-qO-", "http://web/")) == "hello from the container\n"
        inspected = json.loads(ok(net("network", "inspect", "app")))[0]
        assert inspected["IPAM"]["Config"][0]["Subnet"] == "172.18.0.0/16"
        addresses = {c["Name"]: c["IPv4Address"] for c in inspected["Containers"].values()}
        assert addresses["web"] == "172.18.0.200/16" and set(addresses) == {"web", "client"}
        busy = net("network", "rm", "app")
        assert busy.returncode != 0 and "active endpoints" in busy.stderr
    finally:
        ok(net("rm", "-f", web, client))
    assert ok(net("network", "rm", "app")).strip() == "app"


def test_networks_are_isolated_and_internal_ones_have_no_way_out(net: Berth, www: Path) -> None:
    ok(net("network", "create", "front"))
    ok(net("network", "create", "--internal", "secret"))
    web = serve(net, www, "--network", "front", "--name", "isolated-web")
    try:
        address = json.loads(ok(net("network", "inspect", "front")))[0]["Containers"][web]["IPv4Address"]
        address = address.split("/")[0]
        same = net("run", "--rm", "--network", "front", IMAGE, "wget", "-qO-", f"http://{address}/")
        assert ok(same) == "hello from the container\n"
        assert connects(net, "front", address)
        assert not connects(net, "bridge", address)
        assert not connects(net, "secret", address)
        no_route = net("run", "--rm", "--network", "secret", IMAGE, "sh", "-c", "ip route; ping -c1 -W1 10.99.0.1")
        assert "default" not in no_route.stdout and no_route.returncode != 0
    finally:
        ok(net("rm", "-f", web))
        net("network", "rm", "front", "secret")


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


def test_udp_port(net: Berth, netns: NetNS) -> None:
    """busybox's nc has no UDP: the echo server is the host's python, run in the container's network namespace."""
    box = ok(net("run", "-d", "-p", "15353:53/udp", IMAGE, "sleep", "1000")).strip()
    pid = json.loads(ok(net("container", "inspect", box)))[0]["State"]["Pid"]
    server = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "python3", "-c", UDP_ECHO])
    try:
        assert ok(net("port", box)).strip() == "53/udp -> 0.0.0.0:15353"
        for address in ("127.0.0.1", HOST_ADDRESS):
            assert until(lambda a=address: netns.run("python3", "-c", UDP_ASK, a).stdout == "DATAGRAM\n"), address
    finally:
        server.kill()
        server.wait()
        ok(net("rm", "-f", box))


def test_publish_all_exposed_ports_and_free_host_ports(net: Berth, netns: NetNS, www: Path) -> None:
    web = ok(
        net(
            "run",
            "-d",
            "-P",
            "-p",
            "127.0.0.1::81",
            "-v",
            f"{www}:/www:ro",
            EXPOSING,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        )
    ).strip()
    try:
        lines = dict(line.split(" -> ") for line in ok(net("port", web)).splitlines())
        assert set(lines) == {"80/tcp", "81/tcp"}
        assert lines["81/tcp"].startswith("127.0.0.1:")
        host_port = lines["80/tcp"].rsplit(":", 1)[1]
        assert fetch(netns, f"http://127.0.0.1:{host_port}/") == "hello from the container\n"
    finally:
        ok(net("rm", "-f", web))


def test_port_ranges(net: Berth, netns: NetNS, www: Path) -> None:
    web = serve(net, www, "-p", "18100-18101:80-81")
    try:
        assert ok(net("port", web)).splitlines() == ["80/tcp -> 0.0.0.0:18100", "81/tcp -> 0.0.0.0:18101"]
        assert "0.0.0.0:18100-18101->80-81/tcp" in ok(net("ps"))
        assert fetch(netns, "http://127.0.0.1:18100/") == "hello from the container\n"
    finally:
        ok(net("rm", "-f", web))


def test_a_port_in_use_is_refused_before_start_and_leaves_nothing(net: Berth, netns: NetNS, www: Path) -> None:
    web = serve(net, www, "-p", "18200:80")
    holder = netns.wrap(
        [
            "python3",
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 18201)); s.listen(); time.sleep(60)",
        ]
    )
    process = subprocess.Popen(holder)
    try:
        assert until(lambda: ":18201" in netns.run("ss", "-ltn").stdout)
        before = (veths(netns), nat_elements(netns))
        for port in ("18200", "18201"):
            result = net("run", "--rm", "--name", f"conflict{port}", "-p", f"{port}:80", IMAGE, "true")
            assert result.returncode == 125 and f"0.0.0.0:{port}/tcp failed: port is already allocated" in result.stderr
            assert f"conflict{port}" not in ok(net("ps", "-a"))
        assert (veths(netns), nat_elements(netns)) == before
        assert list(state(net)["attachments"]) == [web]
    finally:
        process.kill()
        process.wait()
        ok(net("rm", "-f", web))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["-p", "70000:80"], "invalid host port"),
        (["-p", "80/sctp"], "invalid protocol"),
        (["-p", "1.2.3:80:80"], "invalid host address"),
        (["-p", "a:b"], "invalid container port"),
        (["-p", "8000-8002:80-81"], "differ in length"),
        (["-p", "1-5000:1-5000"], "longer than"),
        (["-p", "8" * 100], "too long"),
        (["--network", "../../etc"], "invalid network name"),
        (["--network", "x" * 300], "invalid network name"),
        (["--network", "missing"], "network missing not found"),
        (["--network", "bridge", "--ip", "172.17.0.9"], "user-defined networks only"),
        (["--network", "none", "--network-alias", "a"], "user-defined networks only"),
        (["--dns", "not-an-ip"], "invalid --dns"),
        (["--add-host", "nocolon"], "expected NAME:IP"),
        (["--add-host", "bad name:1.2.3.4"], "invalid host name"),
        (["--add-host", "db:999.1.1.1"], "invalid address"),
    ],
)
def test_hostile_run_options_change_nothing(net: Berth, netns: NetNS, flags: list[str], message: str) -> None:
    before = (veths(netns), state(net).get("attachments"))
    result = net("run", "--rm", *flags, IMAGE, "true")
    assert result.returncode == 125 and message in result.stderr, result.stderr
    assert (veths(netns), state(net).get("attachments")) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["bridge"], "already exists"),
        (["host"], "already exists"),
        (["../x"], "invalid network name"),
        (["--subnet", "10.5.0.0/33", "n1"], "invalid subnet"),
        (["--subnet", "10.5.0.1/16", "n1"], "invalid subnet"),
        (["--subnet", "10.5.0.0/16", "--gateway", "10.6.0.1", "n1"], "is not a host address"),
        (["--subnet", "172.17.5.0/24", "n1"], "overlaps with network bridge"),
        (["--gateway", "10.5.0.1", "n1"], "--gateway needs --subnet"),
    ],
)
def test_hostile_network_create_changes_nothing(net: Berth, args: list[str], message: str) -> None:
    ok(net("run", "--rm", IMAGE, "true"))  # the default network exists
    before = state(net)["networks"]
    result = net("network", "create", *args)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert state(net)["networks"] == before


def test_network_ls_rm_prune_and_given_subnet(net: Berth, netns: NetNS) -> None:
    ok(net("network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.254", "given"))
    ok(net("network", "create", "unused"))
    listed = ok(net("network", "ls"))
    assert all(name in listed for name in ("bridge", "given", "unused", "host", "none"))
    out = ok(net("run", "--rm", "--network", "given", IMAGE, "sh", "-c", "ip -o -4 addr show eth0; ip route"))
    assert "10.77.0.1/24" in out and "default via 10.77.0.254" in out
    assert net("network", "rm", "bridge").returncode != 0
    assert net("network", "rm", "nothing").returncode == 1
    pruned = ok(net("network", "prune")).split()
    assert "given" in pruned and "unused" in pruned and "bridge" not in pruned
    assert "given" not in ok(net("network", "ls"))
    assert not [link for link in netns.run("ip", "-o", "link").stdout.splitlines() if "br-" in link]


def test_connect_and_disconnect_a_running_container(net: Berth, www: Path) -> None:
    ok(net("network", "create", "late"))
    box = ok(net("run", "-d", "--name", "joiner", IMAGE, "sleep", "1000")).strip()
    web = serve(net, www, "--network", "late", "--name", "late-web")
    try:
        ok(net("network", "connect", "--alias", "j2", "late", box))
        assert "eth1" in ok(net("exec", box, "ls", "/sys/class/net"))
        assert ok(net("exec", box, "wget", "-qO-", "http://late-web/")) == "hello from the container\n"
        assert " j2" in ok(net("exec", web, "cat", "/etc/hosts"))
        again = net("network", "connect", "late", box)
        assert again.returncode != 0 and "already connected" in again.stderr
        ok(net("network", "disconnect", "late", box))
        assert "eth1" not in ok(net("exec", box, "ls", "/sys/class/net"))
        assert "joiner" not in ok(net("exec", web, "cat", "/etc/hosts"))
    finally:
        ok(net("rm", "-f", box, web))
        net("network", "rm", "late")


def test_fifty_runs_leak_nothing(net: Berth, netns: NetNS) -> None:
    for _ in range(50):
        ok(net("run", "--rm", "-p", "18300:80", "-p", "18301:81/udp", IMAGE, "true"))
    assert veths(netns) == []
    table = nat_elements(netns)
    assert "18300" not in table and "18301" not in table
    assert state(net)["attachments"] == {}


def test_kill_9_of_the_supervisor_is_cleaned_up_by_the_next_command(net: Berth, netns: NetNS) -> None:
    box = ok(net("run", "-d", "-p", "18400:80", IMAGE, "sleep", "1000")).strip()
    supervisor = json.loads((net.root / "containers" / box / "state.json").read_text())["supervisor_pid"]
    assert "18400" in nat_elements(netns) and veths(netns)
    os.kill(supervisor, signal.SIGKILL)
    assert until(lambda: not Path(f"/proc/{supervisor}").exists())
    ok(net("ps"))
    assert "18400" not in nat_elements(netns)
    assert until(lambda: veths(netns) == [])
    assert state(net)["attachments"] == {}
    ok(net("rm", "-f", box))


def test_concurrent_runs_get_distinct_addresses(net: Berth) -> None:
    ok(net("network", "create", "--subnet", "10.66.0.0/24", "crowd"))
    starts = [net.popen("run", "-d", "--network", "crowd", IMAGE, "sleep", "1000") for _ in range(6)]
    boxes = []
    for process in starts:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        boxes.append(out.strip())
    try:
        members = json.loads(ok(net("network", "inspect", "crowd")))[0]["Containers"]
        addresses = [members[box]["IPv4Address"] for box in boxes]
        assert len(set(addresses)) == 6
        taken = net("run", "--rm", "--network", "crowd", "--ip", addresses[0].split("/")[0], IMAGE, "true")
        assert taken.returncode == 125 and "already in use" in taken.stderr
    finally:
        ok(net("rm", "-f", *boxes))
        net("network", "rm", "crowd")


def test_stop_releases_and_a_reboot_is_reconciled(net: Berth, netns: NetNS, www: Path) -> None:
    box = serve(net, www, "-p", "18500:80")
    ok(net("stop", "-t", "1", box))
    assert "18500" not in nat_elements(netns) and veths(netns) == []
    assert state(net)["attachments"] == {}
    ok(net("rm", box))
    # a "reboot": the supervisor and the container die at once, and the kernel forgets the bridge and NAT table
    box = serve(net, www, "-p", "18500:80")
    supervisor = json.loads((net.root / "containers" / box / "state.json").read_text())["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    assert until(lambda: not Path(f"/proc/{supervisor}").exists())
    netns.run("nft", "delete", "table", "ip", "berth", check=True)
    netns.run("ip", "link", "delete", "berth0", check=True)
    again = serve(net, www, "-p", "18500:80")  # reconciles, rebuilds the bridge and the table, reuses the port
    try:
        assert fetch(netns, "http://127.0.0.1:18500/") == "hello from the container\n"
        assert list(state(net)["attachments"]) == [again]
    finally:
        ok(net("rm", "-f", box, again))


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"networks": {"x": {"name": "x"}}}', '{"networks": [1, 2]}', '{"attachments": {"c": {"ports": 5}}}'],
)
def test_a_corrupt_state_file_is_a_clear_error_and_stays_as_it_is(netns: NetNS, tmp_path: Path, content: str) -> None:
    berth = Berth(tmp_path, netns)
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "state.json").write_text(content)
    for args in (("network", "ls"), ("network", "create", "x"), ("ps",)):
        result = berth(*args)
        assert result.returncode == 125 and "network state" in result.stderr and "corrupt" in result.stderr, result
    assert (tmp_path / "networks" / "state.json").read_text() == content


def test_a_port_published_on_one_host_address_answers_only_there(net: Berth, netns: NetNS, www: Path) -> None:
    web = serve(net, www, "-p", "127.0.0.1:18600:80")
    try:
        assert ok(net("port", web)).strip() == "80/tcp -> 127.0.0.1:18600"
        assert fetch(netns, "http://127.0.0.1:18600/") == "hello from the container\n"
        assert fetch(netns, f"http://{HOST_ADDRESS}:18600/", timeout=0).startswith("failed")
        other = serve(net, www, "-p", f"{HOST_ADDRESS}:18600:80")  # the same port on another address is free
        try:
            assert fetch(netns, f"http://{HOST_ADDRESS}:18600/") == "hello from the container\n"
        finally:
            ok(net("rm", "-f", other))
    finally:
        ok(net("rm", "-f", web))


def test_published_ports_are_discarded_on_the_host_network_with_docker_s_warning(net: Berth, netns: NetNS) -> None:
    result = net("run", "--rm", "--network", "host", "-p", "18700:80", IMAGE, "true")
    assert result.returncode == 0, result.stderr
    assert "WARNING: Published ports are discarded when using host network mode" in result.stderr
    assert "18700" not in nat_elements(netns)


def test_connect_to_the_default_bridge_before_its_first_use(tmp_path: Path) -> None:
    """`network connect bridge` before any run works, and the first `network create` makes the default network
    first, on the pool's first subnet, as dockerd makes docker0 before any other."""
    ns = NetNS("berth-fresh")
    berth = Berth(tmp_path / "root", ns)
    standard_image(berth.root)
    box = ""
    try:
        ok(berth("network", "create", "first"))
        subnets = {
            n: json.loads(ok(berth("network", "inspect", n)))[0]["IPAM"]["Config"][0]["Subnet"]
            for n in ("bridge", "first")
        }
        assert subnets == {"bridge": "172.17.0.0/16", "first": "172.18.0.0/16"}  # as docker: bridge is made first
        box = ok(berth("run", "-d", "--network", "first", IMAGE, "sleep", "1000")).strip()
        ok(berth("network", "connect", "bridge", box))
        assert "eth1" in ok(berth("exec", box, "ls", "/sys/class/net"))
    finally:
        if box:
            berth("rm", "-f", box)
        ns.delete()


def test_network_ls_lists_the_default_bridge_before_its_first_use(tmp_path: Path) -> None:
    """docker's `network ls` always lists bridge, host and none: berth's too, on a fresh root."""
    ns = NetNS("berth-ls")
    berth = Berth(tmp_path / "root", ns)
    try:
        header, *rows = ok(berth("network", "ls")).splitlines()
        assert header.split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
        assert sorted((row.split()[1], row.split()[2]) for row in rows) == [
            ("bridge", "bridge"),
            ("host", "host"),
            ("none", "null"),
        ]
        inspected = json.loads(ok(berth("network", "inspect", "bridge")))[0]
        assert inspected["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
        assert "berth0" in ns.run("ip", "-o", "link").stdout
    finally:
        ns.delete()


PEER_SERVER = """import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen()
while True:
    conn, peer = s.accept()
    conn.sendall(peer[0].encode() + b"\\n")
    conn.close()
"""


def test_outbound_traffic_is_masqueraded_and_internal_networks_have_none(net: Berth, netns: NetNS) -> None:
    """A container reaches what the host reaches, seen from there as the host: the "outside" namespace has
    no route back to any container subnet, so without the masquerade its answer would never arrive."""
    outside = NetNS("berth-outside")
    server = None
    try:
        netns.run("ip", "link", "add", "wan", "type", "veth", "peer", "name", "wan-peer", check=True)
        netns.run("ip", "link", "set", "wan-peer", "netns", outside.name, check=True)
        netns.run("ip", "addr", "add", "10.97.0.1/24", "dev", "wan", check=True)
        netns.run("ip", "link", "set", "wan", "up", check=True)
        outside.run("ip", "addr", "add", "10.97.0.2/24", "dev", "wan-peer", check=True)
        outside.run("ip", "link", "set", "wan-peer", "up", check=True)
        server = subprocess.Popen(outside.wrap(["python3", "-c", PEER_SERVER]))
        assert until(lambda: ":8080" in outside.run("ss", "-ltn").stdout)
        ok(net("network", "create", "--internal", "sealed"))
        ask = ["sh", "-c", "nc -w 2 10.97.0.2 8080 </dev/null"]
        for network in ("bridge", "sealed", "none"):
            got = net("run", "--rm", "--network", network, IMAGE, *ask)
            assert (got.stdout == "10.97.0.1\n") is (network == "bridge"), (network, got.stdout, got.stderr)
        assert netns.run("cat", "/proc/sys/net/ipv4/ip_forward").stdout == "1\n"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        net("network", "rm", "sealed")
        outside.delete()  # and with it the veth pair


def test_kill_and_an_exit_of_its_own_release_the_network(net: Berth, netns: NetNS) -> None:
    killed = ok(net("run", "-d", "-p", "18800:80", IMAGE, "sleep", "1000")).strip()
    exited = ok(net("run", "-d", "-p", "18801:80/udp", IMAGE, "true")).strip()
    try:
        ok(net("kill", killed))
        for box in (killed, exited):
            assert until(lambda b=box: b not in state(net)["attachments"]), box
        table = nat_elements(netns)
        assert "18800" not in table and "18801" not in table
        assert until(lambda: veths(netns) == [])
    finally:
        ok(net("rm", "-f", killed, exited))


def test_the_default_bridge_takes_a_pool_subnet_no_route_of_the_host_uses(tmp_path: Path) -> None:
    """172.17.0.0/16 is routed here already (as where docker runs): berth0 takes the pool's next, 172.18.0.0/16."""
    ns = NetNS("berth-routed")
    berth = Berth(tmp_path / "root", ns)
    standard_image(berth.root)
    try:
        ns.run("ip", "link", "add", "lan", "type", "veth", "peer", "name", "lan-peer", check=True)
        ns.run("ip", "addr", "add", "172.17.3.4/16", "dev", "lan", check=True)
        ns.run("ip", "link", "set", "lan", "up", check=True)
        ns.run("ip", "link", "set", "lan-peer", "up", check=True)
        out = ok(berth("run", "--rm", IMAGE, "ip", "-o", "-4", "addr", "show", "eth0"))
        assert "inet 172.18.0.2/16" in out
        inspected = json.loads(ok(berth("network", "inspect", "bridge")))[0]
        assert inspected["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
        assert inspected["Options"]["com.docker.network.bridge.name"] == "berth0"
    finally:
        berth("network", "prune")
        ns.delete()


HOSTILE_CONNECT = pytest.mark.parametrize(
    "args, message",
    [
        (["--ip", "999.1.1.1", "hostile"], "invalid --ip"),
        (["--ip", "10.0.0.1", "hostile"], "is not a host address"),
        (["--alias", "bad name", "hostile"], "invalid network alias"),
        (["--alias", "x\n1.2.3.4 evil", "hostile"], "invalid network alias"),
        (["--alias", "a" * 300, "hostile"], "invalid network alias"),
        (["../../etc"], "not found"),
    ],
)


@HOSTILE_CONNECT
def test_hostile_network_connect_of_a_stopped_container_changes_nothing(
    net: Berth, args: list[str], message: str
) -> None:
    """A stopped container's connect only changes its spec: the same options are refused, and it stays as it was."""
    ok(net("network", "create", "hostile"))
    box = ok(net("run", "-d", IMAGE, "true")).strip()
    try:
        inspect = lambda: json.loads(ok(net("container", "inspect", box)))[0]  # noqa: E731
        assert until(lambda: inspect()["State"]["Status"] == "exited")
        record = net.root / "containers" / box / "state.json"
        before = json.loads(record.read_text())["spec"]
        result = net("network", "connect", *args, box)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert json.loads(record.read_text())["spec"] == before
    finally:
        ok(net("rm", "-f", box))
        net("network", "rm", "hostile")


@HOSTILE_CONNECT
def test_hostile_network_connect_changes_nothing(net: Berth, args: list[str], message: str) -> None:
    ok(net("network", "create", "hostile"))
    box = ok(net("run", "-d", IMAGE, "sleep", "1000")).strip()
    try:
        before = state(net)["attachments"][box]
        result = net("network", "connect", *args, box)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert state(net)["attachments"][box] == before
        assert ok(net("exec", box, "ls", "/sys/class/net")).split() == ["eth0", "lo"]
    finally:
        ok(net("rm", "-f", box))
        net("network", "rm", "hostile")
