"""The pull-through cache against CNCF Distribution upstreams (plain, htpasswd, token) over HTTP."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from client.layout import Layout
from registry.service.upstream_blobs import Fetch, Ready
from registry.upstream_cli import upstream
from tests.client.images import build_image, random_bytes
from tests.client.servers import DISTRIBUTION, Distribution, TokenServer, htpasswd_auth
from tests.conftest import RegistryProcess
from tests.registry.conftest import in_process
from tests.registry.truncating_proxy import TruncatingProxy

pytestmark = pytest.mark.skipif(not DISTRIBUTION, reason="docker-registry (CNCF Distribution) is not installed")
USERS = {"alice": "wonderland"}
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


def skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def push_image(
    tmp: Path, host: str, ref: str, layers: list[dict[str, bytes]], creds: str | None = None, compress: bool = True
) -> str:
    """Push a built image to `host/ref` with skopeo; returns its manifest digest."""
    layout_dir = tmp / f"src-{time.monotonic_ns()}"
    descriptor = build_image(Layout.open(layout_dir, create=True), "v", layers, compress=compress)
    extra = ["--dest-creds", creds] if creds else []
    skopeo(
        "copy", "--dest-tls-verify=false", "--preserve-digests", *extra, f"oci:{layout_dir}:v", f"docker://{host}/{ref}"
    )
    return descriptor.digest


def add_upstream(data_dir: Path, *args: str, stdin: str | None = None) -> None:
    result = CliRunner().invoke(upstream, ["add", *args, "--data-dir", str(data_dir)], input=stdin)
    assert result.exit_code == 0, result.output


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def manifest(berth: RegistryProcess, repository: str, reference: str) -> requests.Response:
    return requests.get(f"{berth.url}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=60)


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Distribution]:
    server = Distribution(tmp_path / "upstream", access_log=tmp_path / "access.log")
    yield server
    server.stop()


@pytest.fixture
def berth(tmp_path: Path) -> Iterator[RegistryProcess]:
    server = RegistryProcess(tmp_path / "berth", workers=2)
    yield server
    server.stop()


def test_pull_through_prefix_caches_and_survives_the_upstream(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess
) -> None:
    digest = push_image(tmp_path, plain.host, "library/app:1", [{"a": random_bytes(300_000, 1)}, {"b": b"b" * 99}])
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "hub", "--tag-ttl", "1s")
    out = tmp_path / "out"
    ref = f"docker://127.0.0.1:{berth.port}/hub/library/app:1"
    wait_for(lambda: manifest(berth, "hub/library/app", "1").status_code == 200)
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:pulled")
    assert Layout.open(out).resolve("pulled").digest == digest
    plain.stop()

    def served_stale() -> bool:
        assert manifest(berth, "hub/library/app", "1").status_code == 200
        return 'berth_upstream_stale_total{upstream="up"}' in requests.get(f"{berth.url}/metrics", timeout=10).text

    wait_for(served_stale)  # once the 1 s TTL has passed, the dead upstream is asked and the cache answers
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'again'}:pulled")
    skopeo("copy", "--src-tls-verify=false", f"{ref.rsplit(':', 1)[0]}@{digest}", f"oci:{tmp_path / 'dig'}:x")
    never = manifest(berth, "hub/library/app", "sha256:" + "1" * 64)
    assert never.status_code == 404
    assert "not cached and upstream up did not provide it" in never.json()["errors"][0]["message"]


def test_pushes_into_a_prefix_are_denied(tmp_path: Path, plain: Distribution, berth: RegistryProcess) -> None:
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "mirror/hub")
    deadline = time.monotonic() + 10
    while True:
        answer = requests.post(f"{berth.url}/v2/mirror/hub/library/x/blobs/uploads/", timeout=10)
        if answer.status_code != 202 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 403
    error = answer.json()["errors"][0]
    assert error["code"] == "DENIED" and "pushes under the mirror/hub/ prefix are refused" in error["message"]
    put = requests.put(
        f"{berth.url}/v2/mirror/hub/x/manifests/v1", data=b"{}", headers={"Content-Type": ACCEPT.split(",")[0]}
    )
    assert put.status_code == 403
    # Outside the prefix, pushes work as before.
    assert requests.post(f"{berth.url}/v2/mirror/other/blobs/uploads/", timeout=10).status_code == 202


def test_tag_moved_upstream_is_served_stale_until_the_ttl(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess
) -> None:
    first = push_image(tmp_path, plain.host, "team/app:v", [{"a": b"one"}])
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "hub", "--tag-ttl", "3s")
    wait_for(lambda: manifest(berth, "hub/team/app", "v").status_code == 200)
    assert manifest(berth, "hub/team/app", "v").headers["Docker-Content-Digest"] == first
    moved_at = time.monotonic()
    second = push_image(tmp_path, plain.host, "team/app:v", [{"a": b"two"}])
    stale = manifest(berth, "hub/team/app", "v").headers["Docker-Content-Digest"]
    if time.monotonic() - moved_at < 2.5:
        assert stale == first
    wait_for(lambda: manifest(berth, "hub/team/app", "v").headers["Docker-Content-Digest"] == second, 10)
    # A tag gone upstream is gone here once the TTL has passed.
    requests.delete(f"{plain.url}/v2/team/app/manifests/{second}", timeout=10).raise_for_status()
    wait_for(lambda: manifest(berth, "hub/team/app", "v").status_code == 404, 10)


def test_within_the_ttl_a_cached_manifest_is_answered_without_the_upstream(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess
) -> None:
    digest = push_image(tmp_path, plain.host, "team/ttl:v", [{"a": b"cached"}])
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "hub", "--tag-ttl", "1h")
    wait_for(lambda: manifest(berth, "hub/team/ttl", "v").status_code == 200)
    body = manifest(berth, "hub/team/ttl", "v").content

    def asked() -> list[str]:
        lines = (tmp_path / "access.log").read_text().splitlines()
        return [line for line in lines if " /v2/team/ttl/manifests/" in line and line.startswith("127.0.0.1")]

    before = asked()
    for reference in ("v", digest):
        url = f"{berth.url}/v2/hub/team/ttl/manifests/{reference}"
        got = requests.get(url, headers={"Accept": ACCEPT}, timeout=30)
        headed = requests.head(url, headers={"Accept": ACCEPT}, timeout=30)
        assert (got.status_code, got.content, got.headers["Docker-Content-Digest"]) == (200, body, digest)
        assert (headed.status_code, headed.headers["Content-Length"]) == (200, str(len(body)))
        assert headed.headers["Docker-Content-Digest"] == digest
    assert manifest(berth, "hub/team/ttl", "nope").status_code == 404  # an unknown tag is asked for
    assert [line.split('"')[1] for line in asked()[len(before) :]] == ["HEAD /v2/team/ttl/manifests/nope HTTP/1.1"]


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_upstream_credentials_basic_and_token(tmp_path: Path, berth: RegistryProcess, kind: str) -> None:
    token: TokenServer | None = None
    if kind == "htpasswd":
        server = Distribution(tmp_path / "up", htpasswd_auth(tmp_path / "up", USERS))
    else:
        token = TokenServer(tmp_path / "token", USERS, refuse=lambda subject, _repo: subject != "alice")
        server = Distribution(tmp_path / "up", token.distribution_auth())
    try:
        digest = push_image(tmp_path, server.host, "private/app:1", [{"x": b"secret"}], creds="alice:wonderland")
        add_upstream(
            berth.data_dir,
            "up",
            server.url,
            "--prefix",
            "p",
            "--username",
            "alice",
            "--password-stdin",
            stdin="wonderland\n",
        )
        wait_for(lambda: manifest(berth, "p/private/app", "1").status_code == 200)
        assert manifest(berth, "p/private/app", "1").headers["Docker-Content-Digest"] == digest
        # The client's own credentials are never what reaches the upstream.
        layer = json.loads(manifest(berth, "p/private/app", "1").content)["layers"][0]["digest"]
        pulled = requests.get(
            f"{berth.url}/v2/p/private/app/blobs/{layer}",
            auth=("mallory", "guess"),
            timeout=30,
        )
        assert pulled.status_code == 200
        if token is not None:
            assert {r["subject"] for r in token.requests} <= {"alice"}
    finally:
        server.stop()
        if token:
            token.stop()


def test_one_upstream_get_for_sixteen_concurrent_pulls(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess
) -> None:
    big = random_bytes(100 * 1024 * 1024, 7)
    push_image(tmp_path, plain.host, "big/blob:1", [{"big": big}], compress=False)
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "hub")
    wait_for(lambda: manifest(berth, "hub/big/blob", "1").status_code == 200)
    layer = json.loads(manifest(berth, "hub/big/blob", "1").content)["layers"][0]

    def pull(_: int) -> tuple[int, int]:
        response = requests.get(f"{berth.url}/v2/hub/big/blob/blobs/{layer['digest']}", timeout=300)
        return response.status_code, len(response.content)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(pull, range(16)))
    assert results == [(200, layer["size"])] * 16
    log = (tmp_path / "access.log").read_text()
    gets = [line for line in log.splitlines() if f'"GET /v2/big/blob/blobs/{layer["digest"]}' in line]
    assert len(gets) == 1, gets


def test_a_fetch_finishing_between_a_look_and_a_lease_is_not_repeated(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that found no blob, then takes the lease just after the first fetch committed
    the blob and released it, serves the stored blob: the upstream sees one GET. (The body
    ends before the commit, which follows in the fetch's thread: wait for the lease to go.)"""
    push_image(tmp_path, plain.host, "race/app:1", [{"layer": random_bytes(3 * 1024 * 1024, 11)}], compress=False)
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "hub")
    wait_for(lambda: manifest(berth, "hub/race/app", "1").status_code == 200)
    digest = json.loads(manifest(berth, "hub/race/app", "1").content)["layers"][0]["digest"]
    blobs = in_process(berth).services.upstream_blobs
    first = blobs.open("hub/race/app", digest)
    assert isinstance(first, Fetch)
    take_fetch = blobs.index.take_fetch

    def first_fetch_ends_then_take(digest: str, holder: str, seconds: float) -> bool:
        assert blobs.index.fetching(digest) and blobs.index.blob_size(digest) is None
        b"".join(first.body)
        wait_for(lambda: not blobs.index.fetching(digest))  # committed, linked and released
        return take_fetch(digest, holder, seconds)

    monkeypatch.setattr(blobs.index, "take_fetch", first_fetch_ends_then_take)
    assert isinstance(blobs.open("hub/race/app", digest), Ready)
    assert not blobs.index.fetching(digest)
    log = (tmp_path / "access.log").read_text()
    assert len([line for line in log.splitlines() if f'"GET /v2/race/app/blobs/{digest}' in line]) == 1


