"""Network namespaces for tests: every `berth` a test runs lives in one, never on the machine's network.

Created with `ip netns add` (a bind mount under /run/netns) and entered with
`nsenter --net=/run/netns/NAME`, which, unlike `ip netns exec`, leaves /sys and the cgroup
tree as they are.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import uuid


class NetNS:
    """A named network namespace with `lo` up; `wrap()` prefixes a command so it runs inside."""

    def __init__(self, prefix: str = "berth-test") -> None:
        self.name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.path = f"/run/netns/{self.name}"
        self.run("ip", "link", "set", "lo", "up", check=True)

    def wrap(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *argv]

    def run(
        self, *argv: str, check: bool = False, timeout: float = 30, **kwargs: object
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.wrap(list(argv)), capture_output=True, text=True, check=check, timeout=timeout, **kwargs
        )

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


_SESSION: list[NetNS] = []


def session_netns() -> NetNS:
    """One namespace for all the engine tests that do not make their own (deleted at exit)."""
    if not _SESSION:
        _SESSION.append(NetNS("berth-engine"))
        atexit.register(_SESSION[0].delete)
    return _SESSION[0]
