"""`exec` from a long-running, threaded process (the engine API): a fresh process runs it.

`lifecycle.exec_in` forks, moves the fork into the container's namespaces and relays signals,
which only the main thread of a process may set up; so the API runs `python -m
engine.service.exec_process DIRECTORY REQUEST` with pipes for stdout and stderr (and stdin with
`-i`), and reads the process's exit code as the exec's. With a TTY the request names an inherited
socket over which the exec'd process sends its terminal's master (`runtime/console.py`). A
process that cannot start reports why on stderr and exits with docker's code for it (126 not
executable, 127 not found).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Request:
    """`lifecycle.exec_in`'s arguments after the container; `console_fd` is inherited by the process."""

    args: list[str]
    env: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    interactive: bool = False
    console_fd: int = -1
    console_size: list[int] | None = None


def argv(directory: Path, request: Request) -> list[str]:
    """The command line that runs `request` in the container at `directory`."""
    return [sys.executable, "-m", "engine.service.exec_process", str(directory), json.dumps(asdict(request))]


def main(directory: str, request_text: str) -> int:
    from engine.runtime.init import StartError
    from engine.service.containers import Container, ContainerStateError
    from engine.service.lifecycle import exec_in

    try:
        container = Container.load(Path(directory))
        return exec_in(container, **json.loads(request_text))
    except StartError as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except (ContainerStateError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
