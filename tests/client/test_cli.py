"""The commands' exit codes, output formats and local-store commands."""

from __future__ import annotations

import json

from client.layout import Layout, store_name
from tests.client.conftest import Berth
from tests.client.images import build_image
from tests.conftest import free_port


def test_usage_errors_exit_2(berth: Berth) -> None:
    assert "invalid reference" in berth("pull", "UPPER/Case::bad", code=2).output
    berth("copy", "only-one-argument", code=2)
    assert "invalid platform" in berth("pull", "--platform", "linux", "busybox", code=2).output
    assert "needs a path" in berth("copy", "oci:", "docker://x/y:z", code=2).output


def test_not_found_exits_4(distribution, berth: Berth) -> None:
    assert "MANIFEST_UNKNOWN" in berth("pull", f"{distribution.host}/no/such:tag", code=4).output
    berth("tag", "no/such:image", "other:tag", code=4)
    berth("delete", f"{distribution.host}/no/such:tag", code=4)


def test_network_failure_exits_5(berth: Berth) -> None:
    result = berth("tags", f"127.0.0.1:{free_port()}/down/registry", code=5)
    assert "cannot reach" in result.output


def test_tag_images_and_json(store: Layout, berth: Berth) -> None:
    original = build_image(store, store_name("example.com/app:v1"), [{"f": b"1"}])
    berth("tag", "example.com/app:v1", "example.com/app:latest")
    berth("tag", "example.com/app:v1", "mirror.example/app:v1")
    listed = json.loads(berth("images", "--format", "json").stdout)
    names = {entry["name"]: entry["digest"] for entry in listed}
    _, manifest = store.image("example.com/app:v1")
    blobs = original.size + manifest.config.size + sum(layer.size for layer in manifest.layers)
    assert {entry["imageSize"] for entry in listed} == {blobs}
    assert names == {
        n: original.digest for n in ("example.com/app:v1", "example.com/app:latest", "mirror.example/app:v1")
    }
    text = berth("images").stdout
    assert "example.com/app:latest" in text and original.digest[7:19] in text


def test_manifest_tags_catalog_delete(distribution, store: Layout, berth: Berth) -> None:
    ref = f"{distribution.host}/cli/app:v1"
    pushed = build_image(store, store_name(ref), [{"f": b"cli"}])
    berth("push", ref, "-q")
    berth("push", ref, f"{distribution.host}/cli/app:v2", "-q")
    assert json.loads(berth("tags", ref, "--format", "json").stdout) == ["v1", "v2"]
    assert "cli/app" in berth("catalog", distribution.host).stdout.split()
    manifest = json.loads(berth("manifest", ref).stdout)
    assert manifest["config"]["digest"] == store.image(store_name(ref))[1].config.digest
    config = json.loads(berth("manifest", ref, "--config").stdout)
    assert config["architecture"] == "amd64"
    assert pushed.digest in berth("delete", f"{distribution.host}/cli/app:v2").output
    berth("manifest", f"{distribution.host}/cli/app@{pushed.digest}", code=4)


def test_plain_output_names_each_blob(distribution, store: Layout, berth: Berth) -> None:
    ref = f"{distribution.host}/cli/plain:v1"
    build_image(store, store_name(ref), [{"a": b"a"}, {"b": b"b"}])
    output = berth("push", ref).output
    assert output.count(": pushed (") == 3
    assert f"docker://{ref}: digest: sha256:" in output
