"""Replication between Berth and CNCF Distribution (plain and htpasswd) and a second Berth, over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from registry.maintenance_cli import quota
from registry.oci import mediatypes as mt
from registry.replication_cli import replicate
from registry.upstream_cli import upstream
from tests.client import servers
from tests.client.servers import DISTRIBUTION, Distribution, TokenServer, htpasswd_auth
from tests.conftest import RegistryProcess, backend_args
from tests.registry.truncating_proxy import TruncatingProxy

pytestmark = pytest.mark.skipif(not DISTRIBUTION, reason="docker-registry (CNCF Distribution) is not installed")
ACCEPT = f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX}"
PASSWORD = "s3cret-replica-pw-7731"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(url: str, repository: str, data: bytes, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    started = requests.post(f"{url}/v2/{repository}/blobs/uploads/", auth=auth, timeout=30)
    assert started.status_code == 202, started.text
    location = requests.compat.urljoin(url, started.headers["Location"])
    separator = "&" if "?" in location else "?"
    done = requests.put(f"{location}{separator}digest={digest_of(data)}", data=data, auth=auth, timeout=30)
    assert done.status_code == 201, done.text
    return {"digest": digest_of(data), "size": len(data)}


def put_manifest(
    url: str, repository: str, reference: str, doc: dict[str, Any], auth: tuple[str, str] | None = None
) -> dict[str, Any]:
    body = json.dumps(doc).encode()
    done = requests.put(
        f"{url}/v2/{repository}/manifests/{reference}",
        data=body,
        headers={"Content-Type": doc["mediaType"]},
        auth=auth,
        timeout=30,
    )
    assert done.status_code == 201, done.text
    return {"mediaType": doc["mediaType"], "digest": digest_of(body), "size": len(body)}


def push_image(url: str, repository: str, tag: str, seed: str, auth: tuple[str, str] | None = None) -> str:
    """A small single-platform image; returns its manifest digest."""
    config = put_blob(
        url, repository, json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode(), auth
    )
    layer = put_blob(url, repository, f"layer {seed}".encode() * 100, auth)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, **config},
        "layers": [{"mediaType": mt.OCI_LAYER, **layer}],
    }
    return put_manifest(url, repository, tag, doc, auth)["digest"]


def push_signed_index(url: str, repository: str, tag: str) -> tuple[str, list[str], str]:
    """A two-platform index tagged `tag` and a signature whose subject is the index:
    (index digest, child digests, signature digest)."""
    children = []
    for arch in ("amd64", "arm64"):
        config = put_blob(url, repository, json.dumps({"architecture": arch, "os": "linux"}).encode())
        layer = put_blob(url, repository, os.urandom(50_000))
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, **config},
            "layers": [{"mediaType": mt.OCI_LAYER, **layer}],
        }
        child = put_manifest(url, repository, digest_of(json.dumps(doc).encode()), doc)
        children.append({**child, "platform": {"architecture": arch, "os": "linux"}})
    index = put_manifest(url, repository, tag, {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children})
    empty = put_blob(url, repository, b"{}")
    signature_blob = put_blob(url, repository, b"signature of " + index["digest"].encode())
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": mt.OCI_EMPTY, **empty},
        "layers": [{"mediaType": "application/vnd.example.signature", **signature_blob}],
        "subject": {"mediaType": mt.OCI_INDEX, "digest": index["digest"], "size": index["size"]},
    }
    signature = put_manifest(url, repository, digest_of(json.dumps(doc).encode()), doc)
    return index["digest"], [c["digest"] for c in children], signature["digest"]


def head(url: str, repository: str, reference: str, auth: tuple[str, str] | None = None) -> str | None:
    response = requests.head(
        f"{url}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}, auth=auth, timeout=30
    )
    return response.headers["Docker-Content-Digest"] if response.status_code == 200 else None


def cli(berth: RegistryProcess | Path, *args: str, stdin: str | None = None) -> Result:
    flags = berth.settings_flags() if isinstance(berth, RegistryProcess) else ["--data-dir", str(berth)]
    return CliRunner().invoke(replicate, [*args, *flags], input=stdin)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def deliveries(berth: RegistryProcess) -> list[tuple[str, int, str | None]]:
    """(replication, attempts, delivered_at) of every on-push delivery row."""
    with sqlite3.connect(berth.data_dir / "registry.db") as db:
        return db.execute("SELECT replication, attempts, delivered_at FROM replication_delivery").fetchall()


@pytest.fixture
def berth(tmp_path: Path) -> Iterator[RegistryProcess]:
    server = RegistryProcess(tmp_path / "berth", workers=2)
    yield server
    server.stop()


@pytest.fixture
def second(tmp_path: Path) -> Iterator[RegistryProcess]:
    server = RegistryProcess(tmp_path / "second")
    yield server
    server.stop()


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    server = Distribution(tmp_path / "distribution")
    yield server
    server.stop()


def test_signed_index_to_distribution_and_back_keeps_every_digest(
    berth: RegistryProcess, distribution: Distribution, second: RegistryProcess
) -> None:
    index, children, signature = push_signed_index(berth.url, "apps/web", "1")
    ok(cli(berth, "add", "to-dist", distribution.url, "--repository", "apps/*"))
    output = ok(cli(berth, "run", "to-dist"))
    assert f"apps/web@{index}" in output and f"apps/web@{signature}" in output

    assert head(distribution.url, "apps/web", "1") == index
    assert all(head(distribution.url, "apps/web", child) == child for child in children)
    # Distribution 2.8 has no referrers API: the signature is listed under the tag schema's tag.
    fallback = requests.get(
        f"{distribution.url}/v2/apps/web/manifests/sha256-{index[7:]}", headers={"Accept": ACCEPT}, timeout=30
    )
    assert [d["digest"] for d in fallback.json()["manifests"]] == [signature]

    # A second run finds everything there and copies nothing.
    assert ok(cli(berth, "run", "to-dist")).endswith("0 copied, 0 deleted, 0 errors\n")

    ok(cli(second, "add", "from-dist", distribution.url, "--repository", "apps/web", "--mode", "pull"))
    ok(cli(second, "run", "from-dist"))
    assert head(second.url, "apps/web", "1") == index
    assert all(head(second.url, "apps/web", child) == child for child in children)
    referrers = requests.get(f"{second.url}/v2/apps/web/referrers/{index}", timeout=30).json()
    assert [d["digest"] for d in referrers["manifests"]] == [signature]
    original = requests.get(f"{berth.url}/v2/apps/web/manifests/{signature}", headers={"Accept": ACCEPT}, timeout=30)
    copied = requests.get(f"{second.url}/v2/apps/web/manifests/{signature}", headers={"Accept": ACCEPT}, timeout=30)
    assert copied.content == original.content
    layer = json.loads(original.content)["layers"][0]["digest"]
    assert digest_of(requests.get(f"{second.url}/v2/apps/web/blobs/{layer}", timeout=30).content) == layer
    status = ok(cli(second, "status"))
    assert "from-dist manual" in status and f"apps/web@{index}" in status


def test_on_push_survives_a_restart_and_never_logs_the_password(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, berth: RegistryProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(capfd comes first, so the registry's processes write their logs into it.)"""
    auth = htpasswd_auth(tmp_path / "auth", {"alice": PASSWORD})
    destination = Distribution(tmp_path / "dest", auth=auth)
    ok(
        cli(
            berth,
            "add",
            "offsite",
            destination.url,
            "--repository",
            "team/*",
            "--schedule",
            "on-push",
            "--username",
            "alice",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
    )
    first = push_image(berth.url, "team/api", "v1", "one")
    wait_for(lambda: head(destination.url, "team/api", "v1", ("alice", PASSWORD)) == first)
    assert head(destination.url, "other/api", "v1", ("alice", PASSWORD)) is None

    # The destination goes away, a push fails to replicate, and this registry dies mid-way.
    port = destination.port
    destination.stop()
    second = push_image(berth.url, "team/api", "v2", "two")
    wait_for(lambda: any(attempts >= 1 and done is None for _name, attempts, done in deliveries(berth)))
    os.killpg(berth.process.pid, signal.SIGKILL)
    berth.process.wait()
    assert any(done is None for _name, _attempts, done in deliveries(berth))

    monkeypatch.setattr(servers, "free_port", lambda: port)
    destination = Distribution(tmp_path / "dest", auth=auth)
    restarted = RegistryProcess(berth.data_dir, workers=2)
    try:
        wait_for(lambda: head(destination.url, "team/api", "v2", ("alice", PASSWORD)) == second)
        wait_for(lambda: all(done is not None for _name, _attempts, done in deliveries(restarted)))
        listing = ok(cli(restarted, "ls")) + ok(cli(restarted, "status"))
        assert "offsite" in listing and "team/api:v2" in listing
    finally:
        restarted.stop()
        destination.stop()
    assert PASSWORD not in listing
    captured = capfd.readouterr()
    assert restarted.url in captured.err  # the servers' own output is what was captured ...
    assert PASSWORD not in captured.out + captured.err  # ... and it never holds the credentials


def test_mirror_deletes_and_tag_filter(
    berth: RegistryProcess, second: RegistryProcess, distribution: Distribution
) -> None:
    common = ["--repository", "apps/*", "--tags", "v*", "--schedule", "on-push"]
    ok(cli(berth, "add", "mirror", second.url, *common, "--mirror-deletes"))
    ok(cli(berth, "add", "keep", distribution.url, *common))
    release = push_image(berth.url, "apps/x", "v1", "release")
    push_image(berth.url, "apps/x", "dev", "dev")
    wait_for(lambda: head(second.url, "apps/x", "v1") == release and head(distribution.url, "apps/x", "v1") == release)
    wait_for(lambda: all(done is not None for _name, _attempts, done in deliveries(berth)))
    assert head(second.url, "apps/x", "dev") is None
    assert head(distribution.url, "apps/x", "dev") is None

    assert requests.delete(f"{berth.url}/v2/apps/x/manifests/v1", timeout=30).status_code == 202
    wait_for(lambda: head(second.url, "apps/x", "v1") is None)
    # Without --mirror-deletes, neither the event nor a run removes anything there.
    assert {name for name, _attempts, _done in deliveries(berth)} == {"mirror", "keep"}
    assert ok(cli(berth, "run", "keep")).endswith("0 copied, 0 deleted, 0 errors\n")
    assert head(distribution.url, "apps/x", "v1") == release


def test_on_push_copies_an_index_and_a_later_signature(berth: RegistryProcess, second: RegistryProcess) -> None:
    ok(cli(berth, "add", "live", second.url, "--repository", "apps/*", "--schedule", "on-push"))
    index, children, signature = push_signed_index(berth.url, "apps/web", "1")
    # The signature arrives untagged after the index: it follows because its subject is there.
    # A delivery writes the referrers before the tag, so wait for both.
    wait_for(
        lambda: head(second.url, "apps/web", signature) == signature and head(second.url, "apps/web", "1") == index
    )
    assert all(head(second.url, "apps/web", child) == child for child in children)
    referrers = requests.get(f"{second.url}/v2/apps/web/referrers/{index}", timeout=30).json()
    assert [d["digest"] for d in referrers["manifests"]] == [signature]


def test_a_run_restores_a_referrer_a_race_dropped_from_the_tag_index(
    berth: RegistryProcess, distribution: Distribution
) -> None:
    """Distribution has no referrers API: signatures are listed in a `sha256-HEX` index, which two
    deliveries may rewrite at once, the later without the other's referrer. A run puts it back."""
    ok(cli(berth, "add", "sync", distribution.url, "--repository", "apps/*"))
    index, _children, signature = push_signed_index(berth.url, "apps/sig", "1")
    ok(cli(berth, "run", "sync"))
    fallback = f"sha256-{index[7:]}"
    empty = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    put_manifest(distribution.url, "apps/sig", fallback, empty)  # what the later rewrite left
    assert head(distribution.url, "apps/sig", signature) == signature
    ok(cli(berth, "run", "sync"))
    listed = requests.get(
        f"{distribution.url}/v2/apps/sig/manifests/{fallback}", headers={"Accept": ACCEPT}, timeout=30
    ).json()
    assert [d["digest"] for d in listed["manifests"]] == [signature]


def test_scheduled_pull_runs_from_the_servers_loop(berth: RegistryProcess, distribution: Distribution) -> None:
    pushed = push_image(distribution.url, "mirror/tool", "2", "tool")
    ok(cli(berth, "add", "feed", distribution.url, "--repository", "mirror/*", "--mode", "pull", "--schedule", "1h"))
    # Nobody runs it by hand: the server's background loop finds it due and runs it once.
    wait_for(lambda: head(berth.url, "mirror/tool", "2") == pushed)
    wait_for(lambda: "feed schedule: 2 copied" in ok(cli(berth, "status", "feed")))
    assert ok(cli(berth, "status", "feed")).count("feed schedule") == 1


def test_pull_mirror_deletes_and_a_refused_tag_delete(
    tmp_path: Path, berth: RegistryProcess, distribution: Distribution
) -> None:
    kept = push_image(distribution.url, "mirror/app", "1", "kept")
    gone = push_image(distribution.url, "mirror/app", "2", "gone")
    ok(cli(berth, "add", "sync", distribution.url, "--repository", "mirror/app", "--mode", "pull", "--mirror-deletes"))
    ok(cli(berth, "add", "copy", distribution.url, "--repository", "mirror/app", "--mode", "pull"))
    ok(cli(berth, "run", "sync"))
    assert head(berth.url, "mirror/app", "2") == gone
    assert requests.delete(f"{distribution.url}/v2/mirror/app/manifests/{gone}", timeout=30).status_code == 202
    assert "0 copied, 0 deleted" in ok(cli(berth, "run", "copy"))
    assert head(berth.url, "mirror/app", "2") == gone
    assert "deleted mirror/app:2" in ok(cli(berth, "run", "sync"))
    assert head(berth.url, "mirror/app", "2") is None and head(berth.url, "mirror/app", "1") == kept

    # Pushing a tag delete on to Distribution 2.8, which deletes no tags: recorded once, not retried.
    ok(
        cli(
            berth,
            "add",
            "back",
            distribution.url,
            "--repository",
            "mirror/*",
            "--schedule",
            "on-push",
            "--mirror-deletes",
        )
    )
    assert requests.delete(f"{berth.url}/v2/mirror/app/manifests/1", timeout=30).status_code == 202
    wait_for(lambda: all(done is not None for _name, _attempts, done in deliveries(berth)))
    assert "error: deleting mirror/app:1" in ok(cli(berth, "status", "back"))
    assert head(distribution.url, "mirror/app", "1") == kept


def test_push_through_the_token_flow(tmp_path: Path, berth: RegistryProcess) -> None:
    token = TokenServer(tmp_path / "token", {"alice": PASSWORD}, refuse=lambda subject, _repo: subject != "alice")
    destination = Distribution(tmp_path / "dest", token.distribution_auth())
    try:
        index, children, signature = push_signed_index(berth.url, "apps/web", "1")
        args = ["add", "tok", destination.url, "--repository", "apps/*", "--username", "alice", "--password-stdin"]
        ok(cli(berth, *args, stdin=PASSWORD + "\n"))
        ok(cli(berth, "run", "tok"))
        granted = {scope for r in token.requests for scope in r["scopes"]}
        assert "repository:apps/web:pull,push" in granted
        assert {r["subject"] for r in token.requests} == {"alice"}
        bearer = token.sign("alice", [{"type": "repository", "name": "apps/web", "actions": ["pull"]}])
        answer = requests.head(
            f"{destination.url}/v2/apps/web/manifests/1",
            headers={"Accept": ACCEPT, "Authorization": f"Bearer {bearer}"},
            timeout=30,
        )
        assert answer.headers["Docker-Content-Digest"] == index
    finally:
        destination.stop()
        token.stop()


def test_a_pull_cut_short_stores_nothing_and_the_next_run_completes(
    berth: RegistryProcess, distribution: Distribution
) -> None:
    config = put_blob(distribution.url, "cut/app", b'{"architecture":"amd64","os":"linux"}')
    layer_bytes = os.urandom(400_000)
    layer = put_blob(distribution.url, "cut/app", layer_bytes)
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, **config},
        "layers": [{"mediaType": mt.OCI_LAYER, **layer}],
    }
    pushed = put_manifest(distribution.url, "cut/app", "1", doc)["digest"]
    proxy = TruncatingProxy.start(("127.0.0.1", distribution.port))
    proxy.cut_after(100_000)  # manifests and HEADs pass, the layer (announced as 400 kB) does not
    ok(cli(berth, "add", "cut", f"http://{proxy.host}", "--repository", "cut/app", "--mode", "pull"))
    failed = cli(berth, "run", "cut")
    assert failed.exit_code == 1 and "cut/app:1" in failed.output and "Traceback" not in failed.output
    assert head(berth.url, "cut/app", "1") is None
    assert requests.head(f"{berth.url}/v2/cut/app/blobs/{layer['digest']}", timeout=30).status_code == 404
    proxy.cut_after(None)
    ok(cli(berth, "run", "cut"))
    assert head(berth.url, "cut/app", "1") == pushed
    assert requests.get(f"{berth.url}/v2/cut/app/blobs/{layer['digest']}", timeout=30).content == layer_bytes


