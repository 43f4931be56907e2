"""`docker top`, `docker stats --no-stream` and `docker system df` over `service/usage.py` and the stores."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from engine.api.containers import get
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router
from engine.service.lifecycle import stores

TICKS = os.sysconf("SC_CLK_TCK")
TITLES = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def _top(key: str) -> dict[str, Any]:
    from engine.service.usage import processes

    rows = processes(get(key))
    table = [[r.uid, str(r.pid), str(r.ppid), "0", r.start, "?", r.time, r.command] for r in rows]
    return {"Titles": TITLES, "Processes": table}


def tree_size(path: Any) -> int:
    """Bytes in the regular files under `path` (symlinks not followed)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
    return total


def _system_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(v) for v in fields) * (1_000_000_000 // TICKS)


def _sample(key: str) -> dict[str, Any]:
    from engine.service.usage import usage

    container = get(key)
    now = usage(container)
    memory_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "id": container.id,
        "name": "/" + container.name,
        "read": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "pids_stats": {"current": len(now.pids)},
        "memory_stats": {"usage": now.memory, "limit": now.memory_limit or memory_total, "stats": {}},
        "cpu_stats": {
            "cpu_usage": {"total_usage": now.cpu_ns},
            "system_cpu_usage": _system_ns(),
            "online_cpus": os.cpu_count() or 1,
        },
        "blkio_stats": {"io_service_bytes_recursive": []},
    }


def _df() -> dict[str, Any]:
    from engine.api.images import _images
    from engine.api.volumes import _volumes, to_json
    from engine.service.containers import Status

    images, containers = stores()
    listed = containers.list()
    image_rows = _images()
    for row in image_rows:
        row["Containers"] = sum(1 for c in listed if c.spec.image_id == row["Id"])
    volumes = []
    for volume in _volumes().list():
        doc = to_json(volume)
        size = tree_size(volume.mountpoint)
        users = sum(1 for c in listed if any(m.source == str(volume.mountpoint) for m in c.spec.mounts))
        doc["UsageData"] = {"Size": size, "RefCount": users}
        volumes.append(doc)
    layers = sum(row["Size"] for row in image_rows)
    return {
        "LayersSize": layers,
        "Images": image_rows,
        "Containers": [
            {
                "Id": c.id,
                "Names": ["/" + c.name],
                "Image": c.spec.image,
                "ImageID": c.spec.image_id,
                "Command": " ".join(c.spec.args),
                "Created": int(c.created),
                "State": "running" if c.status is Status.RUNNING else "exited",
                "Status": c.describe_status(),
                "SizeRw": 0,
                "SizeRootFs": 0,
                "Labels": c.spec.labels,
                "Mounts": [],
            }
            for c in listed
        ],
        "Volumes": volumes,
        "BuildCache": [],
    }


def register(router: Router) -> None:
    async def top(request: Request, key: str) -> Response:
        if request.arg("ps_args"):
            raise ApiError(501, "berth's engine API does not implement top with ps options")
        return Response.json(await router.call(_top, key))

    async def stats(request: Request, key: str) -> Response:
        if request.flag("stream", True) and not request.flag("one-shot"):
            raise ApiError(501, "berth's engine API implements stats only without streaming (--no-stream)")
        before = await router.call(_sample, key)
        await asyncio.sleep(0.5)
        after = await router.call(_sample, key)
        after["precpu_stats"] = before["cpu_stats"]
        after["preread"] = before["read"]
        return Response.json(after)

    async def df(request: Request) -> Response:
        return Response.json(await router.call(_df))

    router.add("GET", r"/containers/([^/]{1,300})/top", top)
    router.add("GET", r"/containers/([^/]{1,300})/stats", stats)
    router.add("GET", "/system/df", df)
