"""What the web interface shows: repositories by namespace, a repository's tags, a manifest
read for people (platforms, config, history, layers, referrers), and deletes with their reasons.

Every listing takes `readable`, the caller's "may pull" predicate, so nothing the caller
may not pull is ever counted or shown.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from registry.errors import ManifestUnknown, NameUnknown, RegistryError
from registry.metadata.browse import TAG_ORDER, Browse, EventRow, TagRow, visible_where
from registry.metadata.manifests import Referrer
from registry.oci import mediatypes as mt
from registry.oci.manifest import Descriptor, InvalidManifest, Manifest, UnsupportedManifest, parse_manifest
from registry.service.manifests import ManifestService
from registry.service.policies import PolicyService
from registry.storage.base import BlobStorage

PAGE = 50
MAX_CONFIG_BYTES = 4 * 1024 * 1024
CONFIG_CACHE = 512
MAX_FILTER = 128
TAG_ORDERS = tuple(TAG_ORDER)
EVENT_BATCH = 200
EVENT_BATCHES = 20


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    name: str
    tags: int
    stored_bytes: int
    last_push: datetime | None


@dataclass(frozen=True, slots=True)
class QuotaUse:
    pattern: str
    used: int
    limit: int


@dataclass
class NamespaceGroup:
    name: str  # "" for repositories without a namespace
    repositories: list[RepositoryEntry] = field(default_factory=list)
    stored_bytes: int = 0
    quotas: list[QuotaUse] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    pages: int
    total: int


@dataclass(frozen=True, slots=True)
class RepositoryList:
    groups: list[NamespaceGroup]
    paging: Paging


@dataclass(frozen=True, slots=True)
class TagEntry:
    name: str
    digest: str
    media_type: str
    size: int
    platforms: list[str]
    pushed_at: datetime
    pushed_by: str | None


@dataclass(frozen=True, slots=True)
class TagList:
    tags: list[TagEntry]
    paging: Paging
    pull_tag: str | None  # the tag the page's `docker pull` line names: latest, else the newest push


@dataclass(frozen=True, slots=True)
class ImageConfig:
    platform: str
    created: str | None
    author: str | None
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[str]
    working_dir: str | None
    user: str | None
    exposed_ports: list[str]
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class HistoryStep:
    created: str | None
    created_by: str
    layer: Descriptor | None  # None for a step that made no layer (ENV, CMD...)


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    platform: str
    digest: str
    media_type: str
    size: int
    present: bool  # the repository holds it (an index may name manifests pushed elsewhere)


@dataclass
class ManifestDetail:
    repository: str
    digest: str
    media_type: str
    kind: str  # index, image or artifact
    size: int
    created_at: datetime
    artifact_type: str | None
    subject: str | None
    tags: list[str]
    parents: list[str]
    annotations: dict[str, str]
    platforms: list[PlatformEntry] = field(default_factory=list)
    config_descriptor: Descriptor | None = None
    config: ImageConfig | None = None
    config_problem: str | None = None
    history: list[HistoryStep] = field(default_factory=list)
    layers: list[Descriptor] = field(default_factory=list)
    referrers: list[Referrer] = field(default_factory=list)


def listable(pattern: str) -> bool:
    """Whether a grant pattern can be listed in SQL (LIKE): globs with `[...]` classes cannot,
    and a pattern with capitals matches no repository name. Listings leave those out: they
    may show less than the API serves, never more."""
    return "[" not in pattern and pattern == pattern.lower()


def namespace_of(repository: str) -> str:
    return repository.split("/", 1)[0] if "/" in repository else ""


def paging(total: int, page: int, per_page: int = PAGE) -> Paging:
    pages = max(1, math.ceil(total / per_page))
    return Paging(min(max(page, 1), pages), pages, total)


def platform_name(platform: dict[str, Any] | None) -> str:
    if not platform:
        return "unknown"
    parts = [str(platform.get("os") or "unknown"), str(platform.get("architecture") or "unknown")]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list):
        return [str(v) for v in value]
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _parse(content: bytes, media_type: str) -> Manifest | None:
    try:
        return parse_manifest(content, media_type)
    except (InvalidManifest, UnsupportedManifest):
        return None


class BrowseService:
    def __init__(self, browse: Browse, storage: BlobStorage, manifests: ManifestService, policies: PolicyService):
        self.browse = browse
        self.storage = storage
        self.manifests = manifests
        self.policies = policies
        # Configs are immutable by digest: remembering the parsed ones is always correct.
        self._configs: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._lock = threading.Lock()

    # repositories ----------------------------------------------------------------

    def repositories(self, patterns: list[str] | None, search: str, page: int) -> RepositoryList:
        """One page of the repositories the caller may pull (whose names match one of its pull
        grants' `patterns`; None: all), grouped by namespace, each group with its usage and quotas."""
        patterns = None if patterns is None else [p for p in patterns if listable(p)]
        where = visible_where(patterns, search[:MAX_FILTER])
        pages = paging(self.browse.repository_count(where), page)
        shown = self.browse.repository_page(where, (pages.page - 1) * PAGE, PAGE)
        stats = self.browse.repository_stats(shown)
        groups: dict[str, NamespaceGroup] = {}
        for name in shown:
            s = stats[name]
            group = groups.setdefault(namespace_of(name), NamespaceGroup(namespace_of(name)))
            group.repositories.append(RepositoryEntry(name, s.tags, s.stored_bytes, s.last_push))
        quotas = self.policies.policies.quotas()
        for group in groups.values():
            group.stored_bytes = self.browse.stored_bytes(visible_where(patterns, namespace=group.name))
            group.quotas = [
                QuotaUse(pattern, self.policies.policies.pattern_usage(pattern), limit)
                for pattern, limit in quotas
                if namespace_of(pattern) == group.name
            ]
        return RepositoryList(list(groups.values()), pages)

    # a repository's tags ---------------------------------------------------------

    def tags(self, repository: str, contains: str, order: str, page: int) -> TagList | None:
        """A page of tags (None when the repository does not exist)."""
        if order not in TAG_ORDER:
            order = "name"
        contains = contains[:MAX_FILTER]
        pages = paging(self.browse.tag_count(repository, contains), page)
        rows = self.browse.tag_page(repository, contains, order, (pages.page - 1) * PAGE, PAGE)
        if not rows and not self.browse.repository_exists(repository):
            return None
        sizes = self._sizes(rows)
        pushers = self.browse.last_pushers(repository, [r.name for r in rows])
        entries = [
            TagEntry(
                r.name,
                r.digest,
                r.media_type,
                sizes.get(r.manifest_id, r.size),
                self._platforms(r.content, r.media_type),
                r.pushed_at,
                pushers[r.name][0] if r.name in pushers else None,
            )
            for r in rows
        ]
        return TagList(entries, pages, self._pull_tag(repository))

    def _pull_tag(self, repository: str) -> str | None:
        """`latest` when it exists (what `docker pull NAME` asks for), else the tag pushed last:
        a pull line without a tag would fail in a repository that has no `latest`."""
        if self.browse.digest_of_tag(repository, "latest") is not None:
            return "latest"
        newest = self.browse.tag_page(repository, "", "-pushed", 0, 1)
        return newest[0].name if newest else None

    def _sizes(self, rows: list[TagRow]) -> dict[int, int]:
        """A manifest's size as a pull of it moves: its blobs, or its children's for an index."""
        ids = sorted({r.manifest_id for r in rows})
        children = self.browse.children(ids)
        totals = self.browse.blob_totals(ids + sorted({c for cs in children.values() for c in cs}))
        sizes = {}
        for r in rows:
            own = totals.get(r.manifest_id, 0)
            sizes[r.manifest_id] = r.size + own + sum(totals.get(c, 0) for c in children.get(r.manifest_id, []))
        return sizes

    def _platforms(self, content: bytes, media_type: str) -> list[str]:
        manifest = _parse(content, media_type)
        if manifest is None:
            return []
        if manifest.is_index:
            found = [platform_name(d.platform) for d in manifest.manifests if d.platform]
            return sorted({p for p in found if p != "unknown/unknown"})
        if manifest.config is None or manifest.config.media_type not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
            return []
        config = self._config(manifest.config.digest)
        return [platform_name(config)] if config else []

    def _config(self, digest: str) -> dict[str, Any] | None:
        """The image config blob as JSON, or None when it is missing, too big or not JSON."""
        with self._lock:
            if digest in self._configs:
                self._configs.move_to_end(digest)
                return self._configs[digest]
        size = self.storage.stat(digest)
        parsed: dict[str, Any] | None = None
        if size is not None and size <= MAX_CONFIG_BYTES:
            try:
                value = json.loads(b"".join(self.storage.read(digest)))
                parsed = value if isinstance(value, dict) else None
            except (ValueError, UnicodeDecodeError, OSError):
                parsed = None
        with self._lock:
            self._configs[digest] = parsed
            while len(self._configs) > CONFIG_CACHE:
                self._configs.popitem(last=False)
        return parsed

    # one manifest ----------------------------------------------------------------

    def digest(self, repository: str, tag: str) -> str | None:
        return self.browse.digest_of_tag(repository, tag)

    def manifest(self, repository: str, digest: str) -> ManifestDetail | None:
        record = self.browse.manifest(repository, digest)
        if record is None:
            return None
        manifest = _parse(record.content, record.media_type)
        detail = ManifestDetail(
            repository=repository,
            digest=record.digest,
            media_type=record.media_type,
            kind="artifact",
            size=record.size,
            created_at=record.created_at,
            artifact_type=record.artifact_type,
            subject=record.subject_digest,
            tags=self.browse.tags_of(record.id),
            parents=self.browse.parents(record.id),
            annotations={str(k): str(v) for k, v in (manifest.annotations if manifest else {}).items()},
            referrers=self.manifests.referrers(repository, record.digest, None),
        )
        if manifest is None:
            return detail
        if manifest.is_index:
            detail.kind = "index"
            present = self.browse.present(repository, [d.digest for d in manifest.manifests])
            detail.platforms = [
                PlatformEntry(platform_name(d.platform), d.digest, d.media_type, d.size, d.digest in present)
                for d in manifest.manifests
            ]
            return detail
        detail.layers = list(manifest.layers)
        detail.config_descriptor = manifest.config
        if manifest.config is not None and manifest.config.media_type in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
            detail.kind = "image"
            config = self._config(manifest.config.digest)
            if config is None:
                detail.config_problem = "the config blob is missing, too large or not JSON"
            else:
                detail.config = image_config(config)
                detail.history = history(config, detail.layers)
        return detail

    # events ----------------------------------------------------------------------

    def events(
        self, readable: Callable[[str], bool], before: int | None, action: str, repository: str, actor: str
    ) -> list[EventRow]:
        """A page of the newest events the caller may see, read in batches (others' are skipped)."""
        found: list[EventRow] = []
        for _ in range(EVENT_BATCHES):
            batch = self.browse.events(before, EVENT_BATCH, action, repository[:MAX_FILTER], actor[:MAX_FILTER])
            found += [e for e in batch if readable(e.repository)]
            if len(found) >= PAGE or len(batch) < EVENT_BATCH:
                break
            before = batch[-1].id
        return found[:PAGE]

    # deletes ---------------------------------------------------------------------

    def delete(self, repository: str, reference: str) -> str | None:
        """Delete a tag or (by digest) a manifest; the reason when it is refused."""
        try:
            self.manifests.delete(repository, reference)
        except RegistryError as exc:
            if isinstance(exc, ManifestUnknown | NameUnknown):
                return "it no longer exists"
            return exc.message
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def image_config(config: dict[str, Any]) -> ImageConfig:
    inner = _object(config.get("config"))
    labels = _object(inner.get("Labels"))
    ports = _object(inner.get("ExposedPorts"))
    return ImageConfig(
        platform=platform_name(config),
        created=_text(config.get("created")),
        author=_text(config.get("author")),
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        env=_strings(inner.get("Env")) or [],
        working_dir=_text(inner.get("WorkingDir")) or None,
        user=_text(inner.get("User")) or None,
        exposed_ports=sorted(str(p) for p in ports),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def history(config: dict[str, Any], layers: list[Descriptor]) -> list[HistoryStep]:
    """The config's history, each step that made a layer paired with that layer, in order."""
    steps = config.get("history")
    if not isinstance(steps, list):
        steps = []
    remaining = iter(layers)
    found = []
    for step in steps:
        if not isinstance(step, dict):
            continue
        layer = None if step.get("empty_layer") else next(remaining, None)
        found.append(HistoryStep(_text(step.get("created")), str(step.get("created_by") or ""), layer))
    return found
