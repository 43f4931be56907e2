"""Which containers a listing shows (docker's `ps --filter` rules) and their published ports, for every front door.

Filters arrive as docker sends them, a map from name to values (`{"status": ["exited"]}`, or
the older `{"status": {"exited": true}}`); unknown names and values are refused, as dockerd does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from engine.service.containers import Container, Status

STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
KNOWN = ("id", "name", "status", "label", "ancestor", "exited")


class FilterError(ValueError):
    pass


def parse(doc: Any, known: tuple[str, ...] | None = KNOWN) -> dict[str, list[str]]:
    """Docker's filter JSON, checked: names among `known` (any name when None), values strings."""
    if doc in (None, ""):
        return {}
    if not isinstance(doc, dict):
        raise FilterError("filters must be a JSON object")
    out: dict[str, list[str]] = {}
    for name, values in doc.items():
        if known is not None and name not in known:
            raise FilterError(f"invalid filter '{name}'")
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        if not isinstance(values, list) or not all(isinstance(v, str) and len(v) < 4096 for v in values):
            raise FilterError(f"invalid filter values for '{name}'")
        for value in values:
            if name == "status" and value not in STATES:
                raise FilterError(f"invalid filter 'status={value}'")
            if name == "exited" and not value.lstrip("-").isdigit():
                raise FilterError(f"invalid filter 'exited={value}'")
        out[name] = values
    return out


def state_name(container: Container) -> str:
    """Docker's name for the state: created, running or exited."""
    return {Status.CREATED: "created", Status.RUNNING: "running", Status.STOPPED: "exited"}[container.status]


def created_ago(container: Container, now: float | None = None) -> str:
    """docker ps's CREATED column: "N seconds ago", in Go's HumanDuration words."""
    from engine.service.times import human_duration

    return f"{human_duration((time.time() if now is None else now) - container.created)} ago"


def _label(container: Container, want: str) -> bool:
    key, eq, value = want.partition("=")
    if key not in container.spec.labels:
        return False
    return not eq or container.spec.labels[key] == value


def _name(container: Container, pattern: str) -> bool:
    try:
        return re.search(pattern, "/" + container.name) is not None
    except re.error:
        return pattern in container.name


def _ancestor(container: Container, want: str, image_ids: dict[str, str]) -> bool:
    spec = container.spec
    wanted_id = image_ids.get(want)
    short = want.removeprefix("sha256:")
    return (
        want in (spec.image, spec.image_id)
        or wanted_id == spec.image_id
        or (len(short) >= 4 and spec.image_id.removeprefix("sha256:").startswith(short))
    )


def select(
    containers: list[Container],
    filters: dict[str, list[str]],
    image_ids: dict[str, str],
    state: Callable[[Container], str] = state_name,
) -> list[Container]:
    """The containers every filter name accepts: values of one name are alternatives, as docker's,
    except labels, which must all match.

    `image_ids` maps the ancestor values to image ids (the caller resolves names in the image store);
    `state` names a container's state for the status filter (the API's knows "restarting").
    """
    out = []
    for c in containers:
        checks = {
            "id": lambda v, c=c: c.id.startswith(v),
            "name": lambda v, c=c: _name(c, v),
            "status": lambda v, c=c: state(c) == v,
            "label": lambda v, c=c: _label(c, v),
            "ancestor": lambda v, c=c: _ancestor(c, v, image_ids),
            "exited": lambda v, c=c: c.status is Status.STOPPED and c.exit_code == int(v),
        }
        if all((all if name == "label" else any)(checks[name](v) for v in values) for name, values in filters.items()):
            out.append(c)
    return out


def published() -> dict[str, list[Any]]:
    """Every container's published ports, after releasing those of containers that are gone."""
    from engine.service.attachments import reconcile
    from engine.service.networks import Networks
    from engine.service.paths import Paths

    networks = Networks(Paths.default().networks)
    if not networks.store.path.exists():
        return {}
    with networks.store.locked() as state:
        reconcile(state)
        return {cid: a.ports for cid, a in state.attachments.items()}
