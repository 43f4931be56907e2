"""Network rules without a kernel: subnets, addresses, names, resolv.conf, the state file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.service import names
from engine.service.networks import (
    Network,
    NetworkError,
    State,
    Store,
    allocate,
    check_name,
    host_routes,
    mac_for,
    new_network,
)

ROUTES = (
    "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
)


def test_host_routes_skip_the_default_route(tmp_path: Path) -> None:
    (tmp_path / "route").write_text(ROUTES)
    assert [str(n) for n in host_routes(str(tmp_path / "route"))] == ["192.168.0.0/24", "172.17.0.0/16"]
    assert host_routes(str(tmp_path / "missing")) == []


def test_new_networks_validate_and_avoid_each_other() -> None:
    state = State()
    first = new_network(state, "a", "10.1.0.0/24", None, False)
    assert (first.gateway, first.bridge.startswith("br-"), len(first.bridge) <= 15) == ("10.1.0.1", True, True)
    state.networks["a"] = first
    with pytest.raises(NetworkError, match="overlaps"):
        new_network(state, "b", "10.1.0.128/25", None, False)
    with pytest.raises(NetworkError, match="already exists"):
        new_network(state, "a", "10.2.0.0/24", None, False)
    for subnet, gateway, message in [
        ("10.3.0.0/30", None, "between /8 and /29"),
        ("10.3.0.0/24", "10.3.0.255", "not a host address"),
        ("10.3.0.0/24", "10.4.0.1", "not a host address"),
        ("10.3.0.0/24", "x", "invalid gateway"),
        ("fd00::/64", None, "invalid subnet"),
        ("10.3.0.1/24", None, "invalid subnet"),
    ]:
        with pytest.raises(NetworkError, match=message):
            new_network(state, "c", subnet, gateway, False)


def test_names_are_checked() -> None:
    assert check_name("app_1.test-x") == "app_1.test-x"
    for bad in ("", "-x", "../x", "a/b", "a b", "x" * 64, "é", "app\n"):
        with pytest.raises(NetworkError):
            check_name(bad)


def test_addresses_are_leased_lowest_first_and_never_twice() -> None:
    from engine.service.networks import Attachment, Endpoint

    network = Network("n", "id" * 32, "10.5.0.0/29", "10.5.0.1", "br-x")
    state = State({"n": network})
    taken = []
    for number in range(5):
        address = allocate(state, network, None)
        taken.append(address)
        endpoint = Endpoint("n", address, mac_for(address), "eth0", f"veth{number}")
        state.attachments[str(number)] = Attachment(str(number), "h", "/nonexistent", 1, 1, endpoints=[endpoint])
    assert taken == [f"10.5.0.{n}" for n in range(2, 7)]
    with pytest.raises(NetworkError, match="no free address"):
        allocate(state, network, None)
    for wanted, message in [
        ("10.5.0.3", "already in use"),
        ("10.5.0.7", "not a host address"),
        ("10.9.0.2", "not a host"),
    ]:
        with pytest.raises(NetworkError, match=message):
            allocate(state, network, wanted)
    assert mac_for("10.5.0.2") == "02:42:0a:05:00:02"


def test_resolv_conf_drops_loopback_nameservers(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nsearch example.org\noptions edns0\n")
    assert names.resolv_text([], host) == "nameserver 192.0.2.1\nsearch example.org\noptions edns0\n"
    assert names.resolv_text(["198.51.100.1"], host).startswith("nameserver 198.51.100.1\nsearch")
    host.write_text("nameserver 127.0.0.53\n")
    assert names.resolv_text([], host) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_hosts_and_add_host() -> None:
    with pytest.raises(names.BadName):
        names.check_hostname("web\n", "network alias")
    assert names.parse_add_host("db:192.0.2.7") == ("db", "192.0.2.7")
    assert names.parse_add_host("v6:[2001:db8::1]") == ("v6", "2001:db8::1")
    for bad in ("db", "db:", ":1.2.3.4", "d b:1.2.3.4", "db:1.2.3", "x\n1.2.3.4 evil:1.2.3.4", "db\n:1.2.3.4"):
        with pytest.raises(names.BadName):
            names.parse_add_host(bad)
    text = names.hosts_text("box", ["10.0.0.2"], [("db", "192.0.2.7")], [("10.0.0.3", ["web", "www"])])
    assert text.splitlines()[2:] == ["10.0.0.2\tbox", "192.0.2.7\tdb", "10.0.0.3\tweb www"]


def test_the_state_file_round_trips_and_is_written_only_when_changed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.locked() as state:
        state.networks["n"] = Network("n", "i" * 64, "10.6.0.0/24", "10.6.0.1", "br-i")
    written = store.path.stat().st_mtime_ns
    with store.locked() as state:
        assert state.networks["n"].subnet == "10.6.0.0/24"
    assert store.path.stat().st_mtime_ns == written
    with pytest.raises(RuntimeError), store.locked() as state:
        del state.networks["n"]
        raise RuntimeError("a failure half-way changes nothing")
    assert "n" in store.read().networks
