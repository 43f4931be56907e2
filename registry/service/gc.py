"""Online garbage collection driven by the index, safe while pushes run.

One replica at a time (a lease row in the database). In order: expired upload sessions
and storage leftovers; tags the retention policies no longer keep; optionally untagged
manifests (repeated until nothing more goes, since removing an index frees its
children); then blobs no manifest references that nobody touched within the grace period.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from registry.clock import SYSTEM_CLOCK, Clock
from registry.metadata.collect import Candidate, Collector, GcRunRow
from registry.service.policies import Expired, PolicyService
from registry.storage.base import BlobStorage

LEASE = "gc"
LEASE_SECONDS = 3600.0


@dataclass
class GcReport:
    dry_run: bool
    uploads: list[str] = field(default_factory=list)
    tags: list[Expired] = field(default_factory=list)
    manifests: list[Candidate] = field(default_factory=list)
    blobs: list[Candidate] = field(default_factory=list)
    upload_bytes: int = 0
    leftover_bytes: int = 0

    @property
    def bytes_reclaimed(self) -> int:
        return sum(b.size for b in self.blobs) + self.upload_bytes + self.leftover_bytes


class GarbageCollector:
    def __init__(
        self,
        collector: Collector,
        storage: BlobStorage,
        policies: PolicyService,
        session_lifetime: timedelta,
        clock: Clock = SYSTEM_CLOCK,
    ):
        """`session_lifetime` is how long an upload id is valid: its tombstone is kept that long."""
        self.clock = clock
        self.collector = collector
        self.storage = storage
        self.policies = policies
        self.session_lifetime = session_lifetime
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def run(
        self, grace: timedelta, untagged: bool = False, dry_run: bool = False, trigger: str = "command"
    ) -> GcReport | None:
        """Collect once; None when another replica is collecting. A real run is recorded with
        its `trigger` (schedule, command, or who started it from the web interface)."""
        if not self.collector.acquire(LEASE, self.holder, LEASE_SECONDS):
            return None
        started = self.clock.now()
        try:
            report = self._collect(started - grace, untagged, dry_run)
        finally:
            self.collector.release(LEASE, self.holder)
        if not dry_run:
            self.collector.record_run(
                GcRunRow(
                    started,
                    self.clock.now(),
                    trigger,
                    len(report.blobs),
                    len(report.manifests),
                    len(report.tags),
                    len(report.uploads),
                    report.bytes_reclaimed,
                )
            )
        return report

    def _collect(self, cutoff: datetime, untagged: bool, dry_run: bool) -> GcReport:
        report = GcReport(dry_run)
        for upload_id, state, size in self.collector.expired_uploads(cutoff):
            if dry_run or self.collector.expire_upload(upload_id, partial(self.storage.cancel_upload, state)):
                report.uploads.append(upload_id)
                report.upload_bytes += size
        if not dry_run:
            self.collector.drop_tombstones(self.clock.now() - self.session_lifetime)
            report.leftover_bytes = self.storage.sweep_uploads(cutoff.timestamp(), self.collector.active_upload_ids())
        report.tags = self.policies.apply_retention(dry_run)
        if untagged:
            while candidates := self.collector.untagged_manifests(cutoff):
                removed = (
                    candidates if dry_run else [c for c in candidates if self.collector.delete_manifest(c.id, cutoff)]
                )
                report.manifests += removed
                if dry_run or not removed:
                    break
        for blob in self.collector.unused_blobs(cutoff):
            if dry_run or self.collector.delete_blob(blob.id, cutoff, self.storage.delete):
                report.blobs.append(blob)
        return report
