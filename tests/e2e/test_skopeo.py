"""skopeo copy --all of a two-platform OCI index built with buildah, then inspect, list-tags and delete."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import ContainerTools, Registry
from tests.e2e.images import LayoutImage, busybox_rootfs, read_layout, sha256_digest
from tests.e2e.processes import require_binaries

pytestmark = pytest.mark.e2e

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PLATFORMS = ("amd64", "arm64")
ARCH_FILE = "etc/e2e-arch"


@pytest.fixture(scope="module")
def multi_platform_layout(buildah: ContainerTools, e2e_dir: Path) -> LayoutImage:
    """An OCI layout holding an index of linux/amd64 and linux/arm64 busybox images whose layers differ by
    one file naming the architecture."""
    busybox = require_binaries("busybox")["busybox"]
    work = e2e_dir / "multi"
    rootfs = busybox_rootfs(busybox, work / "rootfs")
    buildah.buildah("manifest", "create", "localhost/e2e-multi:1")
    for arch in PLATFORMS:
        (rootfs / ARCH_FILE).write_text(arch + "\n")
        container = buildah.buildah("from", "scratch").stdout.strip()
        buildah.buildah("copy", container, rootfs, "/")
        buildah.buildah("config", "--os", "linux", "--arch", arch, "--cmd", "/bin/sh", container)
        buildah.buildah(
            "commit",
            "-q",
            "--format",
            "oci",
            "--manifest",
            "localhost/e2e-multi:1",
            container,
            f"localhost/e2e-multi-{arch}:1",
        )
        buildah.buildah("rm", container)
    layout_dir = work / "layout"
    buildah.buildah("manifest", "push", "--all", "--format", "oci", "localhost/e2e-multi:1", f"oci:{layout_dir}:1")
    layout = read_layout(layout_dir, "1")
    assert layout.media_type == OCI_INDEX
    assert sorted(m["platform"]["architecture"] for m in layout.json()["manifests"]) == sorted(PLATFORMS)
    return layout


def _children(layout: LayoutImage) -> dict[str, dict]:
    return {m["platform"]["architecture"]: m for m in layout.json()["manifests"]}


def _layer_file(layer_blob: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_blob))) as tar:
        for member in tar.getmembers():
            if member.name.lstrip("./") == name:
                extracted = tar.extractfile(member)
                return extracted.read() if extracted else None
    return None


def test_skopeo_multi_platform_copy_inspect_delete(
    skopeo: ContainerTools, registry: Registry, multi_platform_layout: LayoutImage, e2e_dir: Path
) -> None:
    layout = multi_platform_layout
    dest = f"docker://{registry.host}/e2e/multi"
    skopeo.skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout.root}:1", f"{dest}:1")

    # The index comes back byte for byte, so its digest is preserved.
    raw = skopeo.skopeo("inspect", "--raw", "--tls-verify=false", f"{dest}:1").stdout.encode()
    assert raw == layout.raw
    assert sha256_digest(raw) == layout.digest
    response = registry.get("/v2/e2e/multi/manifests/1", headers={"Accept": OCI_INDEX})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    assert response.headers["Docker-Content-Digest"] == layout.digest

    # Each platform resolves through the index to its own manifest, config and layers.
    children = _children(layout)
    for arch, descriptor in children.items():
        child = json.loads(layout.blob(descriptor["digest"]))
        child_raw = skopeo.skopeo("inspect", "--raw", "--tls-verify=false", f"{dest}@{descriptor['digest']}").stdout
        assert child_raw.encode() == layout.blob(descriptor["digest"])
        info = json.loads(
            skopeo.skopeo(
                "inspect", "--tls-verify=false", "--override-os", "linux", "--override-arch", arch, f"{dest}:1"
            ).stdout
        )
        assert info["Architecture"] == arch and info["Os"] == "linux"
        assert info["Layers"] == [layer["digest"] for layer in child["layers"]]
        config = json.loads(
            skopeo.skopeo(
                "inspect", "--config", "--raw", "--tls-verify=false", "--override-arch", arch, f"{dest}:1"
            ).stdout
        )
        assert config["architecture"] == arch
    amd64_layers = json.loads(layout.blob(children["amd64"]["digest"]))["layers"]
    arm64_layers = json.loads(layout.blob(children["arm64"]["digest"]))["layers"]
    assert amd64_layers != arm64_layers  # the platforms really are different images

    # Copy one platform back out: same manifest digest, same layer bytes, the arm64 marker file inside.
    out = e2e_dir / "multi" / "pulled"
    skopeo.skopeo("copy", "--src-tls-verify=false", "--override-arch", "arm64", f"{dest}:1", f"oci:{out}:arm64")
    pulled = read_layout(out, "arm64")
    assert pulled.digest == children["arm64"]["digest"]
    for layer in arm64_layers:
        assert pulled.blob(layer["digest"]) == layout.blob(layer["digest"])
    assert _layer_file(pulled.blob(arm64_layers[-1]["digest"]), ARCH_FILE) == b"arm64\n"

    # Registry-to-registry copies: a second tag in the same repository, and another repository.
    skopeo.skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", f"{dest}:1", f"{dest}:2")
    skopeo.skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"{dest}:1",
        f"docker://{registry.host}/e2e/multi-copy:1",
    )
    tags = json.loads(skopeo.skopeo("list-tags", "--tls-verify=false", dest).stdout)
    assert tags == {"Repository": f"{registry.host}/e2e/multi", "Tags": ["1", "2"]}

    # skopeo delete resolves the tag and deletes the index by digest.
    skopeo.skopeo("delete", "--tls-verify=false", f"{dest}:1")
    for reference in (layout.digest, "1", "2"):
        gone = registry.get(f"/v2/e2e/multi/manifests/{reference}", headers={"Accept": OCI_INDEX})
        assert gone.status_code == 404, (reference, gone.status_code, gone.text)
        assert gone.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN", gone.text
    failed = skopeo.skopeo("inspect", "--raw", "--tls-verify=false", f"{dest}:1", check=False)
    assert failed.returncode != 0
    remaining = json.loads(skopeo.skopeo("list-tags", "--tls-verify=false", dest).stdout)["Tags"] or []
    assert "1" not in remaining and "2" not in remaining

    # The copy in the other repository is untouched.
    kept = registry.get("/v2/e2e/multi-copy/manifests/1", headers={"Accept": OCI_INDEX})
    assert kept.status_code == 200 and kept.headers["Docker-Content-Digest"] == layout.digest
