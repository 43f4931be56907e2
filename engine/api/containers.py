"""Container endpoints: create, list, inspect, start, stop, kill, restart, rename, remove, wait.

Handlers translate HTTP to the same service calls the `berth` commands make
(`service/lifecycle.py`, `service/listing.py`, `service/detach.py`), with dockerd's messages
and statuses for the CLI to print. Attach and logs are in `streams.py`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from engine.api.container_config import check_name, docker_state, inspect_doc, run_options, summary
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router, filters
from engine.service.containers import Container, ContainerNotFound, ContainerStateError, NameInUse, Status
from engine.service.lifecycle import stores

ID = r"/containers/([^/]{1,300})"


def get(key: str) -> Container:
    """The container named by id, name or unique id prefix, or docker's 404."""
    _, containers = stores()
    try:
        return containers.get(key)
    except ContainerNotFound:
        raise ApiError(404, f"No such container: {key}") from None


def _tagged(name: str) -> str:
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in name else f"{name}:latest"


def _create(image_name: str, options: Any, name: str | None) -> Container:
    from engine.service import lifecycle
    from engine.service.images import ImageNotFound

    images, containers = stores()
    try:
        image = images.resolve(image_name)
    except ImageNotFound:
        raise ApiError(404, f"No such image: {_tagged(image_name)}") from None
    try:
        return lifecycle.create(images, containers, image, options, name)
    except NameInUse:
        holder = containers.get(name or "")
        raise ApiError(
            409,
            f'Conflict. The container name "/{name}" is already in use by container "{holder.id}". '
            "You have to remove (or rename) that container to be able to reuse that name.",
        ) from None


def _list(show_all: bool, limit: int, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    from engine.service import listing

    images, containers = stores()
    rows = containers.list()
    if not show_all and not filters.get("status") and not filters.get("exited"):
        rows = [c for c in rows if docker_state(c) in ("running", "restarting")]  # as dockerd's
    image_ids = {}
    for name in filters.get("ancestor", []):
        found = images.find(name)
        if found is not None:
            image_ids[name] = images.resolve(found).id
    rows = listing.select(rows, filters, image_ids, docker_state)
    if limit > 0:
        rows = rows[:limit]
    published = listing.published() if any(c.spec.publish for c in rows) else {}
    return [summary(c, published.get(c.id, [])) for c in rows]


def _remove(key: str, force: bool, volumes: bool) -> None:
    from engine.service import lifecycle

    container = get(key)
    state = docker_state(container)
    if state != "restarting" and (container.is_running() or container.supervised()):
        state = "running"
    if state in ("running", "restarting") and not force:
        raise ApiError(
            409,
            f"You cannot remove a {state} container {container.id}. "
            "Stop the container before attempting removal or force remove",
        )
    _, containers = stores()
    lifecycle.remove(containers, container, force, volumes)


def _kill(key: str, signal_text: str) -> None:
    from engine.service import lifecycle
    from engine.service.specs import parse_signal

    container = get(key)
    number = parse_signal(signal_text or "KILL")
    try:
        lifecycle.kill(container, number)
    except ContainerStateError:
        raise ApiError(409, f"Cannot kill container: {key}: Container {container.id} is not running") from None


def _stop(key: str, timeout: float) -> bool:
    """False when the container was not running (docker's 304)."""
    from engine.service import lifecycle

    container = get(key)
    running = container.is_running()
    lifecycle.stop(container, timeout)
    return running


def _start(key: str) -> bool:
    """False when it already runs (docker's 304)."""
    from engine.service import detach, restarts

    container = get(key)
    if container.is_running() or container.supervised():
        return False
    restarts.fresh_start(container.directory)
    detach.start(container)
    return True


def _prune() -> dict[str, Any]:
    """Remove every exited (or never started) container, as `docker container prune`."""
    from engine.api.usage import tree_size
    from engine.service import lifecycle

    _, containers = stores()
    removed, reclaimed = [], 0
    for container in containers.list():
        if container.status is not Status.RUNNING and not container.supervised():
            reclaimed += tree_size(container.directory)
            lifecycle.remove(containers, container, False)
            removed.append(container.id)
    return {"ContainersDeleted": removed, "SpaceReclaimed": reclaimed}


def _timeout(request: Request) -> float:
    text = request.arg("t")
    if text is None or text == "":
        return 10
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"invalid value for t: {text[:40]!r}") from None
    return 1e9 if value < 0 else float(value)


