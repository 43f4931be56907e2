"""The build cache, kept in the local store as OCI artifacts so the store's own gc respects it.

One cached step is one unnamed index entry pointing at a small artifact manifest
(`artifactType` application/vnd.berth.build-cache.v1+json) whose single layer is the step's
layer blob, or none for a step that changed nothing. The key (BuildKit's rule: the parent
step's key, the instruction after substitution, and the content of the files it copies) is an
annotation on the entry; the layer's diff_id one on the manifest. Being reachable from
`index.json`, cached layers survive `layout.gc()`; `prune` drops the entries and collects.
"""

from __future__ import annotations

import json

from client.layout import Layout
from engine.service.layer_diff import LayerBlob
from registry.oci import mediatypes as mt
from registry.oci.manifest import Descriptor

ARTIFACT_TYPE = "application/vnd.berth.build-cache.v1+json"
KEY = "dev.berth.build.cache-key"
DIFF_ID = "dev.berth.build.diff-id"
CREATED = "dev.berth.build.created"
EMPTY_CONFIG = b"{}"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"


class BuildCache:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._entries: dict[str, Descriptor] | None = None

    def _index(self) -> dict[str, Descriptor]:
        if self._entries is None:
            self._entries = {}
            for entry in self.layout.entries():
                key = (entry.descriptor.annotations or {}).get(KEY)
                if key and entry.descriptor.artifact_type == ARTIFACT_TYPE:
                    self._entries[key] = entry.descriptor
        return self._entries

    def get(self, key: str) -> tuple[LayerBlob | None, str] | None:
        """The cached step: its layer (None if it changed nothing) and when it was made; None on a miss."""
        descriptor = self._index().get(key)
        if descriptor is None or not self.layout.has_blob(descriptor.digest):
            return None
        manifest = json.loads(self.layout.read_blob(descriptor.digest))
        annotations = manifest.get("annotations") or {}
        layers = manifest.get("layers") or []
        if not layers:
            return None, annotations.get(CREATED, "")
        layer = layers[0]
        if not self.layout.has_blob(layer["digest"]):
            return None
        blob = LayerBlob(layer["digest"], layer["size"], annotations[DIFF_ID], layer["mediaType"])
        return blob, annotations.get(CREATED, "")

    def put(self, key: str, layer: LayerBlob | None, created: str) -> None:
        config = self.layout.write_blob(EMPTY_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": config, "size": len(EMPTY_CONFIG)},
            "layers": [layer.descriptor()] if layer else [],
            "annotations": {KEY: key, DIFF_ID: layer.diff_id if layer else "", CREATED: created},
        }
        data = json.dumps(manifest, sort_keys=True).encode()
        descriptor = Descriptor(mt.OCI_MANIFEST, self.layout.write_blob(data), len(data), ARTIFACT_TYPE, {KEY: key})
        self.layout.add(descriptor, None)
        self._index()[key] = descriptor


def is_cache_entry(descriptor: Descriptor) -> bool:
    return descriptor.artifact_type == ARTIFACT_TYPE


def prune(layout: Layout) -> tuple[int, list[str]]:
    """Drop every cache entry, then collect: (entries dropped, blobs deleted)."""
    dropped = layout.discard(is_cache_entry)
    return dropped, layout.gc()
