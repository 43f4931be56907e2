"""Queries for the event log and the webhook outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select

from registry.metadata.db import WRITE, Prepared
from registry.metadata.models import Event, EventDelivery
from registry.metadata.outbox import Outbox
from registry.metadata.replication import ON_PUSH, REPLICATED_ACTIONS, enqueue


@dataclass(frozen=True, slots=True)
class NewEvent:
    action: str
    repository: str
    actor: str
    address: str
    digest: str | None = None
    tag: str | None = None
    media_type: str | None = None
    request_id: str | None = None
    at: datetime | None = None
    upstream: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: int
    url: str
    attempts: int
    event: dict[str, Any]


class Events:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.outbox = Outbox(engine, EventDelivery, "url")
        # A push or delete writes one event inside its own transaction: compiled once, as the
        # push's other statements are (building them per call cost more than the rest of
        # the manifest PUT's statements together).
        columns: dict[str, Any] = {name: bindparam(name) for name in NewEvent.__dataclass_fields__}
        self._insert_one = Prepared(engine, insert(Event).values(columns))
        self._insert_one_returning = Prepared(engine, insert(Event).values(columns).returning(Event.id))
        self._on_push = Prepared(engine, ON_PUSH)
        # Prepared statements skip SQLAlchemy's type processing: `at` is stored as the
        # multi-row path stores it (on SQLite, SQLAlchemy's own timestamp text).
        self._at = Event.__table__.c.at.type.bind_processor(engine.dialect)

    def record(self, events: list[NewEvent], webhooks: list[str]) -> None:
        """Store events and, in the same transaction, one outbox row per webhook (and per on-push
        replication that wants the event, see registry/metadata/replication.py)."""
        if not events:
            return
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            self.insert(conn, events, webhooks)

    def insert(self, conn: Connection, events: list[NewEvent], webhooks: list[str]) -> None:
        """The writes of `record`, inside a transaction someone else holds (a push's).
        One multi-row statement per table, since pulls arrive by the thousand."""
        now = datetime.now(UTC)
        rows = [{**{k: getattr(e, k) for k in NewEvent.__dataclass_fields__}, "at": e.at or now} for e in events]
        needs_ids = bool(webhooks) or any(e.action in REPLICATED_ACTIONS for e in events)
        if len(rows) == 1:
            ids = self._insert_single(conn, rows[0], needs_ids)
        elif needs_ids:
            ids = conn.execute(insert(Event).returning(Event.id, sort_by_parameter_order=True), rows).scalars().all()
        else:
            conn.execute(insert(Event), rows)
        if not needs_ids:
            return
        enqueue(conn, list(zip(ids, events, strict=True)), self._on_push)
        if not webhooks:
            return
        deliveries = [
            {"event_id": event_id, "url": url, "attempts": 0, "next_attempt_at": now}
            for event_id in ids
            for url in webhooks
        ]
        conn.execute(insert(EventDelivery), deliveries)

    def _insert_single(self, conn: Connection, row: dict[str, Any], returning: bool) -> Sequence[int]:
        """One event through the compiled statements; its id when `returning`."""
        if self._at is not None:
            row = {**row, "at": self._at(row["at"])}
        if not returning:
            self._insert_one.execute(conn, **row)
            return []
        return [self._insert_one_returning.execute(conn, **row).scalar_one()]

    def recent(self, limit: int = 100, repository: str | None = None) -> list[dict[str, Any]]:
        query = select(Event).order_by(Event.id.desc()).limit(limit)
        if repository:
            query = query.where(Event.repository == repository)
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(*Event.__table__.columns)
                    .where(Event.id.in_(select(query.subquery().c.id)))
                    .order_by(Event.id)
                )
                .mappings()
                .all()
            )
        return [dict(row) for row in rows]

    def claim(self, limit: int, lease: timedelta) -> list[Delivery]:
        """Take due deliveries for this process; another replica skips claimed rows."""
        return [Delivery(*row) for row in self.outbox.claim(limit, lease)]

    def delivered(self, delivery: Delivery) -> None:
        self.outbox.delivered(delivery.event_id, delivery.url, delivery.attempts)

    def failed(self, delivery: Delivery, error: str, retry_in: timedelta) -> None:
        self.outbox.failed(delivery.event_id, delivery.url, delivery.attempts, error, retry_in)
