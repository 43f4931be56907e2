"""Events: recorded in the index and delivered to webhooks from an outbox, signed and retried.

Pushes, deletes and tag changes are written when they happen. Pulls, which come at
manifest-GET rates, are gathered in memory and written once a second in one
transaction, so reading a manifest never waits for a write; a crash can lose at most
that second of pull records. Delivery claims outbox rows with a lease, so any number of
replicas share the work and an event is delivered again only if a replica dies between
sending and recording it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, Unpack

import requests

from registry.metadata.events import Delivery, Events, NewEvent

LOG = logging.getLogger("berth.events")
CLAIM = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)
TIMEOUT = 10.0
PULL_BUFFER = 10_000


class TargetWithoutDigest(TypedDict, total=False):
    tag: str | None
    media_type: str | None
    request_id: str | None
    upstream: str | None


class Target(TargetWithoutDigest, total=False):
    """What an event is about, besides its action, repository, actor and address."""

    digest: str | None


def payload(event: dict[str, Any]) -> dict[str, Any]:
    at = event["at"] if isinstance(event["at"], datetime) else datetime.fromisoformat(str(event["at"]))
    return {
        "id": str(event["id"]),
        "timestamp": (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat(),
        "action": event["action"],
        "target": {
            "repository": event["repository"],
            "digest": event["digest"],
            "tag": event["tag"],
            "mediaType": event["media_type"],
            **({"upstream": event["upstream"]} if event.get("upstream") else {}),
        },
        "actor": {"name": event["actor"]},
        "request": {"addr": event["address"], "id": event["request_id"]},
    }


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class EventService:
    def __init__(self, events: Events, webhooks: list[str], secret: str):
        self.events = events
        self.webhooks = webhooks
        self.secret = secret
        self._pulls: list[NewEvent] = []
        self._lock = threading.Lock()
        self._http = requests.Session()

    def record(self, action: str, repository: str, actor: str, address: str, **target: Unpack[Target]) -> None:
        """Record a push, delete or tag change now (`target`: digest, tag, media_type, request_id)."""
        self.events.record([NewEvent(action, repository, actor, address, **target)], self.webhooks)

    def in_transaction(
        self, action: str, repository: str, actor: str, address: str, **target: Unpack[TargetWithoutDigest]
    ) -> Callable[[Any, str], None]:
        """An event to write inside the transaction of the change itself (given the
        connection and the digest, known only then), so the change and its event commit together."""

        def write(conn: Any, digest: str) -> None:
            event = NewEvent(action, repository, actor, address, digest=digest, **target)
            self.events.insert(conn, [event], self.webhooks)

        return write

    def recent(self, limit: int, repository: str | None = None) -> list[dict[str, Any]]:
        """The newest events first, optionally of one repository."""
        return self.events.recent(limit, repository)

    def record_pull(self, repository: str, actor: str, address: str, **target: Unpack[Target]) -> None:
        """Remember a pull; `flush_pulls` writes it within a second."""
        event = NewEvent("pull", repository, actor, address, at=datetime.now(UTC), **target)
        with self._lock:
            if len(self._pulls) < PULL_BUFFER:
                self._pulls.append(event)

    def flush_pulls(self) -> int:
        with self._lock:
            pending, self._pulls = self._pulls, []
        self.events.record(pending, self.webhooks)
        return len(pending)

    def deliver_due(self, limit: int = 100) -> int:
        """Send what is due; returns how many were delivered."""
        delivered = 0
        for delivery in self.events.claim(limit, CLAIM):
            if self._send(delivery):
                delivered += 1
        return delivered

    def _send(self, delivery: Delivery) -> bool:
        body = json.dumps({"events": [payload(delivery.event)]}, default=str).encode()
        headers = {
            "Content-Type": "application/vnd.berth.events.v1+json",
            "X-Berth-Event-Id": str(delivery.event_id),
            "X-Berth-Signature": signature(self.secret, body),
        }
        try:
            response = self._http.post(delivery.url, data=body, headers=headers, timeout=TIMEOUT)
            ok = 200 <= response.status_code < 300
            error = "" if ok else f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            ok, error = False, str(exc)
        if ok:
            self.events.delivered(delivery)
            return True
        retry = min(timedelta(seconds=2 ** min(delivery.attempts, 12)), MAX_BACKOFF)
        LOG.warning(
            "webhook %s failed for event %s (%s); retrying in %s", delivery.url, delivery.event_id, error, retry
        )
        self.events.failed(delivery, error, retry)
        return False