def test_on_postgres_and_s3(tmp_path: Path, request: pytest.FixtureRequest, distribution: Distribution) -> None:
    """The outbox and the runs on PostgreSQL; a pulled blob larger than one S3 part."""
    server = RegistryProcess(tmp_path / "pg", workers=2, args=backend_args(request, "postgres-s3"))
    try:
        ok(cli(server, "add", "live", distribution.url, "--repository", "apps/*", "--schedule", "on-push"))
        index, _children, signature = push_signed_index(server.url, "apps/web", "1")
        fallback = f"sha256-{index[7:]}"
        # Two deliveries write these (the tag's, and the signature's if it was pushed after the
        # tag's ran), and a delivery writes the referrers before the tag: wait for both.
        wait_for(
            lambda: (
                head(distribution.url, "apps/web", fallback) is not None
                and head(distribution.url, "apps/web", "1") is not None
            )
        )
        listed = requests.get(
            f"{distribution.url}/v2/apps/web/manifests/{fallback}", headers={"Accept": ACCEPT}, timeout=30
        )
        assert [d["digest"] for d in listed.json()["manifests"]] == [signature]
        assert head(distribution.url, "apps/web", "1") == index

        big = os.urandom(9 * 1024 * 1024 + 17)
        config = put_blob(distribution.url, "big/app", b'{"architecture":"amd64","os":"linux"}')
        layer = put_blob(distribution.url, "big/app", big)
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, **config},
            "layers": [{"mediaType": mt.OCI_LAYER, **layer}],
        }
        pushed = put_manifest(distribution.url, "big/app", "1", doc)["digest"]
        ok(cli(server, "add", "pull-big", distribution.url, "--repository", "big/app", "--mode", "pull"))
        ok(cli(server, "run", "pull-big"))
        assert head(server.url, "big/app", "1") == pushed
        fetched = requests.get(f"{server.url}/v2/big/app/blobs/{layer['digest']}", timeout=60)
        assert fetched.content == big
    finally:
        server.stop()


