"""Quotas, immutable tags and retention: the rules, over the queries in metadata/policies.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from fnmatch import fnmatchcase

from registry.auth.access import matches
from registry.clock import SYSTEM_CLOCK, Clock
from registry.errors import QuotaExceeded
from registry.metadata.policies import Policies, RepositoryUsage, TagRow


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@dataclass(frozen=True, slots=True)
class Expired:
    repository: str
    tag: str
    manifest_id: int


@dataclass(frozen=True, slots=True)
class Usage:
    name: str
    unique_bytes: int
    logical_bytes: int


class PolicyService:
    def __init__(self, policies: Policies, clock: Clock = SYSTEM_CLOCK):
        self.policies = policies
        self.clock = clock

    def _limits(self, repository: str, digest: str | None, upload_id: str | None) -> Iterator[tuple[str, int, int]]:
        """(pattern, limit, bytes used) of every quota a new blob `digest` in `repository`
        counts against. Used bytes are the stored blobs plus what open upload sessions hold
        (other than `upload_id`'s own), so parallel sessions cannot each fill the quota."""
        for pattern, limit in self.policies.quotas():
            if not matches(pattern, repository):
                continue
            if digest is not None and self.policies.pattern_holds(pattern, digest):
                continue
            used = self.policies.pattern_usage(pattern) + self.policies.pattern_pending(pattern, upload_id)
            yield pattern, limit, used

    def allowance(self, repository: str, digest: str | None = None, upload_id: str | None = None) -> int | None:
        """How many new bytes `repository` (or its session `upload_id`) may still take; None: no quota applies."""
        room = [limit - used for _, limit, used in self._limits(repository, digest, upload_id)]
        return max(min(room), 0) if room else None

    def check_quota(
        self, repository: str, incoming: int, digest: str | None = None, upload_id: str | None = None
    ) -> None:
        """Refuse `incoming` new bytes (a blob `digest`, if known; for session `upload_id`, if
        any) beyond any matching quota."""
        for pattern, limit, used in self._limits(repository, digest, upload_id):
            if used + incoming > limit:
                raise QuotaExceeded(
                    f"pushing {human(incoming)} to {repository} would exceed the quota of {pattern}: "
                    f"{human(used)} of {human(limit)} used",
                    detail={"quota": pattern, "limit": limit, "used": used, "incoming": incoming},
                )

    def usage(self, by_namespace: bool = False) -> list[Usage]:
        """Bytes per repository, or per namespace (first path component) deduplicated across it."""
        rows = self.policies.usage()
        if not by_namespace:
            return [Usage(r.name, r.unique_bytes, r.logical_bytes) for r in rows]
        groups: dict[str, list[RepositoryUsage]] = {}
        for row in rows:
            groups.setdefault(row.name.split("/")[0], []).append(row)
        return [
            Usage(
                namespace,
                sum(size for _, size in set().union(*(r.blobs for r in members)))
                + sum(r.manifest_bytes for r in members),
                sum(r.logical_bytes for r in members),
            )
            for namespace, members in sorted(groups.items())
        ]

    def is_immutable(self, repository: str, tag: str) -> bool:
        return any(
            matches(pattern, repository) and fnmatchcase(tag, tag_pattern)
            for pattern, tag_pattern in self.policies.immutable()
        )

    def expired_tags(self) -> list[Expired]:
        """Tags the retention policies no longer keep (immutable tags are always kept)."""
        now = self.clock.now()
        found: dict[tuple[str, str], Expired] = {}
        for policy in self.policies.retention():
            by_repository: dict[str, list[TagRow]] = {}
            for row in self.policies.tags_matching(policy.pattern):
                if fnmatchcase(row.name, policy.tag_pattern):
                    by_repository.setdefault(row.repository, []).append(row)
            for repository, rows in by_repository.items():
                for rank, row in enumerate(rows):
                    updated = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
                    too_many = policy.keep_last is not None and rank >= policy.keep_last
                    too_old = policy.max_age_seconds is not None and now - updated > timedelta(
                        seconds=policy.max_age_seconds
                    )
                    if (too_many or too_old) and not self.is_immutable(repository, row.name):
                        found[(repository, row.name)] = Expired(repository, row.name, row.manifest_id)
        return sorted(found.values(), key=lambda e: (e.repository, e.tag))

    def apply_retention(self, dry_run: bool = False) -> list[Expired]:
        expired = self.expired_tags()
        if dry_run:
            return expired
        return [e for e in expired if self.policies.delete_tag_if_unchanged(e.repository, e.tag, e.manifest_id)]
