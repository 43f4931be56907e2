"""`berth engine serve` itself: the socket, version checks, 501s, hostile requests, the two front doors,
and containers that outlive a service killed with SIGKILL."""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.api.conftest import IMAGE_NAME, Engine, until

pytestmark = [pytest.mark.root, pytest.mark.e2e]


def raw(engine: Engine, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes on a fresh connection; everything the server answers until it closes (or goes quiet)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(engine.socket))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def request(engine: Engine, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    )
    answer = raw(engine, head.encode() + body)
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def container_count(engine: Engine) -> int:
    return len(engine.ok("ps", "-aq").split())


def test_socket_is_0660(berth_api: Engine) -> None:
    mode = stat.S_IMODE(os.stat(berth_api.socket).st_mode)
    assert mode == 0o660


def test_ping_carries_the_api_version(berth_api: Engine) -> None:
    answer = raw(berth_api, b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nApi-Version: 1.41\r\n" in answer
    assert answer.endswith(b"\r\n\r\nOK")


def test_versions_outside_the_supported_range_are_refused(berth_api: Engine) -> None:
    status, body = request(berth_api, "GET", "/v1.99/containers/json")
    assert status == 400 and b"client version 1.99 is too new. Maximum supported API version is 1.41" in body
    status, body = request(berth_api, "GET", "/v1.12/containers/json")
    assert status == 400 and b"is too old" in body


def test_unimplemented_endpoints_answer_501_naming_them(berth_api: Engine) -> None:
    result = berth_api.docker("plugin", "ls")
    assert result.returncode == 1
    assert "berth's engine API does not implement GET /plugins" in result.stderr


def test_hostile_requests_change_nothing(berth_api: Engine) -> None:
    before = container_count(berth_api)
    create = "/v1.41/containers/create"
    config = json.dumps({"Image": IMAGE_NAME, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}}).encode()
    # a head far too long
    assert raw(berth_api, b"GET /_ping HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
    # a body shorter than its Content-Length (the client closes)
    lie = f"POST {create} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode() + config
    assert raw(berth_api, lie).startswith(b"HTTP/1.1 400")
    # a malformed and a negative length, a broken chunk, both lengths at once, broken JSON
    for head in (b"Content-Length: 12abc", b"Content-Length: -1", b"Transfer-Encoding: chunked"):
        answer = raw(berth_api, f"POST {create} HTTP/1.1\r\nHost: x\r\n".encode() + head + b"\r\n\r\nzz\r\n" + config)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    both = f"POST {create} HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{{}}".encode()
    assert raw(berth_api, both).startswith(b"HTTP/1.1 400")
    assert request(berth_api, "POST", create, b"{not json")[0] == 400
    assert request(berth_api, "POST", create, b"[1, 2]")[0] == 400
    # names: too long, traversal, bad characters
    for name in ("a" * 300, "../../etc", "bad/name", "-x"):
        status, body = request(berth_api, "POST", f"{create}?name={name}", config)
        assert status == 400 and b"Invalid container name" in body, (name, body)
    # ids that try to leave the containers directory
    for key in ("..%2F..%2Fetc", "%2E%2E", "../images"):
        assert request(berth_api, "GET", f"/v1.41/containers/{key}/json")[0] in (404, 501)
    # bad filters, limits, booleans, signals, conditions
    assert request(berth_api, "GET", "/v1.41/containers/json?filters={bad")[0] == 400
    assert request(berth_api, "GET", '/v1.41/containers/json?filters={"nope":["x"]}')[0] == 400
    assert request(berth_api, "GET", '/v1.41/containers/json?filters={"status":["sleeping"]}')[0] == 400
    assert request(berth_api, "GET", "/v1.41/containers/json?limit=lots")[0] == 400
    assert request(berth_api, "GET", "/v1.41/containers/json?all=maybe")[0] == 400
    # options the service refuses: a relative workdir, a bad memory size, a bad restart policy
    refused = (
        ({}, {"WorkingDir": "relative"}),
        ({"Memory": 1}, {}),
        ({"RestartPolicy": {"Name": "x"}}, {}),
        ({"Binds": ["../../etc:/data"]}, {}),
        ({"Mounts": [{"Type": "bind", "Source": "relative", "Target": "/x"}]}, {}),
        ({"Mounts": [{"Type": "volume", "Source": "a:b", "Target": "/x"}]}, {}),
        ({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/x", "VolumeOptions": "no"}]}, {}),
        ({"Mounts": [{"Type": "volume", "Target": ""}]}, {}),
        ({"Mounts": [{"Type": "bind", "Target": "/x"}]}, {}),
        ({}, {"Volumes": {"relative": {}}}),
        ({}, {"Volumes": {"/a:/b": {}}}),
        ({}, {"Volumes": ["/x"]}),
        ({"PublishAllPorts": True}, {"ExposedPorts": {"http/tcp": {}}}),
        ({"PublishAllPorts": True}, {"ExposedPorts": {"99999/tcp": {}}}),
        ({}, {"ExposedPorts": ["81/tcp"]}),
    )
    for host, extra in refused:
        doc = {"Image": IMAGE_NAME, "Cmd": ["true"], **extra, "HostConfig": {"NetworkMode": "none", **host}}
        assert request(berth_api, "POST", create, json.dumps(doc).encode())[0] == 400, doc
    assert container_count(berth_api) == before
    assert berth_api.ok("volume", "ls", "-q") == ""
    assert berth_api.docker("version").returncode == 0


def test_one_engine_two_front_doors(berth_api: Engine) -> None:
    made = berth_api.berth("run", "-d", "--network", "none", "--name", "from-berth", IMAGE_NAME, "sleep", "600")
    assert made.returncode == 0, made.stderr
    assert "from-berth" in berth_api.ok("ps", "--format", "{{.Names}}").split()
    berth_api.ok("run", "-d", "--name", "from-docker", IMAGE_NAME, "sleep", "600")  # on berth's bridge
    listed = berth_api.berth("ps")
    assert "from-docker" in listed.stdout and "from-berth" in listed.stdout
    assert berth_api.berth("rm", "-f", "from-docker").returncode == 0
    berth_api.ok("rm", "-f", "from-berth")
    assert berth_api.ok("ps", "-aq") == ""


def test_containers_outlive_a_killed_service(berth_api: Engine) -> None:
    berth_api.ok("run", "-d", "--name", "survivor", IMAGE_NAME, "sh", "-c", "while :; do echo tick; sleep 0.2; done")
    assert berth_api.process is not None
    os.kill(berth_api.process.pid, signal.SIGKILL)
    berth_api.process.wait()
    assert berth_api.berth("ps").stdout.count("survivor") == 1  # still running, seen by the other door
    berth_api.start()
    assert berth_api.ok("ps", "--format", "{{.Names}} {{.State}}").split() == ["survivor", "running"]
    follower = subprocess.Popen(
        ["docker", "logs", "-f", "survivor"], stdout=subprocess.PIPE, text=True, env=berth_api.env
    )
    assert follower.stdout is not None
    assert follower.stdout.readline() == "tick\n"
    berth_api.ok("stop", "-t", "1", "survivor")
    assert follower.wait(30) == 0  # -f ends when the container stops
    assert berth_api.ok("ps", "-a", "--format", "{{.State}}").split() == ["exited"]
    berth_api.ok("rm", "survivor")


def test_always_containers_start_again_with_the_service(berth_api: Engine) -> None:
    berth_api.ok("run", "-d", "--name", "phoenix", "--restart", "always", IMAGE_NAME, "sleep", "600")
    berth_api.ok("stop", "-t", "1", "phoenix")
    berth_api.stop()
    berth_api.start()
    assert until(lambda: berth_api.ok("inspect", "--format", "{{.State.Running}}", "phoenix").strip() == "true")
    berth_api.ok("rm", "-f", "phoenix")


def test_a_container_on_its_way_back_up_is_restarting(berth_api: Engine) -> None:
    """Between the restart pass's decision and PID 1's start the container is created again (after a run):
    dockerd's "restarting" lasts until it runs, so ps (without -a) and inspect say restarting, not created."""
    from engine.service.containers import ContainerStore

    berth_api.ok("create", "--network", "none", "--name", "rising", "--restart", "always", IMAGE_NAME, "true")
    assert berth_api.root is not None
    container = ContainerStore(berth_api.root / "containers").get("rising")
    container.update(exit_code=1, started_at=1.0, finished_at=2.0)  # what `prepare_restart` leaves of a run
    try:
        assert berth_api.ok("ps", "--format", "{{.Names}} {{.State}}").split() == ["rising", "restarting"]
        assert berth_api.ok("inspect", "--format", "{{.State.Status}}", "rising").strip() == "restarting"
    finally:
        berth_api.ok("rm", "-f", "rising")


def test_tcp_needs_tls_with_client_certificates(tmp_path: Path) -> None:
    env = {**os.environ, "BERTH_ROOT": str(tmp_path)}
    argv = [sys.executable, "-m", "engine", "engine", "serve", "--socket", str(tmp_path / "s.sock")]
    result = subprocess.run([*argv, "--listen", "127.0.0.1:2376"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "TCP without TLS is refused" in result.stderr
    result = subprocess.run([*argv, "--group", "no-such-group-berth"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "no such group" in result.stderr
    assert not (tmp_path / "s.sock").exists()


def test_tcp_with_client_certificates_and_a_group(tmp_path: Path) -> None:
    """`--listen` with TLS: the docker CLI gets in with a client certificate the CA trusts, and not without
    one, with an untrusted one, or in plain HTTP; the unix socket is root:GROUP 0660 beside it."""
    from tests.client.servers import loopback_certificate
    from tests.conftest import free_port
    from tests.engine.conftest import root_skip_reason

    if reason := root_skip_reason():
        pytest.skip(reason)
    try:
        group = grp.getgrnam("daemon").gr_gid
    except KeyError:
        pytest.skip("no group named daemon here")
    dirs = {name: tmp_path / name for name in ("server", "client", "stranger", "config")}
    for directory in dirs.values():
        directory.mkdir()
    server_cert, server_key = loopback_certificate(dirs["server"])
    client_cert, client_key = loopback_certificate(dirs["client"])  # self-signed: the CA the service trusts
    stranger_cert, stranger_key = loopback_certificate(dirs["stranger"])
    port, sock = free_port(), tmp_path / "engine.sock"
    argv = [sys.executable, "-m", "engine", "engine", "serve", "--socket", str(sock), "--group", "daemon"]
    argv += ["--listen", f"127.0.0.1:{port}", "--tls-cert", str(server_cert), "--tls-key", str(server_key)]
    env = {**os.environ, "BERTH_ROOT": str(tmp_path / "root"), "DOCKER_CONFIG": str(dirs["config"])}
    env.pop("DOCKER_HOST", None)
    with open(tmp_path / "serve.log", "wb") as log:
        service = subprocess.Popen([*argv, "--tls-ca", str(client_cert)], stdout=log, stderr=log, env=env)

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        tcp = ["-H", f"tcp://127.0.0.1:{port}", "--tlscacert", str(server_cert)]
        return subprocess.run(["docker", *tcp, *args], capture_output=True, text=True, env=env, timeout=30)

    trusted = ("--tlsverify", "--tlscert", str(client_cert), "--tlskey", str(client_key))
    try:
        version = ("version", "--format", "{{.Server.APIVersion}}")
        assert until(lambda: docker(*trusted, *version).returncode == 0 or service.poll() is not None)
        assert docker(*trusted, *version).stdout == "1.41\n", (tmp_path / "serve.log").read_text()
        for refused in (
            docker("--tlsverify", *version),  # no client certificate
            docker("--tlsverify", "--tlscert", str(stranger_cert), "--tlskey", str(stranger_key), *version),
            subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{port}", *version], capture_output=True, env=env),
        ):
            assert refused.returncode == 1
        st = os.stat(sock)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, group)
    finally:
        service.terminate()
        service.wait(30)
    assert not sock.exists()


def test_the_systemd_unit_serves(tmp_path: Path) -> None:
    """contrib/berth-engine.service: systemd accepts it (`systemd-analyze verify`, with its berth pointing
    at this tree), and its ExecStart, run as written (but for the socket's path), serves the API with the
    socket root:docker 0660; KillMode=process, so stopping the service never kills the containers."""
    from tests.engine.conftest import root_skip_reason

    if reason := root_skip_reason():
        pytest.skip(reason)
    unit = (Path(__file__).parents[3] / "contrib" / "berth-engine.service").read_text()
    service = dict(line.split("=", 1) for line in unit.split("[Service]")[1].split("[")[0].splitlines() if "=" in line)
    assert service["KillMode"] == "process" and service["Environment"].startswith("BERTH_ROOT=")
    berth = tmp_path / "berth"
    berth.write_text(f'#!/bin/sh\nexec {sys.executable} -m engine "$@"\n')
    berth.chmod(0o755)
    argv = service["ExecStart"].split()
    assert argv[:3] == ["/usr/local/bin/berth", "engine", "serve"]
    (tmp_path / "berth-engine.service").write_text(unit.replace(argv[0], str(berth)))
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / "berth-engine.service")], capture_output=True, text=True
        )
        assert (verified.returncode, verified.stderr) == (0, ""), verified.stderr
    try:
        docker_gid = grp.getgrnam(argv[argv.index("--group") + 1]).gr_gid
    except KeyError:
        pytest.skip("the unit's group does not exist here")
    sock = tmp_path / "engine.sock"
    argv[0], argv[argv.index("--socket") + 1] = str(berth), str(sock)
    env = {**os.environ, "BERTH_ROOT": str(tmp_path / "root"), "DOCKER_HOST": f"unix://{sock}"}
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
    try:
        version = ["docker", "version", "--format", "{{.Server.APIVersion}}"]
        assert until(lambda: subprocess.run(version, capture_output=True, env=env).returncode == 0), (
            tmp_path / "serve.log"
        ).read_text()
        st = os.stat(sock)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, docker_gid)
    finally:
        process.terminate()
        process.wait(30)


def test_networks_by_name_between_containers(berth_api: Engine) -> None:
    """Berth's half only: the private dockerd runs without its bridge (tests/conftest.py)."""
    net_id = berth_api.ok("network", "create", "--subnet", "10.77.0.0/24", "apinet").strip()
    assert len(net_id) == 64
    names = berth_api.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()
    assert {"apinet bridge", "bridge bridge", "host host", "none null"} <= set(names)
    assert berth_api.ok(
        "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "apinet"
    ).strip() == ("10.77.0.0/24")
    for body in ({"Name": "../x"}, {"Name": "n" * 300}, {"Name": "n", "IPAM": {"Config": [{"Subnet": "nope"}]}}, []):
        status, _ = request(berth_api, "POST", "/v1.41/networks/create", json.dumps(body).encode())
        assert status == 400, body
    taken = berth_api.docker("network", "create", "apinet")
    assert taken.returncode == 1 and "already exists" in taken.stderr
    script = "mkdir -p /www && echo hello web > /www/index.html && exec httpd -f -p 80 -h /www"
    berth_api.ok("run", "-d", "--network", "apinet", "--name", "web", IMAGE_NAME, "sh", "-c", script)
    got = berth_api.docker("run", "--rm", "--network", "apinet", IMAGE_NAME, "wget", "-qO-", "http://web/")
    assert (got.returncode, got.stdout) == (0, "hello web\n"), got.stderr
    berth_api.ok("run", "-d", "--name", "late", IMAGE_NAME, "sleep", "600")
    berth_api.ok("network", "connect", "apinet", "late")
    assert until(lambda: berth_api.docker("exec", "late", "wget", "-qO-", "http://web/").stdout == "hello web\n")
    berth_api.ok("network", "disconnect", "apinet", "late")
    busy = berth_api.docker("network", "rm", "apinet")
    assert busy.returncode == 1 and "active endpoints" in busy.stderr
    unknown = berth_api.docker("run", "--rm", "--network", "no-such-net", IMAGE_NAME, "true")
    assert unknown.returncode != 0 and "no-such-net" in unknown.stderr
    berth_api.ok("rm", "-f", "web", "late")
    assert berth_api.ok("network", "rm", "apinet").strip() == "apinet"
    assert berth_api.docker("network", "inspect", "apinet").returncode == 1


def test_hostile_build_contexts(berth_api: Engine, tmp_path: Path) -> None:
    import io
    import tarfile

    def tar_with(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            dockerfile = f"FROM {IMAGE_NAME}\n".encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            entry = tarfile.TarInfo(name)
            entry.type, entry.linkname, entry.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(entry, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        return buffer.getvalue()

    images_before = berth_api.ok("images", "-q")
    for body in (
        tar_with("../../escape"),
        tar_with("link", kind=tarfile.SYMTYPE, link="/etc"),
        b"junk",
    ):
        status, answer = request(berth_api, "POST", "/v1.41/build?t=hostile:1", body)
        assert status == 400, answer
    status, answer = request(berth_api, "POST", "/v1.41/build?dockerfile=../../etc/passwd", tar_with("ok"))
    assert status == 400 and b"outside the build context" in answer
    status, answer = request(berth_api, "POST", "/v1.41/build?buildargs=[1]", tar_with("ok"))
    assert status == 400
    assert berth_api.root is not None
    assert not list((berth_api.root / "build").glob("context-*"))  # scratch contexts removed
    assert berth_api.ok("images", "-q") == images_before
