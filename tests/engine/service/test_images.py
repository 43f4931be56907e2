"""The engine's image store over the client's OCI layout: names, platforms, removal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client.layout import Layout
from client.platform import host_platform
from engine.service.images import ImageNotFound, ImageStore, PlatformMismatch
from engine.service.paths import Paths
from registry.oci import mediatypes as mt
from registry.oci.manifest import Descriptor
from tests.engine.images import TarBuilder, write_image


def one_layer(root: Path, name: str, architecture: str | None = None) -> str:
    arch = architecture or host_platform().architecture
    return write_image(root, name, [(TarBuilder().file("f", name.encode()).bytes(), "gzip")], {"Cmd": ["x"]}, arch)


def test_resolve_by_full_short_and_id(tmp_path: Path) -> None:
    one_layer(tmp_path, "docker.io/library/alpine:3")
    store = ImageStore(Paths(tmp_path))
    image = store.resolve("alpine:3")
    assert image.name == "docker.io/library/alpine:3"
    assert image.runtime == {"Cmd": ["x"]}
    assert len(image.layers) == 1
    assert store.resolve(image.id.removeprefix("sha256:")[:12]).name == image.name
    assert store.resolve(image.manifest_digest).name == image.name
    with pytest.raises(ImageNotFound):
        store.resolve("alpine:4")


def test_index_picks_this_platform_or_says_which_exist(tmp_path: Path) -> None:
    host = host_platform()
    mine = one_layer(tmp_path, "scratch:mine")
    other = one_layer(tmp_path, "scratch:other", "s390x")
    layout = Layout.open(tmp_path / "images")

    def index(children: list[tuple[str, str]]) -> None:
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": d,
                    "size": layout.blob_path(d).stat().st_size,
                    "platform": {"os": "linux", "architecture": a},
                }
                for d, a in children
            ],
        }
        data = json.dumps(doc).encode()
        layout.add(Descriptor(mt.OCI_INDEX, layout.write_blob(data), len(data)), "docker.io/library/multi:1")

    index([(other, "s390x"), (mine, host.architecture)])
    store = ImageStore(Paths(tmp_path))
    assert store.resolve("multi:1").manifest_digest == mine
    index([(other, "s390x")])
    with pytest.raises(PlatformMismatch, match="s390x"):
        store.resolve("multi:1")
    with pytest.raises(PlatformMismatch, match=f"is for linux/s390x, but this machine is linux/{host.architecture}"):
        store.resolve("scratch:other")


def test_remove_drops_the_name_and_unreferenced_blobs(tmp_path: Path) -> None:
    one_layer(tmp_path, "keep:1")
    one_layer(tmp_path, "drop:1")
    store = ImageStore(Paths(tmp_path))
    dropped = store.resolve("drop:1")
    assert store.remove("drop:1") == "docker.io/library/drop:1"
    assert not store.blob_path(dropped.layers[0]).exists()
    assert not store.blob_path(dropped.manifest_digest).exists()
    assert store.resolve("keep:1").layers
    assert store.names() == ["docker.io/library/keep:1"]
    with pytest.raises(ImageNotFound):
        store.remove("drop:1")


def test_resolutions_are_cached_until_the_index_changes(tmp_path: Path) -> None:
    one_layer(tmp_path, "cached:1")
    probe = (
        "import sys; from pathlib import Path; from engine.service.images import ImageStore; "
        "from engine.service.paths import Paths; "
        f"image = ImageStore(Paths(Path({str(tmp_path)!r}))).resolve('cached:1'); "
        "print(image.name, 'client.layout' in sys.modules)"
    )
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    second = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert first == "docker.io/library/cached:1 True\n"
    assert second == "docker.io/library/cached:1 False\n"
    store = ImageStore(Paths(tmp_path))
    store.remove("cached:1")
    with pytest.raises(ImageNotFound):
        store.resolve("cached:1")


def test_berth_root_rule_matches_the_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from client.layout import berth_root as client_root
    from engine.service.paths import berth_root

    monkeypatch.setenv("BERTH_ROOT", str(tmp_path))
    assert berth_root() == client_root() == tmp_path
    monkeypatch.delenv("BERTH_ROOT")
    assert berth_root() == client_root()