def _state(directory: Any) -> Container | None:
    try:
        return Container.load(directory)
    except FileNotFoundError:
        return None


async def wait_exit(router: Router, container: Container, condition: str) -> dict[str, Any]:
    """Docker's wait conditions: not-running (default), next-exit, removed; the exit code when met."""
    began = time.time()
    was_running = container.is_running()
    last = container.exit_code
    delay = 0.005
    while True:
        state = await router.call(_state, container.directory)
        if state is None:
            _, containers = stores()
            code = containers.take_exit(container.id)
            return {"StatusCode": code if code is not None else (last if last is not None else 255), "Error": None}
        last = state.exit_code if state.exit_code is not None else last
        done = state.status is Status.STOPPED and not state.supervised()
        if condition == "next-exit":
            done = done and (was_running or (state.finished_at or 0) >= began)
        elif condition == "removed":
            done = False
        elif condition == "not-running":
            done = done or state.status is Status.CREATED
        if done:
            return {"StatusCode": state.exit_code or 0, "Error": None}
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def register(router: Router) -> None:
    call = router.call

    async def create(request: Request) -> Response:
        name = request.arg("name") or None
        if name is not None:
            name = check_name(name)
        body = await request.json()
        options = run_options(body)
        image = body.get("Image")
        if not isinstance(image, str) or not image or len(image) > 1024:
            raise ApiError(400, "config.Image must name an image")
        container = await call(_create, image, options, name)
        return Response.json({"Id": container.id, "Warnings": []}, 201)

    async def listing(request: Request) -> Response:
        limit_text = request.arg("limit") or "0"
        if not limit_text.lstrip("-").isdigit() or len(limit_text) > 9:
            raise ApiError(400, f"invalid limit {limit_text[:40]!r}")
        from engine.service.listing import KNOWN

        rows = await call(_list, request.flag("all"), int(limit_text), filters(request, KNOWN))
        return Response.json(rows)

    async def inspect(request: Request, key: str) -> Response:
        return Response.json(inspect_doc(await call(get, key)))

    async def start(request: Request, key: str) -> Response:
        return Response(204 if await call(_start, key) else 304)

    async def stop(request: Request, key: str) -> Response:
        return Response(204 if await call(_stop, key, _timeout(request)) else 304)

    async def restart(request: Request, key: str) -> Response:
        timeout = _timeout(request)
        await call(_stop, key, timeout)
        await call(_start, key)
        await call(lambda: get(key).record("restart"))
        return Response(204)

    async def kill(request: Request, key: str) -> Response:
        await call(_kill, key, request.arg("signal") or "KILL")
        return Response(204)

    async def remove(request: Request, key: str) -> Response:
        await call(_remove, key, request.flag("force"), request.flag("v"))
        return Response(204)

    async def rename(request: Request, key: str) -> Response:
        new = check_name(request.arg("name") or "")
        container = await call(get, key)
        _, containers = stores()
        try:
            await call(containers.rename, container, new)
        except NameInUse:
            raise ApiError(409, f'Conflict. The container name "/{new}" is already in use') from None
        return Response(204)

    async def wait(request: Request, key: str) -> Response:
        condition = request.arg("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise ApiError(400, f"invalid condition: {condition[:40]!r}")
        container = await call(get, key)

        async def body() -> Any:
            yield json.dumps(await wait_exit(router, container, condition)).encode() + b"\n"

        return Response(200, stream=body())

    async def prune(request: Request) -> Response:
        if request.arg("filters") not in (None, "", "{}"):
            raise ApiError(501, "berth's engine API does not implement container prune filters")
        return Response.json(await call(_prune))

    router.add("POST", "/containers/create", create)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/containers/json", listing)
    router.add("GET", f"{ID}/json", inspect)
    router.add("POST", f"{ID}/start", start)
    router.add("POST", f"{ID}/stop", stop)
    router.add("POST", f"{ID}/restart", restart)
    router.add("POST", f"{ID}/kill", kill)
    router.add("POST", f"{ID}/rename", rename)
    router.add("POST", f"{ID}/wait", wait)
    router.add("DELETE", ID, remove)
