"""Restart policies (`--restart no|always|unless-stopped|on-failure[:MAX]`): which exited containers to start again.

Docker's rules: `always` and `unless-stopped` restart whatever the exit code, `on-failure`
only after a non-zero exit, at most MAX times; a container stopped by `stop` stays stopped,
except when the engine service itself starts: then, as dockerd's restore does, `always`
containers start again, and so do `on-failure` ones whose exit (the stop's signal included) was
not zero, and the start forgets the stop, without counting as a restart. Restarts back off as
docker's do (100 ms doubling, at most a minute). The API service calls `due`
about once a second and starts what it returns; the flag "stopped by the user" is a marker
file beside the state, because the supervisor rewrites state.json from its own copy.
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path

from engine.service.containers import Container, ContainerStore, Status

MANUAL = "stopped-by-user"
MAX_BACKOFF = 60.0


def mark_stopped_by_user(container: Container) -> None:
    (container.directory / MANUAL).touch()


def clear_stopped_by_user(directory: Path) -> None:
    with suppress(FileNotFoundError):
        (directory / MANUAL).unlink()


def _wants_restart(container: Container, service_starting: bool) -> bool:
    name, _, limit = container.spec.restart.partition(":")
    manual = (container.directory / MANUAL).exists()
    if name == "always":
        return service_starting or not manual
    if name == "unless-stopped":
        return not manual
    if name == "on-failure":
        under_limit = not limit or container.restart_count < int(limit)
        return (service_starting or not manual) and container.exit_code != 0 and under_limit
    return False


def due(containers: ContainerStore, service_starting: bool = False, now: float | None = None) -> list[Container]:
    """Exited containers whose policy asks for a restart now (their back-off has passed)."""
    now = time.time() if now is None else now
    out = []
    for container in containers.list():
        if container.status is not Status.STOPPED or container.supervised() or container.spec.restart == "no":
            continue
        if not _wants_restart(container, service_starting):
            continue
        backoff = 0.0 if service_starting else min(0.1 * 2**container.restart_count, MAX_BACKOFF)
        if now - (container.finished_at or 0) >= backoff:
            out.append(container)
    return out


def restart(container: Container, service_starting: bool = False) -> None:
    """Start `container` again under its policy, counting the restart (unless a stop came meanwhile)."""
    from engine.service import detach

    if not _wants_restart(container, service_starting):
        return
    if service_starting:
        clear_stopped_by_user(container.directory)  # as dockerd's start at its own start, a fresh one
    else:
        container.update(restart_count=container.restart_count + 1)
    detach.start(container)
    if (container.directory / MANUAL).exists():  # a stop that came while it was starting wins
        from engine.service.lifecycle import stop

        stop(Container.load(container.directory), 1)
