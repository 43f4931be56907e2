"""The local store remembers where its blobs came from and went, so a push mounts what the registry has.

Each image is first put on the registry from an `oci:` directory, which records nothing, so
the store knows only what a pull or push in the test tells it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.api import RegistryAPI, check
from client.image import RegistryRepo
from client.layout import MAX_ORIGINS, ORIGINS_FILE, Layout, store_name
from tests.client.conftest import USERS, Berth, Registry
from tests.client.images import build_image, random_bytes
from tests.client.servers import DISTRIBUTION, Distribution, TokenServer


def _seed(berth: Berth, tmp_path: Path, ref: str, seed: int) -> dict[str, bytes]:
    """Put a fresh two-layer image at `ref`; return its blobs (config and layers) by digest."""
    layout = Layout.open(tmp_path / f"seed-{seed}", create=True)
    build_image(layout, "v1", [{"etc/hostname": f"seed {seed}\n".encode()}, {"bin/app": random_bytes(40_000, seed)}])
    berth("copy", f"oci:{layout.root}:v1", ref, "-q")
    _, manifest = layout.image("v1")
    return {d.digest: layout.read_blob(d.digest) for d in (manifest.config, *manifest.layers) if d}


def _ref(host: str, name: str) -> str:
    return f"{host}/origins/{name}/app:v1"


def _repo(host: str, name: str) -> RegistryRepo:
    return RegistryRepo(host, f"origins/{name}/app")


def _pulled(berth: Berth, tmp_path: Path, host: str, name: str, seed: int) -> tuple[str, dict[str, bytes]]:
    """A fresh image at `_ref(host, name)`, pulled into the local store (which records that repository)."""
    ref = _ref(host, name)
    blobs = _seed(berth, tmp_path, ref, seed)
    berth("pull", ref, "-q")
    return ref, blobs


def _push(berth: Berth, source: str, target: str) -> dict[str, str]:
    """`berth push` from the local store; digest -> exists / pushed / mounted."""
    return json.loads(berth("push", source, target, "--format", "json").stdout)["blobs"]


def _delete(host: str, name: str, digests: list[str]) -> None:
    """Delete the manifest and then the blobs from `_ref(host, name)`'s repository, so nothing mounts from it."""
    repository = _repo(host, name).repository
    api = RegistryAPI.connect(host)
    try:
        info = api.head_manifest(repository, "v1")
        assert info is not None and info.digest
        api.delete_manifest(repository, info.digest)
        for digest in digests:
            check(api.transport.request("DELETE", f"/v2/{repository}/blobs/{digest}"), 202).close()
            assert api.head_blob(repository, digest) is None
    finally:
        api.close()


def _pulls_back_identical(berth: Berth, store: Layout, ref: str, blobs: dict[str, bytes]) -> None:
    for entry in store.entries():
        assert entry.name
        store.remove(entry.name)
    store.gc()
    berth("pull", ref, "-q")
    _, manifest = store.image(store_name(ref))
    assert {d.digest for d in (manifest.config, *manifest.layers) if d} == set(blobs)
    assert all(store.read_blob(digest) == data for digest, data in blobs.items())


def test_a_pulled_image_is_pushed_to_another_repository_by_mounting(
    registry: Registry, store: Layout, berth: Berth, tmp_path: Path
) -> None:
    host = registry.host
    a, blobs = _pulled(berth, tmp_path, host, "a", 11)
    assert {d: store.origins()[d] for d in blobs} == dict.fromkeys(blobs, [_repo(host, "a")])

    assert _push(berth, a, _ref(host, "b")) == dict.fromkeys(blobs, "mounted")
    assert all(store.origins()[d] == [_repo(host, "b"), _repo(host, "a")] for d in blobs)
    _pulls_back_identical(berth, store, _ref(host, "b"), blobs)


def test_a_third_repository_mounts_past_a_recorded_one_that_lost_the_blob(
    registry: Registry, store: Layout, berth: Berth, tmp_path: Path
) -> None:
    host = registry.host
    a, blobs = _pulled(berth, tmp_path, host, "third-a", 12)
    assert _push(berth, a, _ref(host, "third-b")) == dict.fromkeys(blobs, "mounted")
    _delete(host, "third-b", list(blobs))  # the most recent record is now stale

    assert _push(berth, a, _ref(host, "third-c")) == dict.fromkeys(blobs, "mounted")
    assert all(store.origins()[d][0] == _repo(host, "third-c") for d in blobs)
    _pulls_back_identical(berth, store, _ref(host, "third-c"), blobs)


def test_a_source_that_lost_the_blobs_falls_back_to_an_upload(
    registry: Registry, store: Layout, berth: Berth, tmp_path: Path
) -> None:
    host = registry.host
    a, blobs = _pulled(berth, tmp_path, host, "gone", 13)
    _delete(host, "gone", list(blobs))

    assert _push(berth, a, _ref(host, "after-gone")) == dict.fromkeys(blobs, "pushed")
    _pulls_back_identical(berth, store, _ref(host, "after-gone"), blobs)