@pytest.mark.parametrize("leaves", ["mid-body", "unread"])
def test_a_client_leaving_mid_body_stops_the_fetch_and_stores_nothing(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess, leaves: str
) -> None:
    """The fetch's thread runs ahead of its client; when the client stops reading (or drops the
    body unread: its response never started), the thread stops too, cancels its upload and
    frees the lease, and the next pull fetches again."""
    big = random_bytes(40 * 1024 * 1024, 13)  # more than the chunks a fetch may receive ahead of its client
    push_image(tmp_path, plain.host, "left/app:1", [{"layer": big}], compress=False)
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "hub")
    wait_for(lambda: manifest(berth, "hub/left/app", "1").status_code == 200)
    layer = json.loads(manifest(berth, "hub/left/app", "1").content)["layers"][0]
    digest = layer["digest"]
    blobs = in_process(berth).services.upstream_blobs
    first = blobs.open("hub/left/app", digest)
    assert isinstance(first, Fetch)
    if leaves == "mid-body":
        assert first.body.take()
        first.body.close()
    else:
        del first
    wait_for(lambda: not blobs.index.fetching(digest))
    uploads = berth.data_dir / "blobs" / "_uploads"
    wait_for(lambda: not list(uploads.iterdir()))
    assert not list((berth.data_dir / "blobs").rglob(digest.split(":")[1]))
    again = blobs.open("hub/left/app", digest)
    assert isinstance(again, Fetch)
    assert sum(len(chunk) for chunk in again.body) == layer["size"]
    wait_for(lambda: not blobs.index.fetching(digest))
    assert isinstance(blobs.open("hub/left/app", digest), Ready)


