"""Replication's rules: copy tags with everything they reference, on push, on a schedule or by hand.

A copy goes manifest by manifest, children and blobs first, so the destination never holds a
manifest whose references are missing; every manifest is copied byte for byte under its
digest (checked on the way), and what the destination already has (HEAD) is skipped. A blob
the destination lacks is mounted there from another replicated repository when it can be,
else uploaded. Referrers (signatures, SBOMs) follow their subject; a destination without the
referrers API gets the OCI tag schema's `sha256-HEX` index instead.

On-push replication rides the events outbox: a push or delete event and its
`replication_delivery` rows commit together, every worker of every replica claims due rows
with a lease, and a failure is retried with exponential backoff, so a restart loses nothing
and a dead replica's claims expire into someone else's hands. Scheduled runs take the
`replication:NAME` lease, so one replica runs each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from registry.errors import RegistryError
from registry.metadata.collect import Collector
from registry.metadata.replication import ReplicationConfig, ReplicationIndex, RunRecord
from registry.oci import mediatypes as mt
from registry.oci.manifest import InvalidManifest, UnsupportedManifest, parse_manifest
from registry.service.registry_sides import CopyFailed, LocalSide, RemoteSide, Side, referrer_tag
from registry.upstream.client import UpstreamClient, UpstreamRefused, UpstreamUnavailable

LOG = logging.getLogger("berth.replication")
CLAIM = timedelta(minutes=10)
MAX_BACKOFF = timedelta(hours=1)
LEASE_SECONDS = 3600.0
MAX_DEPTH = 8
SUBJECT_WAITS = 6
"""Attempts (1+2+4+8+16 s of backoff) an untagged referrer waits for its subject to be replicated."""
REFERRER_TAG = re.compile(r"sha(256|512)-[0-9a-f]{64,128}")
FAILURES = (UpstreamUnavailable, UpstreamRefused, CopyFailed, RegistryError, OSError, requests.RequestException)


@dataclass
class Report:
    copied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ReplicationService:
    def __init__(self, index: ReplicationIndex, local: LocalSide, leases: Collector) -> None:
        self.index = index
        self.local = local
        self.leases = leases
        self.holder = f"{socket.gethostname()[:40]}:{os.getpid()}"
        self._clients: dict[ReplicationConfig, UpstreamClient] = {}
        self._lock = threading.Lock()

    def remote(self, config: ReplicationConfig) -> RemoteSide:
        with self._lock:
            client = self._clients.get(config)
            if client is None:
                client = self._clients[config] = UpstreamClient(config.url, config.username, config.password, None)
            return RemoteSide(client)

    def _ends(self, config: ReplicationConfig) -> tuple[Side, Side]:
        remote = self.remote(config)
        return (self.local, remote) if config.mode == "push" else (remote, self.local)

    # copying -------------------------------------------------------------------------------

    def copy(self, src: Side, dst: Side, repository: str, digest: str, report: Report, depth: int = 0) -> None:
        """Copy one manifest (children, blobs, then itself) and its referrers, digests preserved."""
        if depth > MAX_DEPTH:
            raise CopyFailed(f"{repository}@{digest}: references nest deeper than {MAX_DEPTH}")
        body, media_type = src.manifest(repository, digest)
        algorithm = digest.partition(":")[0]
        if f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}" != digest:
            raise CopyFailed(f"{src.name} sent bytes for {repository}@{digest} that hash to something else")
        if dst.head(repository, digest) != digest:
            try:
                manifest = parse_manifest(body, media_type or None)
            except (InvalidManifest, UnsupportedManifest) as exc:
                raise CopyFailed(f"{repository}@{digest} is not a manifest that can be copied: {exc}") from None
            for child in manifest.manifests:
                self.copy(src, dst, repository, child.digest, report, depth + 1)
            for blob in manifest.blobs:
                self._copy_blob(src, dst, repository, blob.digest)
            indexed = dst.put_manifest(repository, digest, body, manifest.media_type)
            report.copied.append(f"{repository}@{digest}")
            if manifest.subject and not indexed:
                self._add_fallback_referrer(src, dst, repository, manifest.subject.digest, digest)
        else:
            self._repair_fallback_referrer(src, dst, repository, digest, body, media_type)
        for referrer in src.referrers(repository, digest) or []:
            if referrer["digest"] != digest:
                self.copy(src, dst, repository, referrer["digest"], report, depth + 1)

    def _copy_blob(self, src: Side, dst: Side, repository: str, digest: str) -> None:
        if dst.has_blob(repository, digest):
            return
        mounts = []
        if dst is not self.local:
            # A replicated repository that holds the blob here likely holds it there too.
            mounts = [name for name in self.local.blobs.holding(digest) if name != repository][:1]
        size, body = src.blob(repository, digest)
        dst.put_blob(repository, digest, size, body, mounts)

    def _repair_fallback_referrer(
        self, src: Side, dst: Side, repository: str, digest: str, body: bytes, media_type: str
    ) -> None:
        """A referrer the destination holds but does not list under its subject: two deliveries
        rewrote the subject's `sha256-HEX` index at once (a PUT there is not conditional) and the
        later one did not know this referrer. Added back, so a run repairs what a race lost."""
        try:
            subject = parse_manifest(body, media_type or None).subject
        except (InvalidManifest, UnsupportedManifest):
            return
        if subject is not None and all(d["digest"] != digest for d in dst.referrers(repository, subject.digest) or []):
            self._add_fallback_referrer(src, dst, repository, subject.digest, digest)

    def _add_fallback_referrer(self, src: Side, dst: Side, repository: str, subject: str, digest: str) -> None:
        """Add a referrer to the destination's `sha256-HEX` index (OCI 1.1 tag schema)."""
        described = next((d for d in src.referrers(repository, subject) or [] if d["digest"] == digest), None)
        if described is None:
            return
        existing = dst.referrers(repository, subject) or []
        entries = [d for d in existing if d["digest"] != digest] + [described]
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
        body = _canonical(index)
        dst.put_manifest(repository, referrer_tag(subject), body, mt.OCI_INDEX)

    def copy_tag(self, src: Side, dst: Side, repository: str, tag: str, report: Report) -> None:
        digest = src.head(repository, tag)
        if digest is None:
            return
        self.copy(src, dst, repository, digest, report)
        if dst.head(repository, tag) != digest:
            body, media_type = src.manifest(repository, digest)
            dst.put_manifest(repository, tag, body, media_type)
            report.copied.append(f"{repository}:{tag}")

    # runs ----------------------------------------------------------------------------------------

    def run(self, name: str, trigger: str = "manual") -> Report | None:
        """Copy every matching tag now (and, with --mirror-deletes, remove what is gone); None when
        another replica is running this replication."""
        config = self.index.config(name)
        if config is None:
            raise KeyError(name)
        lease = f"replication:{name}"[:64]
        if not self.leases.acquire(lease, self.holder, LEASE_SECONDS):
            return None
        started = datetime.now(UTC)
        report = Report()
        try:
            self._sync(config, report)
        finally:
            self.leases.release(lease, self.holder)
            self._record(config, trigger, started, report)
        return report

    def _sync(self, config: ReplicationConfig, report: Report) -> None:
        src, dst = self._ends(config)
        try:
            if config.mode == "pull" and not _is_glob(config.repository_pattern):
                repositories = [config.repository_pattern]
            else:
                repositories = [r for r in src.repositories() if config.matches(r)]
        except FAILURES as exc:
            report.errors.append(f"listing repositories at {src.name}: {exc}")
            return
        for repository in repositories:
            try:
                tags = [
                    t for t in src.tags(repository) if config.matches(repository, t) and not REFERRER_TAG.fullmatch(t)
                ]
                for tag in tags:
                    try:
                        self.copy_tag(src, dst, repository, tag, report)
                    except FAILURES as exc:
                        report.errors.append(f"{repository}:{tag}: {exc}")
                if config.mirror_deletes:
                    for tag in dst.tags(repository):
                        gone = tag not in tags and config.matches(repository, tag) and not REFERRER_TAG.fullmatch(tag)
                        if gone and dst.delete(repository, tag):
                            report.deleted.append(f"{repository}:{tag}")
            except FAILURES as exc:
                report.errors.append(f"{repository}: {exc}")

    def run_due(self) -> int:
        """Start the scheduled runs whose interval has passed; returns how many ran here."""
        ran = 0
        now = datetime.now(UTC)
        for config in self.index.configs():
            if not config.interval_seconds:
                continue
            last = self.index.last_scheduled(config.name)
            if last is not None and now - last < timedelta(seconds=config.interval_seconds):
                continue
            try:
                if self.run(config.name, "schedule") is not None:
                    ran += 1
            except KeyError:
                continue
        return ran

    def _record(self, config: ReplicationConfig, trigger: str, started: datetime, report: Report) -> None:
        for error in report.errors:
            LOG.warning("replication %s: %s", config.name, error)
        self.index.record_run(
            RunRecord(
                config.name,
                trigger,
                started,
                datetime.now(UTC),
                len(report.copied),
                len(report.deleted),
                report.copied + [f"deleted {d}" for d in report.deleted],
                "; ".join(report.errors)[:2000] or None,
            )
        )

    # on push -------------------------------------------------------------------------------------

    def deliver_due(self, limit: int = 50) -> int:
        """Replicate the pushes and deletes whose deliveries are due; returns how many succeeded."""
        done = 0
        for delivery in self.index.claim(limit, CLAIM):
            config = self.index.config(delivery.replication)
            if config is None:
                continue
            started = datetime.now(UTC)
            report = Report()
            try:
                self._deliver(config, delivery.event, delivery.attempts, report)
            except FAILURES as exc:
                retry = min(timedelta(seconds=2 ** min(delivery.attempts, 12)), MAX_BACKOFF)
                LOG.warning(
                    "replication %s of event %s failed (%s); retrying in %s",
                    config.name,
                    delivery.event_id,
                    exc,
                    retry,
                )
                self.index.failed(delivery, str(exc), retry)
                continue
            self.index.delivered(delivery)
            done += 1
            if report.copied or report.deleted or report.errors:
                self._record(config, "push", started, report)
        return done

    def _deliver(self, config: ReplicationConfig, event: dict[str, Any], attempts: int, report: Report) -> None:
        src, dst = self._ends(config)
        repository, tag, digest = event["repository"], event["tag"], event["digest"]
        if event["action"] == "delete":
            reference = tag or digest
            if not (config.mirror_deletes and reference and config.matches(repository, tag)):
                return
            try:
                if dst.delete(repository, reference):
                    report.deleted.append(f"{repository}{':' if tag else '@'}{reference}")
            except UpstreamRefused as exc:
                # Refused for good (Distribution 2.8 deletes no tags): recorded, not retried forever.
                report.errors.append(f"deleting {repository}{':' if tag else '@'}{reference}: {exc}")
            return
        if tag is not None:
            if config.matches(repository, tag):
                self.copy_tag(src, dst, repository, tag, report)
            return
        if digest is None or src.head(repository, digest) is None:
            return
        body, media_type = src.manifest(repository, digest)
        try:
            subject = parse_manifest(body, media_type).subject
        except (InvalidManifest, UnsupportedManifest):
            return
        # An untagged push is a referrer (copied when its subject is there) or part of an
        # index that a tagged push copies.
        if subject is None:
            return
        if dst.head(repository, subject.digest) == subject.digest:
            self.copy(src, dst, repository, digest, report)
        elif attempts < SUBJECT_WAITS and src.head(repository, subject.digest) is not None:
            # The subject's own delivery may be running on another worker right now: wait a little
            # (the backoff), then give up if its tag is not replicated at all.
            raise CopyFailed(f"{repository}@{digest}: its subject {subject.digest} is not at {dst.name} yet")


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
