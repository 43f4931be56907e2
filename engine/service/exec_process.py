"""`exec` from a long-running, threaded process (the engine API): a fresh process runs it.

`lifecycle.exec_in` forks, moves the fork into the container's namespaces and relays signals,
which only the main thread of a process may set up; so the API runs `python -m
engine.service.exec_process DIRECTORY REQUEST` with pipes for stdout and stderr, and reads the
process's exit code as the exec's. A process that cannot start reports why on stderr and exits
with docker's code for it (126 not executable, 127 not found).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def argv(directory: Path, args: list[str], env: list[str], user: str | None, workdir: str | None) -> list[str]:
    """The command line that runs `args` in the container at `directory`."""
    request = {"args": args, "env": env, "user": user, "workdir": workdir}
    return [sys.executable, "-m", "engine.service.exec_process", str(directory), json.dumps(request)]


def main(directory: str, request_text: str) -> int:
    from engine.runtime.init import StartError
    from engine.service.containers import Container, ContainerStateError
    from engine.service.lifecycle import exec_in

    request = json.loads(request_text)
    try:
        container = Container.load(Path(directory))
        return exec_in(container, request["args"], env=request["env"], user=request["user"], workdir=request["workdir"])
    except StartError as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except (ContainerStateError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
