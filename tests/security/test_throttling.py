"""Login throttling: atomic across workers on SQLite and PostgreSQL, not fooled by forwarded headers
from strangers, and cheap for names no account has.

Each test speaks from its own loopback address (127.0.0.0/8 is all local), so their counts stay apart.
"""

from __future__ import annotations

import base64
import http.client
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import BACKENDS, ROOT, RegistryProcess, backend_args, free_port
from tests.registry.conftest import berth

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


def token(
    server: RegistryProcess, user: str, password: str, source: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """GET /token with Basic credentials from a chosen loopback address."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120, source_address=(source, 0))
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request(
            "GET", "/token?service=berth", headers={"Authorization": f"Basic {credentials}", **(headers or {})}
        )
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def start(request: pytest.FixtureRequest, tmp_path: Path, backend: str, *flags: str) -> RegistryProcess:
    """A registry with two workers (so counts must agree across processes) and the accounts in USERS."""
    data = tmp_path / "data"
    args = backend_args(request, backend)
    database = list(args[args.index("--database-url") :][:2]) if "--database-url" in args else []
    for user, password in USERS.items():
        berth("user", "add", user, "--password-stdin", "--data-dir", str(data), *database, stdin=password + "\n")
    return RegistryProcess(data, workers=2, args=(*args, *flags))


def database_url(server: RegistryProcess) -> str:
    args = server.args
    return (
        args[args.index("--database-url") + 1]
        if "--database-url" in args
        else f"sqlite:///{server.data_dir}/registry.db"
    )


def failure_rows(server: RegistryProcess) -> int:
    engine = create_engine(database_url(server))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM login_failure")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Iterator[RegistryProcess]:
    process = start(request, tmp_path, backend)
    yield process
    process.stop()


def test_parallel_guesses_get_exactly_the_allowed_checks(server: RegistryProcess) -> None:
    with ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(lambda _: token(server, "alice", "wrong", "127.0.1.1")[0], range(100)))
    assert sorted(set(statuses)) == [401, 429] and statuses.count(401) == 5, {s: statuses.count(s) for s in statuses}
    assert token(server, "alice", USERS["alice"], "127.0.1.1")[0] == 429  # throttled, right password or not
    assert token(server, "alice", USERS["alice"], "127.0.1.2")[0] == 200  # another address is not


def server_cpu_seconds(server: RegistryProcess) -> float:
    """CPU time of the registry and its workers (its process group), from /proc."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == server.process.pid:  # field 5, the process group
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / os.sysconf("SC_CLK_TCK")


def test_unknown_names_cost_no_password_check_and_bounded_rows(server: RegistryProcess) -> None:
    sample = bcrypt.hashpw(b"x", bcrypt.gensalt(11))
    started = time.process_time()
    bcrypt.checkpw(b"y", sample)
    one_check = time.process_time() - started
    # Warm every worker up first (its first requests import and compile what a login needs),
    # so that only the unknown names are counted.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: token(server, "warm", "guess", "127.0.2.9"), range(16)))
    before = server_cpu_seconds(server)
    names = [f"ghost{uuid.uuid4().hex[:10]}" for _ in range(200)] + ["x" * 5000, "", "*", "../../etc"]
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda name: token(server, name, "guess", "127.0.2.1")[0], names))
    spent = server_cpu_seconds(server) - before
    assert set(statuses) <= {401, 429} and statuses.count(401) <= 30, {s: statuses.count(s) for s in statuses}
    # 204 names tried; the server spent less CPU on all of them than 50 password checks (a check
    # per name would be 204; PostgreSQL's round trips alone cost about 20 checks' worth here).
    assert spent < 50 * one_check, (spent, one_check)
    # At most 30 names and the address, whatever was tried (and the warm-up's name and address).
    assert failure_rows(server) <= 31 + 2
    assert token(server, "bob", USERS["bob"], "127.0.2.2")[0] == 200


def test_names_with_and_without_accounts_answer_alike(server: RegistryProcess) -> None:
    """The same statuses in the same order: a fresh unknown name throttles like a real one."""
    for source, name in (("127.0.3.1", "bob"), ("127.0.3.2", "nobody-has-this-name")):
        statuses = [token(server, name, "wrong", source)[0] for _ in range(7)]
        assert statuses == [401] * 5 + [429] * 2, (name, statuses)


@pytest.fixture
def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryProcess]:
    process = start(request, tmp_path, "sqlite-file", "--trust-proxy", "127.0.4.1")
    yield process
    process.stop()


def test_forwarded_for_is_believed_only_from_the_trusted_proxy(proxied: RegistryProcess) -> None:
    # A stranger rotating X-Forwarded-For is still counted as itself.
    rotating = [token(proxied, "alice", "wrong", "127.0.4.2", {"X-Forwarded-For": f"10.9.0.{i}"})[0] for i in range(7)]
    assert rotating == [401] * 5 + [429] * 2, rotating
    # ... and cannot lock out the address it names.
    for _ in range(6):
        token(proxied, "bob", "wrong", "127.0.4.3", {"X-Forwarded-For": "127.0.4.4"})
    assert token(proxied, "bob", USERS["bob"], "127.0.4.4")[0] == 200
    # The trusted proxy's word is taken: each client it names is counted apart.
    behind = [token(proxied, "bob", "wrong", "127.0.4.1", {"X-Forwarded-For": "10.1.1.1"})[0] for _ in range(6)]
    assert behind == [401] * 5 + [429], behind
    # A client prepending addresses to the header cannot step out of its count.
    spoofed = token(proxied, "bob", USERS["bob"], "127.0.4.1", {"X-Forwarded-For": "10.7.7.7, 10.1.1.1"})
    assert spoofed[0] == 429, spoofed
    assert token(proxied, "bob", USERS["bob"], "127.0.4.1", {"X-Forwarded-For": "10.1.1.2"})[0] == 200


def test_forwarded_host_names_the_realm_only_from_the_trusted_proxy(proxied: RegistryProcess) -> None:
    def realm(source: str, headers: dict[str, str]) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", proxied.port, timeout=30, source_address=(source, 0))
        try:
            conn.request("GET", "/v2/", headers=headers)
            return conn.getresponse().getheader("WWW-Authenticate") or ""
        finally:
            conn.close()

    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"}
    assert 'realm="https://registry.example.com/token"' in realm("127.0.4.1", forwarded)
    assert f'realm="http://127.0.0.1:{proxied.port}/token"' in realm("127.0.4.2", forwarded)
    hostile = realm("127.0.4.1", {"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": 'evil",error="x'})
    assert f'realm="http://127.0.0.1:{proxied.port}/token",service="berth"' in hostile, hostile


@pytest.mark.parametrize("value", ["*", "10.0.0.0/33", "proxy.example.com", "1.2.3.4,", "x" * 5000])
def test_a_malformed_trust_proxy_is_refused_clearly(value: str, tmp_path: Path) -> None:
    for argv, env in (
        (["--trust-proxy", value], {}),
        ([], {"BERTH_TRUST_PROXY": value}),
    ):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "registry",
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--data-dir",
                str(tmp_path),
                *argv,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result
        assert "--trust-proxy takes proxy addresses or networks" in result.stderr and "Traceback" not in result.stderr