def test_a_pull_obeys_upstream_prefixes_and_quotas(berth: RegistryProcess, distribution: Distribution) -> None:
    push_image(distribution.url, "hub/tool", "1", "cached")
    push_image(distribution.url, "small/tool", "1", "large")
    flags = berth.settings_flags()
    added = CliRunner().invoke(upstream, ["add", "hub", distribution.url, "--prefix", "hub", *flags])
    assert added.exit_code == 0, added.output
    assert CliRunner().invoke(quota, ["set", "small/*", "100", *flags]).exit_code == 0
    ok(cli(berth, "add", "into-cache", distribution.url, "--repository", "hub/tool", "--mode", "pull"))
    ok(cli(berth, "add", "into-quota", distribution.url, "--repository", "small/tool", "--mode", "pull"))

    refused = cli(berth, "run", "into-cache")
    assert refused.exit_code == 1 and "prefix are refused" in refused.output
    over = cli(berth, "run", "into-quota")
    assert over.exit_code == 1 and "quota" in over.output.lower()
    assert head(berth.url, "small/tool", "1") is None
    assert "into-cache manual: 0 copied" in ok(cli(berth, "status", "into-cache"))
    assert "into-quota manual: 0 copied" in ok(cli(berth, "status", "into-quota"))


HOSTILE: list[list[str]] = [
    ["add", "x", "ftp://example.com", "--repository", "a/*"],
    ["add", "x", "http://user:pw@127.0.0.1:1", "--repository", "a/*"],
    ["add", "x", "http://127.0.0.1:1/v2/path", "--repository", "a/*"],
    ["add", "x", "http://127.0.0.1:99999", "--repository", "a/*"],
    ["add", "x", "http://" + "a" * 2000, "--repository", "a/*"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "../etc"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "A/B"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a" * 300],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a b"],
    ["add", "x", "http://127.0.0.1:1"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--tags", "v 1"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--tags", "a/b"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--tags", "v" * 200],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--schedule", "0s"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--schedule", "1s"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--schedule", "-1h"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--schedule", "forever"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--schedule", "99999999d"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--schedule", "1" * 5000 + "s"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--schedule", "on-push", "--mode", "pull"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--mode", "sideways"],
    ["add", "../x", "http://127.0.0.1:1", "--repository", "a/*"],
    ["add", "X", "http://127.0.0.1:1", "--repository", "a/*"],
    ["add", "x" * 70, "http://127.0.0.1:1", "--repository", "a/*"],
    ["add", "", "http://127.0.0.1:1", "--repository", "a/*"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--username", "al:ice", "--password-stdin"],
    ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--username", "u" * 300],
    ["run", "../x"],
    ["run", "absent"],
    ["rm", "absent"],
    ["status", "../x"],
    ["status", "--runs", "100000"],
]


@pytest.mark.parametrize("args", HOSTILE, ids=lambda args: " ".join(args)[:60])
def test_hostile_input_changes_nothing(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "data"
    ok(cli(data, "add", "kept", "http://127.0.0.1:1", "--repository", "a/*"))
    before = ok(cli(data, "ls"))
    result = cli(data, *args, stdin="pw\n")
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert ok(cli(data, "ls")) == before


def test_an_oversized_password_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ["add", "x", "http://127.0.0.1:1", "--repository", "a/*", "--username", "u", "--password-stdin"]
    result = cli(data, *args, stdin="p" * 100_000 + "\n")
    assert result.exit_code != 0 and "password" in result.output
    assert len(ok(cli(data, "ls")).splitlines()) == 1  # the header alone