def test_truncated_upstream_response_stores_nothing(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess
) -> None:
    push_image(tmp_path, plain.host, "cut/app:1", [{"big": random_bytes(8 * 1024 * 1024, 9)}], compress=False)
    proxy = TruncatingProxy.start(("127.0.0.1", plain.port))
    try:
        add_upstream(berth.data_dir, "up", f"http://{proxy.host}", "--prefix", "hub")
        wait_for(lambda: manifest(berth, "hub/cut/app", "1").status_code == 200)
        layer = json.loads(manifest(berth, "hub/cut/app", "1").content)["layers"][0]
        url = f"{berth.url}/v2/hub/cut/app/blobs/{layer['digest']}"
        proxy.cut_after(1024 * 1024)
        with pytest.raises(requests.RequestException):
            response = requests.get(url, timeout=60)
            assert len(response.content) == layer["size"]  # a short body must not pass for the blob
        proxy.cut_after(None)
        assert not list((berth.data_dir / "blobs").rglob(layer["digest"].split(":")[1]))
        response = requests.get(url, timeout=60)
        assert response.status_code == 200 and len(response.content) == layer["size"]
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["n", "ftp://example.test", "--prefix", "a"], "http:// or https://"),
        (["n", "http://", "--prefix", "a"], "with a host"),
        (["n", "http://h:99999", "--prefix", "a"], "is not a URL"),
        (["n", "http://u:p@h", "--prefix", "a"], "credentials"),
        (["n", "http://h/v2/../x", "--prefix", "a"], "path"),
        (["n", "http://h?x=1", "--prefix", "a"], "path, query"),
        (["n", "http://" + "h" * 2000, "--prefix", "a"], "longer than"),
        (["n", "http://h", "--prefix", "../etc"], "not a repository path"),
        (["n", "http://h", "--prefix", "a/../../b"], "not a repository path"),
        (["n", "http://h", "--prefix", "UPPER"], "not a repository path"),
        (["n", "http://h", "--prefix", "a" * 300], "not a repository path"),
        (["n", "http://h", "--prefix", "taken/sub/deeper"], "overlaps"),
        (["n", "http://h", "--prefix", "taken"], "overlaps"),
        (["../n", "http://h", "--prefix", "b"], "not an upstream name"),
        (["n", "http://h", "--prefix", "b", "--tag-ttl", "99999d"], "at most"),
        (["n", "http://h", "--prefix", "b", "--tag-ttl", "-1s"], "not a duration"),
        (["n", "http://h", "--prefix", "b", "--allow", "a;rm"], "globs"),
        (["n", "http://h", "--prefix", "b", "--cache-max-bytes", "9" * 40], "between"),
        (["n", "http://h", "--prefix", "b", "--cache-max-bytes", "lots"], "is not a size"),
        (["n", "http://h", "--prefix", "b", "--username", "a:b"], "without ':'"),
        (["n", "http://h", "--prefix", "local"], "local repositories exist"),
    ],
)
def test_hostile_upstream_settings_change_nothing(tmp_path: Path, args: list[str], complaint: str) -> None:
    data = tmp_path / "data"
    add_upstream(data, "taken", "http://127.0.0.1:1", "--prefix", "taken/sub")
    _make_local_repository(data, "local/app")
    result = CliRunner().invoke(upstream, ["add", *args, "--data-dir", str(data)])
    assert result.exit_code != 0 and complaint in result.output, result.output
    listed = CliRunner().invoke(upstream, ["ls", "--data-dir", str(data)]).output
    assert [line.split()[0] for line in listed.splitlines()[1:]] == ["taken"]


