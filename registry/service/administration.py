"""The administration the web interface offers: accounts, robot tokens, grants, policies and
garbage collection, with the same rules as the `berth` commands. Bad input raises
`Refused` with a message for people and changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from registry.auth.access import ANONYMOUS, parse_actions, valid_account_name
from registry.auth.passwords import hash_password, new_secret
from registry.config import parse_duration, parse_size
from registry.metadata.accounts import AccountRow, Accounts, GrantRow
from registry.metadata.collect import GcRunRow
from registry.metadata.policies import Retention
from registry.metadata.replication import ReplicationIndex, RunRecord
from registry.metadata.upstreams import UpstreamConfig
from registry.service.gc import GarbageCollector, GcReport
from registry.service.policies import PolicyService

# Repository patterns: name characters and the glob's `*` and `?`.
PATTERN = re.compile(r"[a-z0-9._/*?-]{1,255}")
TAG_PATTERN = re.compile(r"[A-Za-z0-9_.*?-]{1,128}")
MAX_KEEP = 1_000_000


class Refused(ValueError):
    """An administrative change that was not made, and why."""


@dataclass(frozen=True, slots=True)
class QuotaRow:
    pattern: str
    used: int
    limit: int


@dataclass(frozen=True, slots=True)
class ReplicationRow:
    """A replication as the administration page shows it: never its password."""

    name: str
    mode: str
    url: str
    repository_pattern: str
    tag_pattern: str
    interval_seconds: int | None
    on_push: bool
    mirror_deletes: bool
    username: str | None
    pending: int
    last_error: str | None


def check_pattern(pattern: str) -> str:
    if not PATTERN.fullmatch(pattern):
        raise Refused(f"{pattern[:80]!r} is not a repository pattern (lowercase names, / and the globs * ?)")
    return pattern


def check_tag_pattern(pattern: str) -> str:
    if not TAG_PATTERN.fullmatch(pattern):
        raise Refused(f"{pattern[:80]!r} is not a tag pattern (tag characters and the globs * ?)")
    return pattern


def check_account_name(name: str) -> str:
    if not valid_account_name(name):
        raise Refused(f"{name[:80]!r} is not a valid account name")
    return name


def _actions(text: str) -> frozenset[str]:
    try:
        return parse_actions(text[:64])
    except ValueError as exc:
        raise Refused(str(exc)) from None


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text[:32])
    except ValueError as exc:
        raise Refused(str(exc)) from None


class Administration:
    def __init__(
        self,
        accounts: Accounts,
        policies: PolicyService,
        collector: GarbageCollector,
        upstreams: Callable[[], list[UpstreamConfig]],
        replication: ReplicationIndex,
    ):
        """`upstreams` lists the pull-through caches (managed with `berth upstream`), `replication`
        the replications and their runs (managed with `berth replicate`)."""
        self.accounts = accounts
        self.policies = policies
        self.collector = collector
        self.upstreams = upstreams
        self.replication = replication

    # accounts --------------------------------------------------------------------

    def users(self) -> list[AccountRow]:
        return self.accounts.list()

    def add_user(self, name: str, password: str, admin: bool) -> None:
        check_account_name(name)
        try:
            hashed = hash_password(password)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        if not self.accounts.add(name, "user", hashed, admin=admin):
            raise Refused(f"an account named {name!r} exists already")

    def set_admin(self, name: str, admin: bool, by: str) -> None:
        if name == by and not admin:
            raise Refused("you cannot take the admin role from yourself")
        if not self.accounts.set_admin(name, admin):
            raise Refused(f"no person's account named {name[:80]!r}")

    def remove_account(self, name: str, by: str) -> None:
        if name == by:
            raise Refused("you cannot remove your own account")
        if not self.accounts.remove(name):
            raise Refused(f"no account named {name[:80]!r}")

    def create_robot(self, name: str, grants: list[tuple[str, str]], expires: str) -> str:
        """Create a robot account with grants; returns its secret, which is shown once."""
        check_account_name(name)
        parsed = [(check_pattern(pattern), _actions(actions)) for pattern, actions in grants]
        if not parsed:
            raise Refused("a robot token needs at least one grant")
        lifetime = _duration(expires) if expires.strip() else None
        expires_at = datetime.now(UTC) + lifetime if lifetime else None
        secret = new_secret()
        if not self.accounts.add(name, "robot", hash_password(secret), expires_at):
            raise Refused(f"an account named {name!r} exists already")
        for pattern, actions in parsed:
            self.accounts.grant(name, pattern, actions)
        return secret

    def revoke_robot(self, name: str) -> None:
        row = self.accounts.get(name)
        if row is None or row.kind != "robot":
            raise Refused(f"no robot named {name[:80]!r}")
        self.accounts.remove(name)

    # grants ----------------------------------------------------------------------

    def grants(self) -> list[GrantRow]:
        return self.accounts.all_grants()

    def grant(self, principal: str, pattern: str, actions: str) -> None:
        if principal != ANONYMOUS and self.accounts.get(principal) is None:
            raise Refused(f"no account named {principal[:80]!r}")
        self.accounts.grant(principal, check_pattern(pattern), _actions(actions))

    def revoke(self, principal: str, pattern: str) -> None:
        if not self.accounts.revoke(principal, pattern, None):
            raise Refused(f"{principal[:80]} has no grant on {pattern[:80]}")

    # policies --------------------------------------------------------------------

    def quotas(self) -> list[QuotaRow]:
        store = self.policies.policies
        return [QuotaRow(pattern, store.pattern_usage(pattern), limit) for pattern, limit in store.quotas()]

    def set_quota(self, pattern: str, size: str) -> None:
        try:
            limit = parse_size(size)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        self.policies.policies.set_quota(check_pattern(pattern), limit)

    def remove_quota(self, pattern: str) -> None:
        if not self.policies.policies.remove_quota(pattern):
            raise Refused(f"no quota on {pattern[:80]}")

    def retention(self) -> list[Retention]:
        return self.policies.policies.retention()

    def set_retention(self, pattern: str, tag_pattern: str, keep: str, max_age: str) -> None:
        keep_last = None
        if keep.strip():
            if not keep.strip().isdigit() or int(keep) > MAX_KEEP:
                raise Refused(f"keep must be a whole number up to {MAX_KEEP}")
            keep_last = int(keep)
        max_age_seconds = int(_duration(max_age).total_seconds()) if max_age.strip() else None
        if keep_last is None and max_age_seconds is None:
            raise Refused("give the number of tags to keep, a maximum age, or both")
        self.policies.policies.set_retention(
            Retention(check_pattern(pattern), check_tag_pattern(tag_pattern), keep_last, max_age_seconds)
        )

    def remove_retention(self, pattern: str, tag_pattern: str) -> None:
        if not self.policies.policies.remove_retention(pattern, tag_pattern):
            raise Refused(f"no retention policy for {pattern[:80]} tags {tag_pattern[:80]}")

    def immutable(self) -> list[tuple[str, str]]:
        return self.policies.policies.immutable()

    def add_immutable(self, pattern: str, tag_pattern: str) -> None:
        self.policies.policies.add_immutable(check_pattern(pattern), check_tag_pattern(tag_pattern))

    def remove_immutable(self, pattern: str, tag_pattern: str) -> None:
        if not self.policies.policies.remove_immutable(pattern, tag_pattern):
            raise Refused(f"no immutability rule for {pattern[:80]} tags {tag_pattern[:80]}")

    # garbage collection ----------------------------------------------------------

    def collect(self, grace: timedelta, untagged: bool, by: str) -> GcReport:
        report = self.collector.run(grace, untagged, trigger=f"web interface ({by})")
        if report is None:
            raise Refused("another replica is collecting garbage right now; try again later")
        return report

    def gc_runs(self, limit: int = 20) -> list[GcRunRow]:
        return self.collector.collector.runs(limit)

    # replication -------------------------------------------------------------------

    def replications(self) -> list[ReplicationRow]:
        pending = self.replication.pending()
        rows = []
        for c in self.replication.configs():
            count, error = pending.get(c.name, (0, None))
            rows.append(
                ReplicationRow(
                    c.name,
                    c.mode,
                    c.url,
                    c.repository_pattern,
                    c.tag_pattern,
                    c.interval_seconds,
                    c.on_push,
                    c.mirror_deletes,
                    c.username,
                    count,
                    error,
                )
            )
        return rows

    def replication_runs(self, limit: int = 20) -> list[RunRecord]:
        return self.replication.runs(limit)
