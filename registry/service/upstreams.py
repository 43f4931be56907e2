"""The pull-through cache's rules: which repositories an upstream serves, and cached manifests.

`PREFIX/NAME` is served from the upstream configured with that prefix as `NAME`; with a
default upstream, a repository that matches no prefix and is not local is looked up there
under its own name (dockerd's `registry-mirrors`). Manifests by tag are revalidated with a
HEAD at most once per tag TTL; by digest, never. When the upstream cannot answer, a cached
manifest is served stale (logged and counted).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from registry.errors import Denied, DigestInvalid, ManifestInvalid, ManifestUnknown
from registry.metadata.manifests import ManifestIndex, ManifestRow, NewManifest
from registry.metadata.upstreams import UpstreamConfig, UpstreamIndex
from registry.oci.manifest import InvalidManifest, UnsupportedManifest, parse_manifest
from registry.service.manifests import ManifestService, check_reference
from registry.upstream.client import UpstreamClient, UpstreamRefused, UpstreamUnavailable

LOG = logging.getLogger("berth.upstream")
STALE = Counter("berth_upstream_stale_total", "Cached manifests served because the upstream failed", ["upstream"])
FETCHES = Counter("berth_upstream_fetches_total", "Manifests and blobs fetched from upstreams", ["upstream", "kind"])
CONFIG_REFRESH = 2.0
"""Seconds an upstream list read from the database is trusted (`upstream add` reaches every replica)."""


@dataclass(frozen=True, slots=True)
class Route:
    config: UpstreamConfig
    remote: str
    """The repository's name at the upstream."""


