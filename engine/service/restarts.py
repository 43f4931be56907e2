"""Restart policies (`--restart no|always|unless-stopped|on-failure[:MAX]`): which exited containers to start again.

Docker's rules: `always` and `unless-stopped` restart whatever the exit code, `on-failure`
only after a non-zero exit, at most MAX times; a container stopped by `stop` stays stopped,
except when the engine service itself starts: then, as dockerd's restore does, `always`
containers start again, and so do `on-failure` ones whose exit (the stop's signal included) was
not zero, and the start forgets the stop, without counting as a restart. Restarts back off as
docker's do: 100 ms doubling with each restart, at most a minute, back to 100 ms after a run of
ten seconds or more and after a start by hand (the streak is a file beside state.json, not
RestartCount, which only grows). The API service calls `due`
about once a second and starts what it returns; the flag "stopped by the user" is a marker
file beside the state, because the supervisor rewrites state.json from its own copy.
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path

from engine.service.containers import Container, ContainerStore, Status

MANUAL = "stopped-by-user"
STREAK = "restart-streak"
MAX_BACKOFF = 60.0
LONG_RUN = 10.0  # dockerd's: a run this long resets the back-off


def mark_stopped_by_user(container: Container) -> None:
    (container.directory / MANUAL).touch()


def fresh_start(directory: Path) -> None:
    """A start by hand (or at the service's own start): no longer stopped by the user, no back-off."""
    for name in (MANUAL, STREAK):
        with suppress(FileNotFoundError):
            (directory / name).unlink()


def _streak(container: Container) -> int:
    """Restarts since the last long run or fresh start: the back-off's exponent."""
    if container.finished_at and container.started_at and container.finished_at - container.started_at >= LONG_RUN:
        return 0
    try:
        return int((container.directory / STREAK).read_text())
    except (OSError, ValueError):
        return 0


def backoff(container: Container) -> float:
    return min(0.1 * 2 ** min(_streak(container), 10), MAX_BACKOFF)


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


def waiting(container: Container) -> bool:
    """Exited (or on its way back up: created again after a run), and its policy starts it again once its
    back-off has passed: dockerd's "restarting", which lasts until the container runs."""
    again = container.status is Status.CREATED and container.finished_at is not None
    if container.spec.restart == "no" or not (container.status is Status.STOPPED or again):
        return False
    return _wants_restart(container, False)


def due(containers: ContainerStore, service_starting: bool = False, now: float | None = None) -> list[Container]:
    """Exited containers whose policy asks for a restart now (their back-off has passed)."""
    now = time.time() if now is None else now
    out = []
    for container in containers.list():
        if container.status is not Status.STOPPED or container.supervised() or container.spec.restart == "no":
            continue
        if not _wants_restart(container, service_starting):
            continue
        if service_starting or now - (container.finished_at or 0) >= backoff(container):
            out.append(container)
    return out


def restart(container: Container, service_starting: bool = False) -> None:
    """Start `container` again under its policy, counting the restart (unless a stop came meanwhile)."""
    from engine.service import detach

    if not _wants_restart(container, service_starting):
        return
    if service_starting:
        fresh_start(container.directory)  # as dockerd's start at its own start
    else:
        streak = _streak(container) + 1
        tmp = container.directory / f".{STREAK}.tmp"
        tmp.write_text(str(streak))
        tmp.replace(container.directory / STREAK)
        container.update(restart_count=container.restart_count + 1)
    detach.start(container)
    if (container.directory / MANUAL).exists():  # a stop that came while it was starting wins
        from engine.service.lifecycle import stop

        stop(Container.load(container.directory), 1)
