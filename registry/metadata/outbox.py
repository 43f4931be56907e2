"""An outbox table's life cycle: rows keyed by (event, target), claimed with a lease, then
delivered or rescheduled. Webhooks (`event_delivery`, target `url`) and on-push replication
(`replication_delivery`, target `replication`) are two outboxes of the one event log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update

from registry.metadata.db import WRITE
from registry.metadata.models import Event


class Outbox:
    def __init__(self, engine: Engine, table: Any, target: str):
        self.engine = engine
        self.table = table
        self.target = getattr(table, target)

    def _row(self, event_id: int, target: str) -> Any:
        return (self.table.event_id == event_id) & (self.target == target)

    def claim(self, limit: int, lease: timedelta) -> list[tuple[int, str, int, dict[str, Any]]]:
        """Take due rows for this process (event id, target, attempts, the event); another
        process or replica skips claimed rows until their lease ends."""
        now = datetime.now(UTC)
        table = self.table
        free = or_(table.claimed_until.is_(None), table.claimed_until < now)
        due = (
            select(table.event_id, self.target, table.attempts)
            .where(table.delivered_at.is_(None), table.next_attempt_at <= now, free)
            .order_by(table.event_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            candidates = conn.execute(due).all()
        claimed = []
        for event_id, target, attempts in candidates:
            with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
                taken = conn.execute(
                    update(table)
                    .where(self._row(event_id, target), table.delivered_at.is_(None), free)
                    .values(claimed_until=now + lease)
                ).rowcount
                if taken:
                    event = conn.execute(select(*Event.__table__.columns).where(Event.id == event_id)).mappings().one()
                    claimed.append((event_id, target, attempts, dict(event)))
        return claimed

    def delivered(self, event_id: int, target: str, attempts: int) -> None:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(
                update(self.table)
                .where(self._row(event_id, target))
                .values(delivered_at=datetime.now(UTC), claimed_until=None, attempts=attempts + 1)
            )

    def failed(self, event_id: int, target: str, attempts: int, error: str, retry_in: timedelta) -> None:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(
                update(self.table)
                .where(self._row(event_id, target))
                .values(
                    attempts=attempts + 1,
                    next_attempt_at=datetime.now(UTC) + retry_in,
                    claimed_until=None,
                    last_error=error[:1000],
                )
            )