@pytest.mark.parametrize("damage", ["missing", "not json", "wrong shape"])
def test_a_missing_or_corrupt_record_is_ignored(
    registry: Registry, store: Layout, berth: Berth, tmp_path: Path, damage: str
) -> None:
    host = registry.host
    name = damage.replace(" ", "-")
    a, blobs = _pulled(berth, tmp_path, host, name, 14)
    record = store.root / ORIGINS_FILE
    if damage == "missing":
        record.unlink()
    else:
        record.write_text("{not json" if damage == "not json" else '{"blobs": {"sha256:x": "a/b", "y": [[1, 2]]}}')

    assert _push(berth, a, _ref(host, f"{name}-pushed")) == dict.fromkeys(blobs, "pushed")
    assert store.origins() == dict.fromkeys(blobs, [_repo(host, f"{name}-pushed")])


def test_a_push_to_another_host_never_mounts(registry: Registry, store: Layout, berth: Berth, tmp_path: Path) -> None:
    """`localhost:PORT` is the same server as `127.0.0.1:PORT`: a mount would succeed there, had one been tried."""
    host = registry.host
    assert host.startswith("127.0.0.1:")
    a, blobs = _pulled(berth, tmp_path, host, "hosts", 15)
    other = host.replace("127.0.0.1", "localhost")
    assert _push(berth, a, _ref(other, "other-host")) == dict.fromkeys(blobs, "pushed")
    assert all(store.origins()[d] == [_repo(other, "other-host"), _repo(host, "hosts")] for d in blobs)


def test_oci_directories_keep_no_record(registry: Registry, store: Layout, berth: Berth, tmp_path: Path) -> None:
    """A directory written for other tools stays a plain layout, and reads as having no record."""
    a = _ref(registry.host, "oci")
    blobs = _seed(berth, tmp_path, a, 16)
    berth("copy", a, f"oci:{tmp_path / 'out'}:v1", "-q")
    assert not (tmp_path / "out" / ORIGINS_FILE).exists()
    out = json.loads(
        berth("copy", f"oci:{tmp_path / 'out'}:v1", _ref(registry.host, "oci-back"), "--format", "json").stdout
    )
    assert out["blobs"] == dict.fromkeys(blobs, "pushed")
    assert not (tmp_path / "out" / ORIGINS_FILE).exists()


def test_the_record_is_bounded_most_recent_first_and_collected(store: Layout) -> None:
    build_image(store, "img", [{"f": b"record"}])
    _, manifest = store.image("img")
    digests = [manifest.config.digest, *(layer.digest for layer in manifest.layers)]
    for n in range(MAX_ORIGINS + 2):
        store.add_origins(digests, RegistryRepo("r.example", f"repo{n}"))
    store.add_origins(digests[:1], RegistryRepo("r.example", "repo3"))
    recorded = store.origins()
    assert [r.repository for r in recorded[digests[0]]] == ["repo3", "repo6", "repo5", "repo4", "repo2"]
    assert [r.repository for r in recorded[digests[1]]] == ["repo6", "repo5", "repo4", "repo3", "repo2"]

    assert store.remove("img") and store.gc()
    assert store.origins() == {}
    assert json.loads((store.root / ORIGINS_FILE).read_text())["blobs"] == {}

    plain = Layout.open(store.root)
    plain.add_origins(digests, RegistryRepo("r.example", "ignored"))
    assert plain.origins() == {} and store.origins() == {}


@pytest.fixture(scope="module")
def guarded_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """Distribution with token auth in which bob is granted nothing on alice/*: a mount from there is refused."""
    if not DISTRIBUTION:
        pytest.skip("docker-registry (CNCF Distribution) is not installed")
    users = {**USERS, "bob": "builder"}
    tokens = TokenServer(
        tmp_path_factory.mktemp("guarded-token"),
        users,
        refuse=lambda subject, repository: subject != "alice" and repository.startswith("alice/"),
    )
    server = Distribution(tmp_path_factory.mktemp("guarded"), tokens.distribution_auth())
    yield server
    server.stop()
    tokens.stop()


def test_a_mount_refused_with_an_error_falls_back_to_an_upload(
    guarded_registry: Distribution, store: Layout, berth: Berth, tmp_path: Path
) -> None:
    host = guarded_registry.host

    def login(user: str, password: str) -> None:
        berth("login", "-u", user, "--password-stdin", host, input=password + "\n")

    login("alice", USERS["alice"])
    a = f"{host}/alice/app:v1"
    blobs = _seed(berth, tmp_path, a, 17)
    berth("pull", a, "-q")
    login("bob", "builder")
    assert _push(berth, a, f"{host}/bob/app:v1") == dict.fromkeys(blobs, "pushed")
    _pulls_back_identical(berth, store, f"{host}/bob/app:v1", blobs)
