"""Signed-out web sessions: the only session state the database keeps (cookies carry the rest)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, select

from registry.metadata.db import WRITE, insert_for
from registry.metadata.models import SignedOutSession


class WebSessions:
    def __init__(self, engine: Engine):
        self.engine = engine

    def sign_out(self, nonce: str, expires_at: datetime) -> None:
        """Refuse this session's nonce until its cookie expires; forget sessions that have."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            conn.execute(delete(SignedOutSession).where(SignedOutSession.expires_at < datetime.now(UTC)))
            conn.execute(
                insert_for(conn)(SignedOutSession)
                .values(nonce=nonce, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["nonce"])
            )

    def signed_out(self, nonce: str) -> bool:
        with self.engine.connect() as conn:
            query = select(SignedOutSession.nonce).where(SignedOutSession.nonce == nonce)
            return conn.execute(query).first() is not None
