"""Where the engine's state lives under one root ($BERTH_ROOT), and which module owns each part.

- `images/` (an OCI layout): `client.layout.Layout`, under the layout's lock.
- `resolved-images.json` and `layers/<algorithm>/<hex>`: `service/images.py`, written by
  temporary file (or directory) + rename, no lock.
- `containers/<id>/`: `service/containers.py`; `state.json` by temporary file + rename,
  names claimed under `containers/.names.lock`.
- `seccomp/default.bpf`: `service/seccomp.py`, temporary file + rename, no lock.
- `events/journal`: `service/events.py`, appended by every process that changes something.

docs/architecture.md has the full table.

The runtime writes only inside a container's directory, into paths the service gives it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class Paths(NamedTuple):
    """Where everything lives under one root ($BERTH_ROOT)."""

    root: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def networks(self) -> Path:
        return self.root / "networks"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    def layer(self, digest: str) -> Path:
        algorithm, _, hexpart = digest.partition(":")
        return self.layers / algorithm / hexpart

    @property
    def resolve_cache(self) -> Path:
        return self.root / "resolved-images.json"

    @classmethod
    def default(cls) -> Paths:
        """Absolute, so that the detached supervisor's chdir("/") changes nothing."""
        return cls(berth_root().absolute())


def berth_root() -> Path:
    """$BERTH_ROOT, else /var/lib/berth for root and ~/.local/share/berth for others.

    The same rule as `client.layout.berth_root` (a test holds them equal), repeated here
    so that `berth run` need not import the client's layout code.
    """
    if os.environ.get("BERTH_ROOT"):
        return Path(os.environ["BERTH_ROOT"])
    if os.geteuid() == 0:
        return Path("/var/lib/berth")
    return Path.home() / ".local" / "share" / "berth"
