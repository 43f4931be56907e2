"""Endpoints the commands use only in passing: pagination, manifest HEAD, upload cancel, errors."""

from __future__ import annotations

import pytest

from client.api import RegistryAPI
from client.errors import RegistryError, RegistryNotFound
from client.layout import Layout, store_name
from tests.client.conftest import Berth, Registry
from tests.client.images import build_image


def test_tags_and_catalog_follow_link_pagination(registry: Registry, store: Layout, berth: Berth) -> None:
    ref = f"{registry.host}/paged/app:t1"
    pushed = build_image(store, store_name(ref), [{"p": b"paged"}])
    berth("push", ref, "-q")
    for tag in ("t2", "t3"):
        berth("push", ref, f"{registry.host}/paged/app:{tag}", "-q")
    api = RegistryAPI.connect(registry.host)
    tags = api.list_tags("paged/app", page_size=1)
    assert sorted(tags) == ["t1", "t2", "t3"], "every page followed, none repeated (Distribution does not sort)"
    assert "paged/app" in api.catalog(page_size=1)
    info = api.head_manifest("paged/app", "t2")
    assert info is not None and info.digest == pushed.digest and info.size == pushed.size
    assert api.head_manifest("paged/app", "missing") is None


def test_upload_sessions_can_be_cancelled(registry: Registry) -> None:
    api = RegistryAPI.connect(registry.host)
    location = api.start_upload("cancel/me")
    location = api.upload_chunk(location, b"half a blob", 0)
    api.cancel_upload(location)
    with pytest.raises(RegistryError):
        api.upload_chunk(location, b"more", 11)


def test_error_bodies_become_exceptions(registry: Registry) -> None:
    api = RegistryAPI.connect(registry.host)
    with pytest.raises(RegistryNotFound) as caught:
        api.get_manifest("never/pushed", "latest")
    assert {e.get("code") for e in caught.value.errors} & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}
    assert caught.value.exit_code == 4
