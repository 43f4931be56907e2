"""Starting a container under its own supervisor daemon from a long-running, threaded process (the API).

Forking the multi-threaded API service to become a supervisor would copy its threads' locks in
whatever state they were. So the service runs `python -m engine.service.detach DIRECTORY`: a
fresh single-threaded process that restarts an exited container's state machine if needed and
daemonizes the supervisor exactly as `berth run -d` does, then reports how the start went as one
JSON line. The supervisor is no child of the service: containers outlive a service restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.service.containers import Container


def start(container: Container) -> None:
    """Start `container` detached; raise StartError with PID 1's own words when it cannot start."""
    from engine.runtime.init import SETUP_FAILED, StartError

    result = subprocess.run(
        [sys.executable, "-m", "engine.service.detach", str(container.directory)],
        capture_output=True,
        env=os.environ,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode == 0:
        return
    try:
        doc = json.loads(result.stdout.splitlines()[-1])
        raise StartError(int(doc["code"]), str(doc["message"]))
    except (ValueError, KeyError, IndexError):
        raise StartError(SETUP_FAILED, result.stderr.decode(errors="replace").strip()[-2000:]) from None


def main(directory: str) -> int:
    from engine.runtime.init import SETUP_FAILED, StartError
    from engine.service import lifecycle
    from engine.service.images import ImageStore
    from engine.service.paths import Paths

    try:
        container = Container.load(Path(directory))
        lifecycle.prepare_restart(container)
        lifecycle.start_detached(ImageStore(Paths.default()), container)
    except StartError as exc:
        print(json.dumps({"code": exc.code, "message": exc.message}))
        return 1
    except Exception as exc:  # noqa: BLE001 - everything is reported to the service as a start failure
        print(json.dumps({"code": SETUP_FAILED, "message": f"{type(exc).__name__}: {exc}"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