def test_ca_file_must_be_a_certificate(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    args = ["add", "n", "https://h", "--prefix", "p", "--ca", str(bogus), "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(upstream, args)
    assert result.exit_code != 0 and "no PEM certificate" in result.output


def _make_local_repository(data: Path, name: str) -> None:
    from registry.config import load_settings
    from registry.wiring import Registry

    uploads = Registry(load_settings(data_dir=data), migrate=True).upload_index
    uploads.finish(None, name, "sha256:" + "0" * 64, 0)


def test_default_upstream_serves_names_outside_prefixes(tmp_path: Path, plain: Distribution) -> None:
    digest = push_image(tmp_path, plain.host, "library/busybox:1", [{"bin/sh": b"sh"}])
    data = tmp_path / "berth"
    add_upstream(data, "hub", plain.url, "--prefix", "hub")
    server = RegistryProcess(data, args=("--default-upstream", "hub"))
    try:
        assert manifest(server, "library/busybox", "1").headers["Docker-Content-Digest"] == digest
        # A local repository stays local, and pushes to new names work.
        assert requests.post(f"{server.url}/v2/ours/app/blobs/uploads/", timeout=10).status_code == 202
        # The repository the mirror filled refuses pushes.
        assert requests.post(f"{server.url}/v2/library/busybox/blobs/uploads/", timeout=10).status_code == 403
    finally:
        server.stop()


def test_unknown_default_upstream_name_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        ["python", "-m", "registry", "--data-dir", str(tmp_path), "--default-upstream", "../../x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "not an upstream name" in done.stderr


def test_upstream_rm(tmp_path: Path) -> None:
    data = tmp_path / "d"
    add_upstream(data, "gone", "http://127.0.0.1:1", "--prefix", "g")
    assert CliRunner().invoke(upstream, ["rm", "gone", "--data-dir", str(data)]).exit_code == 0
    again = CliRunner().invoke(upstream, ["rm", "gone", "--data-dir", str(data)])
    assert again.exit_code != 0 and "no upstream named" in again.output


def test_cache_max_bytes_evicts_the_least_recently_pulled(
    tmp_path: Path, plain: Distribution, berth: RegistryProcess
) -> None:
    old = push_image(tmp_path, plain.host, "lru/old:1", [{"a": random_bytes(400_000, 11)}], compress=False)
    new = push_image(tmp_path, plain.host, "lru/new:1", [{"a": random_bytes(400_000, 12)}], compress=False)
    add_upstream(berth.data_dir, "up", plain.url, "--prefix", "hub", "--cache-max-bytes", "600KiB")
    for name, digest in (("hub/lru/old", old), ("hub/lru/new", new)):

        def tagged(name: str = name) -> bool:
            return manifest(berth, name, "1").status_code == 200

        wait_for(tagged)
        answer = manifest(berth, name, digest)
        assert answer.status_code == 200, answer.text
        layer = answer.json()["layers"][0]["digest"]
        assert requests.get(f"{berth.url}/v2/{name}/blobs/{layer}", timeout=30).status_code == 200
        # The fetch commits the blob just after its client got the last byte; a second GET waits
        # for that commit (the fetch's lease) and is then served from storage.
        assert requests.get(f"{berth.url}/v2/{name}/blobs/{layer}", timeout=30).status_code == 200
    result = CliRunner().invoke(upstream, ["prune", "--data-dir", str(berth.data_dir)])
    assert result.exit_code == 0, result.output
    assert f"evicted hub/lru/old@{old}" in result.output and "hub/lru/new" not in result.output
    plain.stop()
    assert manifest(berth, "hub/lru/new", new).status_code == 200
    assert manifest(berth, "hub/lru/old", old).status_code == 404
