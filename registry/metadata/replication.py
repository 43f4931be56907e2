"""Queries of replication: targets, the on-push outbox (`replication_delivery`) and the record of runs.

An on-push replication's delivery rows are written by `enqueue` inside the transaction that
records the push or delete event, so a change and the promise to replicate it commit together.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from registry.metadata.db import Database, Prepared
from registry.metadata.models import Replication, ReplicationDelivery, ReplicationRun
from registry.metadata.outbox import Outbox

REPLICATED_ACTIONS = ("push", "delete")
# The replications a push or delete may be delivered to (read by `enqueue`, compiled once by
# its caller since it runs in every push's transaction).
ON_PUSH = select(*Replication.__table__.columns).where(Replication.on_push.is_(True))


@dataclass(frozen=True)
class ReplicationConfig:
    name: str
    url: str
    repository_pattern: str
    tag_pattern: str = "*"
    mode: str = "push"
    interval_seconds: int | None = None
    on_push: bool = False
    mirror_deletes: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def matches(self, repository: str, tag: str | None = None) -> bool:
        return fnmatch.fnmatchcase(repository, self.repository_pattern) and (
            tag is None or fnmatch.fnmatchcase(tag, self.tag_pattern)
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: int
    replication: str
    attempts: int
    event: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    replication: str
    trigger: str
    started_at: datetime
    finished_at: datetime
    copied: int
    deleted: int
    detail: list[str]
    error: str | None


def _aware(value: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _config(row: Any) -> ReplicationConfig:
    return ReplicationConfig(
        name=row.name,
        url=row.url,
        repository_pattern=row.repository_pattern,
        tag_pattern=row.tag_pattern,
        mode=row.mode,
        interval_seconds=row.interval_seconds,
        on_push=bool(row.on_push),
        mirror_deletes=bool(row.mirror_deletes),
        username=row.username,
        password=row.password,
    )


def enqueue(conn: Connection, events: list[tuple[int, Any]], on_push: Prepared) -> None:
    """One delivery row per (push or delete event, on-push replication that wants it), in the
    caller's transaction; `on_push` is `ON_PUSH` compiled. A delete is replicated only where
    --mirror-deletes is on."""
    wanted = [(event_id, e) for event_id, e in events if e.action in REPLICATED_ACTIONS and e.media_type != "blob"]
    if not wanted:
        return
    rows = on_push.execute(conn).all()
    if not rows:
        return
    now = datetime.now(UTC)
    deliveries = [
        {"event_id": event_id, "replication": config.name, "attempts": 0, "next_attempt_at": now}
        for config in map(_config, rows)
        if config.mode == "push"
        for event_id, e in wanted
        if config.matches(e.repository) and (e.action == "push" or config.mirror_deletes)
    ]
    if deliveries:
        conn.execute(insert(ReplicationDelivery), deliveries)


class ReplicationIndex:
    def __init__(self, db: Database):
        self.db = db
        self.outbox = Outbox(db.engine, ReplicationDelivery, "replication")

    # configuration ------------------------------------------------------------------------

    def add(self, config: ReplicationConfig) -> str | None:
        """Add a replication; None, or why not (its name is taken)."""
        with self.db.write() as conn:
            if conn.execute(select(Replication.name).where(Replication.name == config.name)).first():
                return f"a replication named {config.name} exists already"
            conn.execute(insert(Replication).values(**config.__dict__))
            return None

    def remove(self, name: str) -> bool:
        with self.db.write() as conn:
            return conn.execute(delete(Replication).where(Replication.name == name)).rowcount == 1

    def configs(self) -> list[ReplicationConfig]:
        with self.db.read() as conn:
            rows = conn.execute(select(*Replication.__table__.columns).order_by(Replication.name)).all()
        return [_config(r) for r in rows]

    def config(self, name: str) -> ReplicationConfig | None:
        with self.db.read() as conn:
            row = conn.execute(select(*Replication.__table__.columns).where(Replication.name == name)).first()
        return None if row is None else _config(row)

    # the on-push outbox --------------------------------------------------------------------

    def claim(self, limit: int, lease: timedelta) -> list[Delivery]:
        """Take due deliveries for this process; another replica skips claimed rows."""
        return [Delivery(*row) for row in self.outbox.claim(limit, lease)]

    def delivered(self, delivery: Delivery) -> None:
        self.outbox.delivered(delivery.event_id, delivery.replication, delivery.attempts)

    def failed(self, delivery: Delivery, error: str, retry_in: timedelta) -> None:
        self.outbox.failed(delivery.event_id, delivery.replication, delivery.attempts, error, retry_in)

    def pending(self) -> dict[str, tuple[int, str | None]]:
        """Per replication: deliveries not yet done, and the newest error among them."""
        with self.db.read() as conn:
            counts = conn.execute(
                select(ReplicationDelivery.replication, func.count())
                .where(ReplicationDelivery.delivered_at.is_(None))
                .group_by(ReplicationDelivery.replication)
            ).all()
            result: dict[str, tuple[int, str | None]] = {}
            for name, count in counts:
                error = conn.execute(
                    select(ReplicationDelivery.last_error)
                    .where(
                        ReplicationDelivery.replication == name,
                        ReplicationDelivery.delivered_at.is_(None),
                        ReplicationDelivery.last_error.is_not(None),
                    )
                    .order_by(ReplicationDelivery.event_id.desc())
                    .limit(1)
                ).scalar()
                result[name] = (count, error)
        return result

    # runs ---------------------------------------------------------------------------------------

    def record_run(self, run: RunRecord) -> None:
        values = {**run.__dict__, "detail": json.dumps(run.detail[:100])}
        if run.error:
            values["error"] = run.error[:2000]
        with self.db.write() as conn:
            conn.execute(insert(ReplicationRun).values(**values))

    def runs(self, limit: int, name: str | None = None) -> list[RunRecord]:
        query = select(*ReplicationRun.__table__.columns).order_by(ReplicationRun.id.desc()).limit(limit)
        if name is not None:
            query = query.where(ReplicationRun.replication == name)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [
            RunRecord(
                r.replication,
                r.trigger,
                _aware(r.started_at),
                _aware(r.finished_at),
                r.copied,
                r.deleted,
                json.loads(r.detail),
                r.error,
            )
            for r in rows
        ]

    def last_scheduled(self, name: str) -> datetime | None:
        with self.db.read() as conn:
            value = conn.execute(
                select(func.max(ReplicationRun.started_at)).where(
                    ReplicationRun.replication == name, ReplicationRun.trigger == "schedule"
                )
            ).scalar()
        return None if value is None else _aware(value)
