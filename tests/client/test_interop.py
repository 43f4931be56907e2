"""What berth writes, skopeo and umoci read with the same digests, and the other way round."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from client.layout import Layout, store_name
from tests.client.conftest import Berth, Registry, need
from tests.client.images import build_image, build_index, random_bytes

pytestmark = pytest.mark.e2e


def skopeo(*args: str) -> str:
    done = subprocess.run([need("skopeo"), "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_skopeo_reads_what_berth_pushed(registry: Registry, store: Layout, berth: Berth) -> None:
    ref = f"{registry.host}/interop/berth-pushed:v1"
    pushed = build_image(store, store_name(ref), [{"a": random_bytes(50_000, 3)}, {"b": b"b" * 100}])
    berth("push", ref, "-q")
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == pushed.digest
    assert len(info["Layers"]) == 2


def test_berth_pulls_what_skopeo_pushed(registry: Registry, store: Layout, berth: Berth, tmp_path: Path) -> None:
    source = Layout.open(tmp_path / "src", create=True)
    pushed = build_image(source, "v1", [{"s": b"from skopeo" * 100}])
    ref = f"{registry.host}/interop/skopeo-pushed:v1"
    skopeo("copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{tmp_path / 'src'}:v1", f"docker://{ref}")
    berth("pull", ref, "-q")
    assert store.resolve(store_name(ref)).digest == pushed.digest


def test_two_platform_index_keeps_its_digest_for_skopeo(registry: Registry, store: Layout, berth: Berth) -> None:
    ref = f"{registry.host}/interop/multi:v1"
    index = build_index(store, store_name(ref))
    berth("push", ref, "--all-platforms", "-q")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
    assert len(json.loads(raw)["manifests"]) == 2
    assert json.loads(berth("manifest", ref).stdout) == json.loads(raw)
    digest = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", f"docker://{ref}"))[
        "Digest"
    ]
    assert digest == index.digest


def test_oci_output_is_readable_by_skopeo_and_umoci(distribution, store: Layout, berth: Berth, tmp_path: Path) -> None:
    ref = f"{distribution.host}/interop/oci:v1"
    pushed = build_image(store, store_name(ref), [{"etc/motd": b"hello\n"}, {"usr/bin/tool": b"#!/bin/sh\n"}])
    berth("push", ref, "-q")
    layout_dir = tmp_path / "out"
    berth("copy", ref, f"oci:{layout_dir}:v1", "-q")

    info = json.loads(skopeo("inspect", f"oci:{layout_dir}:v1"))
    assert info["Digest"] == pushed.digest
    skopeo("copy", f"oci:{layout_dir}:v1", f"oci:{tmp_path / 'again'}:copy")

    umoci = need("umoci")
    bundle = tmp_path / "bundle"
    done = subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout_dir}:v1", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (bundle / "rootfs" / "etc" / "motd").read_bytes() == b"hello\n"


def test_docker_archive_round_trip_and_skopeo_reads_it(
    distribution, store: Layout, berth: Berth, tmp_path: Path
) -> None:
    ref = f"{distribution.host}/interop/archive:v1"
    build_image(store, store_name(ref), [{"x": b"archived" * 100}, {"y": random_bytes(10_000, 5)}])
    berth("push", ref, "-q")
    archive = tmp_path / "image.tar"
    berth("copy", ref, f"docker-archive:{archive}:{ref}", "-q")

    info = json.loads(skopeo("inspect", f"docker-archive:{archive}"))
    assert info["RepoTags"] == [ref.split("/", 1)[1]] or len(info["Layers"]) == 2
    assert len(info["Layers"]) == 2

    back = f"{distribution.host}/interop/archive-back:v1"
    out = json.loads(berth("copy", f"docker-archive:{archive}", back, "--format", "json").stdout)
    _, manifest = store.image(store_name(ref))
    config = json.loads(berth("manifest", back, "--config").stdout)
    assert config == json.loads(store.read_blob(manifest.config.digest))
    assert out["digest"].startswith("sha256:")


def test_berth_reads_an_archive_skopeo_wrote(distribution, store: Layout, berth: Berth, tmp_path: Path) -> None:
    source = Layout.open(tmp_path / "src", create=True)
    build_image(source, "v1", [{"k": b"skopeo archive" * 50}])
    archive = tmp_path / "skopeo.tar"
    skopeo("copy", f"oci:{tmp_path / 'src'}:v1", f"docker-archive:{archive}:example.com/app:v1")
    berth("copy", f"docker-archive:{archive}:example.com/app:v1", "local:example.com/app:v1", "-q")
    _, manifest = store.image("example.com/app:v1")
    assert len(manifest.layers) == 1
    assert json.loads(store.read_blob(manifest.config.digest))["architecture"] == "amd64"
