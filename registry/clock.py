"""The time the registry's rules read: upload id lifetimes, grace periods, retention ages.

Rules take a `Clock` instead of calling `datetime.now` so that tests of expiry move time
forward instead of sleeping. The server and the commands use `SystemClock`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()