class UpstreamService:
    def __init__(self, index: UpstreamIndex, manifests: ManifestIndex, local: ManifestService, default: str) -> None:
        self.index = index
        self.manifests = manifests
        self.local = local
        self.default = default
        self._configs: list[UpstreamConfig] = []
        self._read_at = -CONFIG_REFRESH
        self._clients: dict[UpstreamConfig, UpstreamClient] = {}
        self._lock = threading.Lock()

    # configuration ----------------------------------------------------------------------

    def configs(self) -> list[UpstreamConfig]:
        if time.monotonic() - self._read_at >= CONFIG_REFRESH:
            configs = self.index.configs()
            with self._lock:
                self._configs, self._read_at = configs, time.monotonic()
                for old in set(self._clients) - set(configs):
                    self._clients.pop(old).close()
        return self._configs

    @property
    def active(self) -> bool:
        """Any upstream configured: only then do reads and pushes consult the cache's rules."""
        return bool(self.configs())

    def client(self, config: UpstreamConfig) -> UpstreamClient:
        with self._lock:
            found = self._clients.get(config)
            if found is None:
                found = self._clients[config] = UpstreamClient(
                    config.url, config.username, config.password, config.ca_pem
                )
            return found

    def route(self, repository: str, writing: bool = False) -> Route | None:
        """The upstream serving a repository: by prefix, by an earlier fill from the default
        upstream, or (reads only) from the default upstream when the repository is not local."""
        configs = self.configs()
        for config in configs:
            if repository.startswith(config.prefix + "/"):
                return Route(config, repository[len(config.prefix) + 1 :])
        default = next((c for c in configs if c.name == self.default), None) if self.default else None
        if default is None:
            return None
        exists, filled_from = self.index.repository_source(repository)
        if filled_from == default.name or not (exists or writing):
            return Route(default, repository)
        return None

    def check_push(self, repository: str) -> None:
        """Pushes into a cached repository are refused: the upstream owns its content."""
        if not self.active:
            return
        route = self.route(repository, writing=True)
        if route is not None:
            config = route.config
            raise Denied(
                f"{repository} is a cache of {route.remote} at upstream {config.name} ({config.url}); "
                f"pushes under the {config.prefix}/ prefix are refused, push to another repository"
            )

    def check_allowed(self, route: Route) -> None:
        allow = route.config.allow
        if allow and not any(fnmatch.fnmatchcase(route.remote, pattern) for pattern in allow):
            raise Denied(f"upstream {route.config.name} does not allow {route.remote} (allowed: {', '.join(allow)})")

    # manifests ----------------------------------------------------------------------------

    def cached(self, repository: str, reference: str, content: bool = True) -> tuple[ManifestRow, str | None] | None:
        """`manifest`'s answer when it needs no upstream (a local repository's manifest, a cached
        one by digest, or by a tag its upstream confirmed within the tag TTL), in the queries a
        local pull makes; None when the upstream must be asked."""
        route = self.route(repository)
        if route is None:
            return self.local.get(repository, reference, content), None
        self.check_allowed(route)
        reference, by_digest = check_reference(reference)
        if by_digest:
            row = self.manifests.get(repository, reference, True, content)
            return None if row is None else (row, route.config.name)
        checked = self.index.checked_tag(repository, reference, content)
        if checked is None or datetime.now(UTC) - checked[1] >= timedelta(seconds=route.config.tag_ttl_seconds):
            return None
        return checked[0], route.config.name

    def manifest(self, repository: str, reference: str, content: bool = True) -> tuple[ManifestRow, str | None]:
        """A manifest and the upstream it came through (None when the repository is local),
        revalidating or fetching it when the cache cannot answer alone."""
        route = self.route(repository)
        if route is None:
            return self.local.get(repository, reference, content), None
        self.check_allowed(route)
        reference, by_digest = check_reference(reference)
        cached = self.manifests.get(repository, reference, by_digest, True)
        if by_digest:
            return (cached or self._fetch(route, repository, reference, None)), route.config.name
        return self._by_tag(route, repository, reference, cached), route.config.name

    def _by_tag(self, route: Route, repository: str, tag: str, cached: ManifestRow | None) -> ManifestRow:
        config = route.config
        if cached is not None:
            checked = self.index.tag_checked_at(repository, tag)
            if checked is not None and datetime.now(UTC) - checked < timedelta(seconds=config.tag_ttl_seconds):
                return cached
        try:
            digest = self.client(config).head_manifest(route.remote, tag)
        except (UpstreamUnavailable, UpstreamRefused) as exc:
            if cached is None:
                raise ManifestUnknown(
                    f"{route.remote}:{tag} is not cached and upstream {config.name} did not answer: {exc}"
                ) from None
            LOG.warning("upstream %s failed (%s); serving the cached %s:%s", config.name, exc, repository, tag)
            STALE.labels(config.name).inc()
            return cached
        if digest is None:
            # Asked only once the TTL has passed: the upstream's 404 stands.
            if cached is not None:
                self.index.drop_tag(repository, tag)
            raise ManifestUnknown(f"upstream {config.name} has no manifest {route.remote}:{tag}", detail={"tag": tag})
        if cached is not None and cached.digest == digest:
            self.index.confirm_tag(repository, tag, digest)
            return cached
        return self._fetch(route, repository, digest, tag)

    def _fetch(self, route: Route, repository: str, reference: str, tag: str | None) -> ManifestRow:
        """GET a manifest from the upstream, verify its digest, and cache it (tagged, if `tag`)."""
        config = route.config
        try:
            body, media_type, announced = self.client(config).get_manifest(route.remote, reference)
        except (UpstreamUnavailable, UpstreamRefused) as exc:
            raise ManifestUnknown(
                f"{route.remote}@{reference} is not cached and upstream {config.name} did not provide it: {exc}"
            ) from None
        expected = reference if ":" in reference else announced
        algorithm = expected.partition(":")[0] if expected else "sha256"
        if algorithm not in ("sha256", "sha512"):
            raise DigestInvalid(f"upstream {config.name} announced an unsupported digest {expected!r}")
        digest = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
        if expected and digest != expected:
            raise ManifestInvalid(f"upstream {config.name} sent a manifest whose digest is {digest}, not {expected}")
        try:
            manifest = parse_manifest(body, media_type or None)
        except (InvalidManifest, UnsupportedManifest) as exc:
            raise ManifestInvalid(f"upstream {config.name} sent an unusable manifest: {exc}") from None
        self.index.store(
            repository,
            config.name,
            NewManifest(
                digest=digest,
                media_type=manifest.media_type,
                content=body,
                config_digest=manifest.config.digest if manifest.config else None,
                subject_digest=manifest.subject.digest if manifest.subject else None,
                artifact_type=manifest.effective_artifact_type,
                annotations=manifest.annotations or None,
                blobs=tuple(d.digest for d in manifest.blobs),
                children=tuple(d.digest for d in manifest.manifests),
            ),
            tag,
        )
        FETCHES.labels(config.name, "manifest").inc()
        return ManifestRow(digest, manifest.media_type, len(body), body)

    # eviction -------------------------------------------------------------------------------

    def evict(self) -> list[tuple[str, str]]:
        """Drop cached manifests not pulled within `--cache-max-age`, then the least recently
        pulled while an upstream's cache is over `--cache-max-bytes`; their blobs are unlinked
        and left to garbage collection. Returns the (repository, digest) pairs removed."""
        removed: list[tuple[str, str]] = []
        now = datetime.now(UTC)
        for config in self.configs():
            if not config.cache_max_age_seconds and not config.cache_max_bytes:
                continue
            cutoff = now - timedelta(seconds=config.cache_max_age_seconds or 0)
            for cached in self.index.cached_manifests(config.name):
                too_old = bool(config.cache_max_age_seconds) and cached.pulled_at < cutoff
                too_big = bool(config.cache_max_bytes) and self.index.cached_bytes(config.name) > (
                    config.cache_max_bytes or 0
                )
                if not (too_old or too_big):
                    continue
                # An index's child goes with its index (which is refused while the index exists).
                if self.manifests.delete(cached.repository, cached.digest) is True:
                    self.index.unlink_unreferenced(cached.repository)
                    removed.append((cached.repository, cached.digest))
        if removed:
            LOG.info("evicted %d cached manifests", len(removed))
        return removed
